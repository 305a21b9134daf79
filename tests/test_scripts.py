"""The scripts in scripts/: learning-curve plots from event files and benchmark JSON, and the benchmark's statistics."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from sb3_po import VPG

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_plot_curves_from_tensorboard_groups_seeds(tmp_path):
    plot_curves = load_script("plot_curves")
    for seed in range(2):
        VPG("MlpPolicy", "CartPole-v1", n_steps=256, seed=seed, tensorboard_log=str(tmp_path / "tb"), device="cpu").learn(
            1024, tb_log_name="VPG"
        )
    runs = plot_curves.from_tensorboard(tmp_path / "tb", "rollout/ep_rew_mean")
    assert list(runs) == ["VPG"] and len(runs["VPG"]) == 2  # VPG_1 and VPG_2 are two seeds of one curve
    out = tmp_path / "curves.png"
    plot_curves.plot(runs, "test", "rollout/ep_rew_mean", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_benchmark_statistics(tmp_path):
    benchmark = load_script("benchmark")
    assert benchmark.interquartile_mean(np.arange(8)) == np.mean([2, 3, 4, 5])
    assert benchmark.interquartile_mean([1.0, 2.0]) == 1.5
    # two envs x 3 seeds of one algorithm, stored as the benchmark stores them
    for env_id, scores in (("CartPole-v1", [475.0, 475.0, 23.7]), ("Acrobot-v1", [-100.0, -100.0, -100.0])):
        for seed, score in enumerate(scores):
            path = tmp_path / "algo" / env_id / str(benchmark.ENVS[env_id]["budget"]) / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(
                    dict(
                        algo="algo",
                        env=env_id,
                        seed=seed,
                        budget=benchmark.ENVS[env_id]["budget"],
                        final_eval_mean=score,
                        env_steps=benchmark.ENVS[env_id]["budget"],
                        steps_to_threshold=None,
                        train_seconds=1.0,
                        curve=[[1, score]],
                    )
                )
            )
    table = benchmark.aggregate(tmp_path, n_bootstrap=200)
    # normalised scores: 1, 1, 0 (CartPole) and 1, 1, 1 (Acrobot) -> IQM of [0, 1, 1, 1, 1, 1] = mean of the middle 4 = 1
    assert "| algo | Acrobot-v1, CartPole-v1 | 6 | 1.000 |" in table
    (row,) = benchmark.aggregate_rows(tmp_path, n_bootstrap=200)
    # every bootstrap sample keeps Acrobot's three 1s and draws CartPole's three from [1, 1, 0]: IQM 1 with at most
    # one 0, 0.75 with two, 0.5 with three (probability 1/27 = 3.7%, above the 2.5% tail): the interval is [0.5, 1]
    assert (row["runs"], row["iqm"], row["low"], row["high"]) == (6, 1.0, 0.5, 1.0)
    benchmark.plot_aggregate([row], tmp_path / "aggregate.png")
    assert (tmp_path / "aggregate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = benchmark.report(tmp_path)
    assert "| CartPole-v1 | algo | 200,000 | 200,000 | 3 | 324.6 +- 212.7 | 475, 475, 24 | 0/3 |" in report


def test_every_shipped_zoo_entry_builds():
    """Each entry of each YAML in zoo_configs/ is valid for its algorithm (no typos in keys, classes or kwargs)."""
    import yaml

    benchmark = load_script("benchmark")
    files = sorted((ROOT / "zoo_configs").glob("*.yml"))
    expected = {"vpg", "kl_ppo", "grpo", "ppo_estimators", "a2c_estimators", "trpo_estimators", "ppo_lstm_estimators"}
    assert {f.stem for f in files} >= expected
    built = 0
    for path in files:
        algo = path.stem.removesuffix("_estimators")
        for env_id, entry in yaml.safe_load(path.read_text()).items():
            model = benchmark.build_model(algo, env_id, seed=0, hyperparams=entry)
            assert model.n_envs == entry.get("n_envs", 1)
            if "rollout_buffer_class" in entry:
                assert type(model.rollout_buffer).__name__ == entry["rollout_buffer_class"].rsplit(".", 1)[1]
            model.env.close()
            built += 1
    assert built >= 12
