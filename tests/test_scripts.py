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


def write_result(benchmark, root, algo, env_id, seed, score, budget=None, **extra):
    """One run stored as benchmark.py stores it (the keys the report reads)."""
    budget = budget or benchmark.ENVS[env_id]["budget"]
    path = benchmark.result_path(root, algo, env_id, budget, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = dict(
        algo=algo,
        env=env_id,
        seed=seed,
        budget=budget,
        final_eval_mean=score,
        env_steps=budget,
        steps_to_threshold=None,
        threshold=benchmark.ENVS[env_id]["threshold"],
        train_seconds=1.0,
        curve=[[1, score]],
    )
    path.write_text(json.dumps({**result, **extra}))


def test_benchmark_statistics_pure_functions():
    benchmark = load_script("benchmark")
    assert benchmark.interquartile_mean(np.arange(8)) == np.mean([2, 3, 4, 5])
    assert benchmark.interquartile_mean([1.0, 2.0]) == 1.5
    np.testing.assert_allclose(
        benchmark.normalised_score([20.0, 220.0, 420.0, 0.0], random=20.0, reference=220.0), [0, 1, 2, -0.1]
    )
    # P(X > Y) by hand. Env 1: x 3 beats all three of y, x 1 beats only 0: 4 of 6 pairs. Env 2: one tie, 1/2.
    # Mean over the envs: (4/6 + 1/2) / 2 = 7/12.
    x, y = [np.array([3.0, 1.0]), np.array([5.0])], [np.array([2.0, 2.0, 0.0]), np.array([5.0])]
    assert abs(benchmark.probability_of_improvement(x, y) - 7 / 12) < 1e-12
    assert abs(benchmark.probability_of_improvement(y, x) - 5 / 12) < 1e-12  # ties split evenly: P(X>Y)+P(Y>X) = 1
    # the performance profile: env 1 has 2 of 4 runs above 1 and 0 above 2, env 2 has 1 of 2 above both
    profile = benchmark.score_distribution([np.array([0.5, 1.0, 1.5, 2.0]), np.array([1.0, 3.0])], np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(profile, [1.0, 0.5, 0.25])
    # time to the threshold: the first evaluation at or above it; the median over seeds counts a seed that never got
    # there as never, so it is None when the median seed never did
    assert benchmark.first_reached([10, 20, 30], [5.0, 9.0, 7.0], threshold=7.0) == 20
    assert benchmark.first_reached([10, 20], [5.0, 6.0], threshold=7.0) is None
    assert benchmark.median_time_to_threshold([30.0, None, 10.0]) == 30.0
    assert benchmark.median_time_to_threshold([10.0, 20.0, None, 40.0]) == 30.0
    assert benchmark.median_time_to_threshold([10.0, None, None]) is None


def test_probability_of_improvement_and_iqm_match_rliable():
    """On equal seed counts per env (what rliable's matrices need) the numbers are rliable's own, ties included."""
    from rliable import metrics

    benchmark = load_script("benchmark")
    rng = np.random.default_rng(0)
    for n_x, n_y in ((5, 5), (3, 7)):
        x, y = rng.integers(0, 4, size=(n_x, 6)).astype(float), rng.integers(0, 4, size=(n_y, 6)).astype(float)
        ours = benchmark.probability_of_improvement(list(x.T), list(y.T))
        assert abs(ours - metrics.probability_of_improvement(x, y)) < 1e-12
        assert abs(benchmark.interquartile_mean(x) - metrics.aggregate_iqm(x)) < 1e-12


def test_stratified_bootstrap_resamples_seeds_within_each_env():
    benchmark = load_script("benchmark")
    samples = [[np.array([1.0, 1.0, 0.0]), np.array([1.0, 1.0, 1.0])]]
    per_env = benchmark.stratified_bootstrap(lambda s: [v.mean() for v in s], samples, 500, np.random.default_rng(0))
    assert per_env.shape == (500, 2) and set(per_env[:, 1]) == {1.0}  # env 2's runs never mix with env 1's
    assert set(np.round(per_env[:, 0] * 3).astype(int)) == {0, 1, 2, 3}
    # IQM of the six: 1 with at most one 0 drawn, 0.75 with two, 0.5 with three (probability 1/27 = 3.7%, above the
    # 2.5% tail): the 95% interval is [0.5, 1]
    iqm = benchmark.stratified_bootstrap(
        lambda s: benchmark.interquartile_mean(np.concatenate(s)), samples, 2000, np.random.default_rng(0)
    )
    assert tuple(np.percentile(iqm, [2.5, 97.5])) == (0.5, 1.0)


def test_benchmark_aggregates_against_the_reference(tmp_path):
    benchmark = load_script("benchmark")
    # normalised against PPO's mean: CartPole (random 23.7) PPO mean 223.7, Acrobot (random -497.1) PPO mean -297.1
    finals = {
        ("ppo", "CartPole-v1"): [123.7, 223.7, 323.7],  # 0.5, 1, 1.5
        ("ppo", "Acrobot-v1"): [-297.1, -297.1, -297.1],  # 1, 1, 1
        ("algo", "CartPole-v1"): [423.7, 323.7, 223.7],  # 2, 1.5, 1
        ("algo", "Acrobot-v1"): [-197.1, -297.1, -397.1],  # 1.5, 1, 0.5
        ("partial", "CartPole-v1"): [500.0],
    }
    for (algo, env_id), scores in finals.items():
        for seed, score in enumerate(scores):
            write_result(benchmark, tmp_path, algo, env_id, seed, score)
    write_result(benchmark, tmp_path, "algo", "CartPole-v1", 0, -1000.0, budget=1000)  # another budget: not aggregated
    results = benchmark.load_results(tmp_path)
    agg = benchmark.aggregate_set(results, "two", ["CartPole-v1", "Acrobot-v1"])
    assert list(agg.reference) == ["CartPole-v1", "Acrobot-v1"]
    np.testing.assert_allclose(list(agg.reference.values()), [223.7, -297.1])
    assert sorted(agg.scores) == ["algo", "ppo"] and agg.left_out == {"partial": "not measured on Acrobot-v1"}
    np.testing.assert_allclose(agg.scores["algo"][0], [2.0, 1.5, 1.0])
    rows = {row.algo: row for row in benchmark.aggregate_rows(agg, n_bootstrap=200)}
    assert rows["algo"].runs == 6 and abs(rows["algo"].iqm - 1.25) < 1e-12  # middle four of 0.5, 1, 1, 1.5, 1.5, 2
    assert abs(rows["ppo"].iqm - 1.0) < 1e-12 and rows["ppo"].improvement is None
    # CartPole: 2 beats all of PPO's, 1.5 two and a tie, 1 one and a tie: 7/9; Acrobot: 3 + 1.5 + 0 of 9 = 1/2
    assert abs(rows["algo"].improvement - (7 / 9 + 1 / 2) / 2) < 1e-12
    low, high = rows["algo"].improvement_ci
    assert 0 <= low < rows["algo"].improvement < high <= 1
    table = benchmark.aggregate(agg, list(rows.values()))
    assert "| algo | 6 | 1.250 |" in table and "Left out: partial (not measured on Acrobot-v1)" in table
    benchmark.plot_aggregate(agg, list(rows.values()), tmp_path / "aggregate.png", n_bootstrap=50)
    assert (tmp_path / "aggregate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without the reference on every env there is no normaliser: nobody is aggregated, and each says why
    no_reference = benchmark.aggregate_set(results, "one", ["CartPole-v1", "Acrobot-v1"], reference_algo="partial")
    assert no_reference.scores == {}
    assert no_reference.left_out["algo"] == "no partial reference on Acrobot-v1"
    # the part of a set its reference covers (what --report aggregates as "<set>-partial" meanwhile)
    assert benchmark.reference_envs(results, ["Acrobot-v1", "CartPole-v1"], "partial") == ["CartPole-v1"]
    assert benchmark.reference_envs(results, ["Acrobot-v1", "CartPole-v1"]) == ["Acrobot-v1", "CartPole-v1"]
    covered = benchmark.aggregate_set(results, "one-partial", ["CartPole-v1"], reference_algo="partial")
    assert sorted(covered.scores) == ["algo", "partial", "ppo"] and covered.left_out == {}
    # PPO's second reference (SB3's defaults + VecNormalize) stands for ppo where it is stronger: on CartPole here.
    # While it has fewer seeds than ppo's own cell it is not eligible, however high its first seeds score
    write_result(benchmark, tmp_path, "ppo@defaults_vecnorm", "CartPole-v1", 0, 323.7)
    results = benchmark.load_results(tmp_path, variants=False)
    partial_reference = benchmark.aggregate_set(results, "two", ["CartPole-v1", "Acrobot-v1"])
    assert partial_reference.reference_cell == {"CartPole-v1": "ppo", "Acrobot-v1": "ppo"}
    for seed, score in enumerate([323.7, 323.7, 323.7]):  # mean 323.7 > the zoo entry's 223.7; Acrobot: not measured
        write_result(benchmark, tmp_path, "ppo@defaults_vecnorm", "CartPole-v1", seed, score)
    results = benchmark.load_results(tmp_path, variants=False)  # reference cells are kept among the non-variants
    assert {r["algo"] for r in results} == {"algo", "ppo", "ppo@defaults_vecnorm", "partial"}
    strongest = benchmark.aggregate_set(results, "two", ["CartPole-v1", "Acrobot-v1"])
    assert strongest.reference_cell == {"CartPole-v1": "ppo@defaults_vecnorm", "Acrobot-v1": "ppo"}
    np.testing.assert_allclose(list(strongest.reference.values()), [323.7, -297.1])
    assert sorted(strongest.scores) == ["algo", "ppo"]  # the cells are not rows of their own
    np.testing.assert_allclose(strongest.scores["ppo"][0], [1.0, 1.0, 1.0])  # the defaults' seeds stand for ppo there
    np.testing.assert_allclose(strongest.scores["algo"][0], [4 / 3, 1.0, 2 / 3])  # 423.7, 323.7, 223.7 over 300
    header = benchmark.aggregate(strongest, benchmark.aggregate_rows(strongest, n_bootstrap=20)).splitlines()[0]
    assert "CartPole-v1 323.7 (ppo@defaults_vecnorm), Acrobot-v1 -297.1 (ppo)" in header


def test_benchmark_report_wall_time_to_solve(tmp_path):
    benchmark = load_script("benchmark")
    write_result(benchmark, tmp_path, "old", "CartPole-v1", 0, 500.0)  # stored before per-evaluation wall times
    write_result(benchmark, tmp_path, "old", "CartPole-v1", 1, 23.7)
    curve = [[10_000, 100.0], [20_000, 480.0], [30_000, 500.0]]
    for seed, wall in enumerate(([5.0, 9.0, 14.0], [4.0, 6.0, 8.0], [3.0, 4.0, 5.0])):
        write_result(benchmark, tmp_path, "new", "CartPole-v1", seed, 500.0, curve=curve, curve_wall_seconds=wall)
    write_result(benchmark, tmp_path, "mixed", "CartPole-v1", 0, 500.0, curve=curve, curve_wall_seconds=[1.0, 2.0, 3.0])
    write_result(benchmark, tmp_path, "mixed", "CartPole-v1", 1, 500.0)
    report = benchmark.report(tmp_path)
    assert "| CartPole-v1 | old | 200,000 | 200,000 | 2 | 261.9 +- 238.2 | 500, 24 | 0/2 | - | 1 | n/a | - |" in report
    assert "| CartPole-v1 | new | 200,000 | 200,000 | 3 | 500.0 +- 0.0 | 500, 500, 500 | 0/3 | - | 1 | 6 | - |" in report
    assert "| mixed | 200,000 | 200,000 | 2 | 500.0 +- 0.0 | 500, 500 | 0/2 | - | 1 | n/a (1/2 recorded) | - |" in report


def test_report_marks_each_row_with_the_versions_that_produced_it(tmp_path):
    benchmark = load_script("benchmark")
    v1 = dict(python="3.11.7", torch="2.13.0", mujoco=None, machine="x86_64 2 cores", commit="a" * 40)
    v2 = {**v1, "torch": "2.14.0", "commit": "b" * 40}
    write_result(benchmark, tmp_path, "vpg", "CartPole-v1", 0, 500.0, versions=v1)
    write_result(benchmark, tmp_path, "vpg", "CartPole-v1", 1, 500.0, versions={**v1, "commit": "c" * 40})  # same set
    write_result(benchmark, tmp_path, "grpo", "CartPole-v1", 0, 500.0, versions=v2)
    write_result(benchmark, tmp_path, "grpo", "CartPole-v1", 1, 500.0)  # stored before runs recorded versions
    report = benchmark.report(tmp_path)
    rows = {row.split(" | ")[1]: row.split(" | ")[-1] for row in report.splitlines()[2:4]}
    assert rows == {"grpo": "V2, - |", "vpg": "V1 |"}
    legend = report.split("Versions:\n")[1].splitlines()
    assert legend[0] == (
        "- V1 (2 runs): python 3.11.7, torch 2.13.0; not installed: mujoco; machine: x86_64 2 cores; commits: "
        "aaaaaaaaaaaa, cccccccccccc"
    )
    assert legend[1].startswith("- V2 (1 runs): python 3.11.7, torch 2.14.0;")
    assert legend[2].startswith("- `-` (1 runs): versions not recorded")


def test_benchmark_run_records_wall_seconds_per_evaluation():
    benchmark = load_script("benchmark")
    result = benchmark.run_one("vpg", "CartPole-v1", seed=0, budget=2048, eval_freq=1024, n_eval_episodes=1)
    steps = [step for step, _ in result["curve"]]
    wall = result["curve_wall_seconds"]
    assert steps == [1024, 2048, 2048] and len(wall) == 3  # two periodic evaluations and the final one
    assert 0 < wall[0] < wall[1] <= wall[2] <= result["train_seconds"]
    assert wall[2] > 0.9 * result["train_seconds"]  # the final point is taken when training has ended
    versions = result["versions"]  # what produced the numbers: every package, the commit and the machine
    import gymnasium
    import stable_baselines3

    assert versions["gymnasium"] == gymnasium.__version__ and versions["stable-baselines3"] == stable_baselines3.__version__
    assert versions["sb3-po"] == __import__("sb3_po").__version__ and versions["python"] == sys.version.split()[0]
    assert set(benchmark.VERSIONED) | {"python", "commit", "machine"} == set(versions)
    assert versions["commit"] is None or len(versions["commit"].removesuffix("-dirty")) == 40


def test_plot_curves_from_benchmark_against_steps_and_wall_seconds(tmp_path):
    benchmark, plot_curves = load_script("benchmark"), load_script("plot_curves")
    curve = [[10_000, 100.0], [20_000, 480.0]]
    write_result(benchmark, tmp_path, "ppo", "CartPole-v1", 0, 480.0, curve=curve, curve_wall_seconds=[2.0, 5.0])
    write_result(benchmark, tmp_path, "ppo", "CartPole-v1", 1, 300.0, curve=curve)  # no per-evaluation wall time
    (runs,) = plot_curves.from_benchmark(tmp_path).values()
    assert [len(c) for c in runs.steps.values()] == [2]  # both seeds against env steps
    ((wall, scores),) = runs.wall["ppo (200k)"]  # the recorded one against wall seconds, the other as its end only
    assert list(wall) == [2.0, 5.0] and list(scores) == [100.0, 480.0] and runs.ends["ppo (200k)"] == [(1.0, 300.0)]
    out = tmp_path / "CartPole-v1.png"
    plot_curves.plot_benchmark(runs, "CartPole-v1", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_curves_leaves_variants_out_unless_asked(tmp_path):
    benchmark, plot_curves = load_script("benchmark"), load_script("plot_curves")
    for algo in ("ppo", "grpo", "grpo@frontier", "vpg"):
        write_result(benchmark, tmp_path, algo, "CartPole-v1", 0, 480.0, curve=[[10_000, 480.0]])
    labels = lambda algos: sorted(plot_curves.from_benchmark(tmp_path, algos)["CartPole-v1"].steps)  # noqa: E731
    assert labels(None) == ["grpo (200k)", "ppo (200k)", "vpg (200k)"]
    assert labels(["grpo*", "ppo"]) == ["grpo (200k)", "grpo@frontier (200k)", "ppo (200k)"]
    also = sorted(plot_curves.from_benchmark(tmp_path, also=("grpo@frontier",))["CartPole-v1"].steps)
    assert also == ["grpo (200k)", "grpo@frontier (200k)", "ppo (200k)", "vpg (200k)"]  # a reference that is a variant


def test_every_shipped_zoo_entry_builds():
    """Each entry of each YAML in zoo_configs/ is valid for its algorithm (no typos in keys, classes or kwargs)."""
    import yaml

    benchmark = load_script("benchmark")
    files = sorted((ROOT / "zoo_configs").glob("*.yml"))
    expected = {"vpg", "kl_ppo", "grpo", "npg", "ppo_estimators", "a2c_estimators", "trpo_estimators", "ppo_lstm_estimators"}
    assert {f.stem for f in files} >= expected
    built = 0
    for path in files:
        algo = path.stem.removesuffix("_estimators")
        for env_id, entry in yaml.safe_load(path.read_text()).items():
            benchmark.register_env(env_id)  # MinAtar's games (the benchmark's registration hook)
            model = benchmark.build_model(algo, env_id, seed=0, hyperparams=entry)
            assert model.n_envs == entry.get("n_envs", 1)
            if "rollout_buffer_class" in entry:
                assert type(model.rollout_buffer).__name__ == entry["rollout_buffer_class"].rsplit(".", 1)[1]
            model.env.close()
            built += 1
    assert built >= 12


def test_references_fall_back_to_the_rl_zoos_older_env_versions():
    """The RL Zoo has MuJoCo entries for v4 only: PPO on Hopper-v5 trains with Hopper-v4's entry and says so."""
    benchmark = load_script("benchmark")
    assert benchmark.older_versions("Hopper-v5") == [f"Hopper-v{v}" for v in (5, 4, 3, 2, 1, 0)]
    assert benchmark.older_versions("MyEnv") == ["MyEnv"]
    assert benchmark.entry_source("ppo", "Hopper-v5") == "rl_zoo3/hyperparams/ppo.yml:Hopper-v4"
    assert benchmark.load_hyperparams("ppo", "Hopper-v5")["gamma"] == 0.999  # the v4 entry's, not PPO's default
    assert (
        benchmark.entry_source("trpo", "LunarLanderContinuous-v3") == "rl_zoo3/hyperparams/trpo.yml:LunarLanderContinuous-v3"
    )
    # ours never fall back: an entry is measured on its own env version, or the algorithm's defaults apply
    assert benchmark.entry_source("grpo@vine", "Hopper-v5") == "sb3_po/zoo_configs/grpo.yml:Hopper-v5"
    assert benchmark.entry_source("grpo", "Hopper-v4") is None and benchmark.load_hyperparams("grpo", "Hopper-v4") == {}
    # the second PPO reference starts from PPO's defaults (``entry: none``), not from the zoo's tuned entry
    assert benchmark.load_hyperparams("ppo@defaults_vecnorm", "Hopper-v5") == {"normalize": True}
    assert benchmark.entry_source("ppo@defaults_vecnorm", "Hopper-v5") is None


def test_ablation_table_targets_zero_spread_and_steps_per_update(tmp_path):
    benchmark = load_script("benchmark")
    for seed, score in enumerate([-120.0, -100.0, -140.0]):  # PPO: mean -120, std 16.3 -> target -136.3
        write_result(benchmark, tmp_path, "ppo", "MountainCar-v0", seed, score)
    zero = {"train/zero_spread_groups": [[1, 1.0], [2, 1.0], [3, 0.5], [4, 0.5]]}  # 4 updates: 500,000 / 4 steps each
    for seed in range(2):
        write_result(benchmark, tmp_path, "grpo", "MountainCar-v0", seed, -200.0, trace=zero)
        write_result(benchmark, tmp_path, "grpo@frontier", "MountainCar-v0", seed, [-130.0, -110.0][seed], trace=zero)
    write_result(benchmark, tmp_path, "vpg", "MountainCar-v0", 0, -100.0)  # another algorithm: not in the table
    rows = benchmark.ablation(tmp_path, "grpo").splitlines()[2:4]
    grpo, frontier = (row.split(" | ") for row in rows)
    assert grpo[2] == "grpo" and grpo[4] == "-200.0 +- 0.0" and grpo[7] == "missed (-136.3)"
    assert frontier[2] == "grpo@frontier" and frontier[4] == "-120.0 +- 10.0" and frontier[7] == "met (-136.3)"
    assert grpo[8] == "0.75" and grpo[9] == "125,000"
    assert benchmark.ablation(tmp_path, "grpo").splitlines()[4:] == [
        "",
        "Versions:",
        "- `-` (4 runs): versions not recorded (stored before runs recorded them; machine line only)",
    ]
    # a second PPO reference (SB3's defaults) that scores higher on this env sets the target instead, and is named
    for seed, score in enumerate([-105.0, -95.0, -100.0]):  # mean -100, std 4.1 -> target -100 - max(4.1, 2) = -104.1
        write_result(benchmark, tmp_path, "ppo@defaults_vecnorm", "MountainCar-v0", seed, score)
    rows = [row.split(" | ") for row in benchmark.ablation(tmp_path, "grpo").splitlines()[2:5]]
    assert [row[2] for row in rows[:2]] == ["grpo", "grpo@frontier"] and rows[2] == [""]  # the references are no rows
    assert rows[1][7] == "missed (-104.1) (ppo@defaults_vecnorm)"


def test_shipped_throughput_times_each_algorithm_and_divides_by_ppo():
    throughput = load_script("throughput")
    rows = throughput.shipped_throughput("CartPole-v1", ["ppo", "grpo"], budget=600, rounds=1)
    assert [row["algo"] for row in rows] == ["ppo", "grpo"]
    assert [row["n_envs"] for row in rows] == [8, 16]  # the RL Zoo's PPO entry and the shipped GRPO entry
    assert rows[0]["ratio_to_ppo"] == 1.0
    assert rows[1]["ratio_to_ppo"] == rows[1]["steps_per_second"] / rows[0]["steps_per_second"] > 0


def test_report_leaves_the_ablation_variants_out(tmp_path):
    benchmark = load_script("benchmark")
    write_result(benchmark, tmp_path, "grpo", "CartPole-v1", 0, 500.0)
    write_result(benchmark, tmp_path, "grpo@frontier", "CartPole-v1", 0, 100.0)
    rows = benchmark.report(tmp_path).split("\n\n")[0].splitlines()[2:]
    assert [row.split(" | ")[1] for row in rows] == ["grpo"]
    assert {r["algo"] for r in benchmark.load_results(tmp_path)} == {"grpo", "grpo@frontier"}


def test_published_scores_beside_ours(tmp_path):
    benchmark = load_script("benchmark")
    for seed, score in enumerate([700.0, 900.0]):  # ours: 800 +- 100
        write_result(benchmark, tmp_path, "ppo", "Hopper-v5", seed, score)
    write_result(benchmark, tmp_path, "ppo@defaults_vecnorm", "Hopper-v5", 0, 2000.0)
    write_result(benchmark, tmp_path, "vpg", "Hopper-v5", 0, 1500.0)  # no source publishes ours on Hopper
    write_result(benchmark, tmp_path, "grpo", "Hopper-v5", 0, 1500.0)
    published = tmp_path / "published.yml"
    published.write_text(
        "Hopper-v5:\n"
        "  - {algo: ppo, score: 2410.4, std: 10.0, env: Hopper-v3, budget: 1000000, runs: 1, statistic: one agent,\n"
        "     source: RL Zoo, url: 'https://example.org/zoo', settings: tuned}\n"
        "  - {algo: trpo, score: 3372.0, std: null, env: Hopper-v3, budget: null, runs: 3, source: sb3-contrib}\n"
        "CartPole-v1: []\n"
    )
    loaded = benchmark.load_published(published)
    assert loaded["CartPole-v1"] == [] and loaded["Hopper-v5"][1].std is None and loaded["Hopper-v5"][0].runs == 1
    rows = benchmark.published(tmp_path, published).splitlines()[2:]
    assert rows[0] == (
        "| Hopper-v5 | ppo | 2410.4 +- 10.0 | Hopper-v3 | 1,000,000 | 1 | one agent | [RL Zoo](https://example.org/zoo) "
        "| ppo: 800.0 +- 100.0 (2); ppo@defaults_vecnorm: 2000.0 +- 0.0 (1) | ppo: +1610.4; ppo@defaults_vecnorm: +410.4 "
        "| ppo: yes; ppo@defaults_vecnorm: yes | env Hopper-v3 (ours Hopper-v5); one run; settings: tuned |"
    )
    assert rows[1] == (
        "| Hopper-v5 | trpo | 3372.0 | Hopper-v3 | ? | 3 |  | sb3-contrib | not measured | - | - "
        "| env Hopper-v3 (ours Hopper-v5); budget not stated |"
    )
    assert rows[2] == "| Hopper-v5 | grpo, vpg | none found | | | | | | | | | |"  # ppo's two cells count as ppo
    assert rows[3] == "| CartPole-v1 | | none found | | | | | | | | | |"


def test_what_differs_reads_the_entrys_facts():
    benchmark = load_script("benchmark")
    score = benchmark.PublishedScore(
        "HalfCheetah-v5", "ppo", 1442.6, 46.0, "HalfCheetah-v4", 1_000_000, 3,
        "mean over 3 seeds of each run's last-100 training episodic returns (stochastic policy)", "CleanRL", "",
        "CleanRL defaults",
    )  # fmt: skip
    assert benchmark.what_differs(score, 1_000_000) == (
        "env HalfCheetah-v4 (ours HalfCheetah-v5); the last 100 training episodes of the stochastic policy, not an "
        "evaluation; settings: CleanRL defaults"
    )
    same = score._replace(source_env="HalfCheetah-v5", statistic="final evaluation", settings="", budget=500_000, runs=1)
    assert benchmark.what_differs(same, 1_000_000) == "budget 500,000 (ours 1,000,000); one run"
    assert benchmark.what_differs(same._replace(budget=1_000_000, runs=5), 1_000_000) == "nothing recorded"


def test_grpo_diagnose_measures_a_group_by_hand():
    diagnose = load_script("grpo_diagnose")
    # two members from one state; the first earns 1 at step 0 and stops after 2 steps, the second earns nothing
    rewards = [np.array([1.0, 0.0]), np.array([0.0, 0.0, 0.0])]
    observations = [np.array([[0.0], [0.0]]), np.array([[0.0], [1.0], [2.0]])]
    out = diagnose.diagnose_group(rewards, observations, gamma=1.0, local=1)
    assert out["horizon"] == 3 and out["members"] == 2
    np.testing.assert_allclose(out["running"], [1.0, 1.0, 0.5])
    np.testing.assert_allclose(out["state_spread"][:2], [0.0, 1.0])  # one pair: |0 - 1| / sqrt(1)
    assert np.isnan(out["state_spread"][2])  # one member left: no pair
    np.testing.assert_allclose(out["g_spread"], [0.5, 0.0, 0.0])  # rewards-to-go (1, 0 | 0, 0, 0)
    # the advantages (+-0.5 at step 0, 0 after) are exactly what the next step earned relative to the group
    np.testing.assert_allclose(out["local_share"], 1.0)


def test_deep_sea_probe_follows_the_deterministic_policy_as_the_env_moves():
    from tests.envs import DeepSea

    probe = load_script("deep_sea_probe")
    sea, rng = DeepSea(size=6), np.random.default_rng(0)
    rows, columns = np.divmod(np.arange(36), 6)
    inside = columns >= rows - 1
    # "right" everywhere reaches the treasure from exactly the cells with c >= r - 1; the band: those the start reaches
    reaches = probe.greedy_reaches(np.ones((6, 6), dtype=bool), rows, columns)
    np.testing.assert_array_equal(reaches, inside)
    band_rows, band_columns = probe.band(6)
    assert len(band_rows) == 11 and set(zip(band_rows, band_columns, strict=True)) == set(
        zip(rows[inside & (columns <= rows)], columns[inside & (columns <= rows)], strict=True)
    )
    for _ in range(20):  # against the env itself, from every cell, for random deterministic policies
        right = rng.random((6, 6)) < 0.7
        reaches = probe.greedy_reaches(right, rows, columns)
        for i in range(36):
            sea.set_state((rows[i], columns[i]))
            reward, terminated = 0.0, False
            while not terminated:
                r, c = sea.get_state()
                action = sea.right_action[r, c] if right[r, c] else 1 - sea.right_action[r, c]
                _, reward, terminated, _, _ = sea.step(action)
            assert reaches[i] == (reward > 0.5)
    assert probe.greedy_from(np.array([False, True, True]), np.array([0, 1, 1]), 6) == 1
    assert probe.greedy_from(np.zeros(3, dtype=bool), np.array([0, 1, 1]), 6) == 6


def test_deep_sea_probe_records_and_its_table(tmp_path):
    probe = load_script("deep_sea_probe")
    out = tmp_path / "probe.json"
    probe.main(
        ["frontier_explore10_draws", "--set", "ent_coef=0.01", "scale_rewards=none", "--steps", "1000", "--json", str(out)]
    )
    record = json.loads(out.read_text())  # the overrides on top of the variant, parsed as YAML values
    assert record["overrides"] == ["ent_coef=0.01", "scale_rewards=none"]
    assert record["hyperparams"]["ent_coef"] == "0.01" and record["hyperparams"]["scale_rewards"] == "none"
    assert record["frontier"] == dict(backward=0.0, scale_rewards="none", ent_coef=0.01, n_epochs=10)  # as used
    probe.main(["frontier_explore10_draws", "--steps", "2000", "--every", "1", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["hyperparams"]["group_size"] == "4" and record["versions"]["commit"]
    rows = record["records"]
    assert len(rows) >= 2 and all(len(row["p_right_band"]) == 39 for row in rows)
    steps = [row["env_steps"] for row in rows]
    assert steps == sorted(steps) and steps[-1] >= 2000
    last = rows[-1]
    assert 0 <= last["band_draws"] <= last["draws"] and last["draws"] > 0 and 0 <= last["archive_band_row"] <= 19
    assert last["band_right"] == sum(p > 0.5 for p in last["p_right_band"])
    assert last["greedy_from"] > 0  # nothing learnt in 2k steps: not solved
    # the results page's table: one row per checkpoint the probe reached (2k steps: none of 50k, 100k, ...)
    pages = load_script("results_pages")
    (tmp_path / "diagnostics" / "deep_sea").mkdir(parents=True)
    record["records"] = [dict(last, env_steps=60_000), dict(last, env_steps=120_000, greedy_from=3, band_right=30)]
    (tmp_path / "diagnostics" / "deep_sea" / "probe.json").write_text(json.dumps(record))
    table = pages.deep_sea_table(tmp_path).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| `frontier_explore10_draws` (0; backward 0, scale group, entropy 0, 10 epochs) | 60,000 |")
    assert table[3].endswith(f"| {last['treasure']} | 3 | 30 of 39 |")  # the second checkpoint: the row past 100k
    # a probe recorded before the settings were: what its variant and overrides set, else the defaults of the time
    del record["frontier"]
    record["overrides"] = ["frontier_backward=0.5"]
    assert pages.probe_frontier(record) == dict(backward=0.5, scale_rewards="group", ent_coef=0.0, n_epochs=10)
    # with the defaults now, the frontier a user gets: the backward step, no std scaling, entropy 0.01, 20 epochs
    probe.main(["frontier_default", "--steps", "500", "--json", str(out)])
    used = json.loads(out.read_text())["frontier"]
    assert used == dict(backward=0.5, scale_rewards="none", ent_coef=0.01, n_epochs=20)


def test_grpo_atari_records_groups_from_shared_frames(tmp_path):
    atari = load_script("grpo_atari")
    out = tmp_path / "atari" / "breakout.json"
    atari.main(["--steps", "600", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["steps"] >= 600 and result["rollouts"] and len(result["final_eval_games"]) == 10
    assert all(row["same_start_frames"] and row["groups"] == 4 for row in result["rollouts"])
    assert "train/zero_spread_groups" in result["rollouts"][0] and result["versions"]["commit"]
    # the results page's table of it
    table = load_script("results_pages").atari_table(tmp_path)
    n = len(result["rollouts"])
    assert f"started from the group's stacked frames in {n} of {n} updates" in table
    assert table.count("\n| ") == 1 + min(n, 5)  # the header, then up to five points of the run


def test_frontier_table_counts_seeds_that_reached_the_line_before_and_now(tmp_path):
    pages = load_script("results_pages")
    benchmark = pages.benchmark
    cell = pages.FRONTIER_CELL
    # the runs from before the change: <cell>/before32/<env>/<budget>/
    write_result(benchmark, tmp_path / cell, "before32", "MountainCar-v0", 0, -130.0, steps_to_threshold=None)
    write_result(benchmark, tmp_path / cell, "before32", "MountainCar-v0", 1, -120.5, steps_to_threshold=460_000)
    for seed in range(3):
        write_result(benchmark, tmp_path, cell, "KeyDoor-v0", seed, 1.0, steps_to_threshold=50_000 * (seed + 1))
    rows = {tuple(c.strip() for c in row.split("|")[1:4]): row for row in pages.frontier_table(tmp_path).splitlines()[2:]}
    assert rows[("MountainCar-v0", "500,000", "before issue 32")].endswith("| 1 of 2 | never, 460k | -130, -120.5 |")
    assert rows[("MountainCar-v0", "500,000", "now")].endswith("| not run yet | | |")
    assert rows[("KeyDoor-v0", "200,000", "now")].endswith("| 3 of 3 | 50k, 100k, 150k | 1, 1, 1 |")
    assert rows[("KeyDoor-v0", "200,000", "that without the std scaling")].endswith("| not run | | |")
    # the runs from before the backward step, beside: <cell>/before_backward/<env>/<budget>/
    write_result(benchmark, tmp_path / cell, "before_backward", "KeyDoor-v0", 0, 0.0, steps_to_threshold=None)
    rows = {tuple(c.strip() for c in row.split("|")[1:4]): row for row in pages.frontier_table(tmp_path).splitlines()[2:]}
    assert rows[("KeyDoor-v0", "200,000", "issue 32's archive, no backward step")].endswith("| 0 of 1 | never | 0 |")
    assert rows[("KeyDoor-v0", "200,000", "now")].endswith("| 3 of 3 | 50k, 100k, 150k | 1, 1, 1 |")
    assert "refused" in rows[("DeepSea-v0", "200,000", "before issue 32")]
    # and from before the frontier's update defaults (entropy 0.01, 20 epochs): <cell>/before_update_defaults/...
    write_result(benchmark, tmp_path / cell, "before_update_defaults", "KeyDoor-v0", 2, 1.0, steps_to_threshold=90_000)
    rows = {tuple(c.strip() for c in row.split("|")[1:4]): row for row in pages.frontier_table(tmp_path).splitlines()[2:]}
    assert rows[("KeyDoor-v0", "200,000", "the backward step, no std scaling")].endswith("| 1 of 1 | 90k | 1 |")
    assert rows[("KeyDoor-v0", "200,000", "now")].endswith("| 3 of 3 | 50k, 100k, 150k | 1, 1, 1 |")
    assert rows[("SparseChain-v0", "200,000", "now")].endswith("| not run yet | | |")


def test_minatar_table_puts_grpo_beside_ppos_reference_and_the_published_scores(tmp_path):
    pages = load_script("results_pages")
    benchmark = pages.benchmark
    env_id = "MinAtar/Breakout-v1"
    for seed, score in enumerate([10.0, 20.0]):
        write_result(benchmark, tmp_path, "grpo", env_id, seed, score, curve=[[100_000, score - 1], [2_000_000, score + 2]])
    write_result(benchmark, tmp_path, "ppo@minatar", env_id, 0, 18.0, curve=[[1, 18.0]])
    write_result(benchmark, tmp_path, "grpo@minatar_vine", env_id, 0, 12.0, budget=100_000)  # not the game's budget
    rows = [row for row in pages.minatar_table(tmp_path).splitlines()[2:] if row.startswith(f"| {env_id} ")]
    published = [p.score for p in benchmark.load_published()[env_id] if p.algo == "ppo"]
    assert len(rows) == 2 and published
    assert rows[0].startswith(f"| {env_id} | ppo@minatar | 1 | 18.0 +- 0.0 | 18.0 | 18.0 | 1 | {published[0]:.1f} (")
    assert rows[1] == f"| {env_id} | grpo | 2 | 15.0 +- 5.0 | 10.0, 20.0 | 17.0 | 1 |  |"
    assert "| MinAtar/Freeway-v1 | not run yet |" in pages.minatar_table(tmp_path)


def test_zoo_check_runs_the_zoos_own_train_and_tables_its_evaluations(tmp_path):
    zoo_check = load_script("zoo_check")
    # the zoo's evaluations.npz, by hand: three checkpoints of two episodes
    record = zoo_check.summarise(np.array([100, 200, 300]), np.array([[10.0, 20.0], [50.0, 30.0], [5.0, 5.0]]))
    assert record["eval_means"] == [15.0, 40.0, 5.0] and record["eval_stds"] == [5.0, 10.0, 0.0]
    assert (record["final_eval_mean"], record["best_eval_mean"], record["best_eval_timestep"]) == (5.0, 40.0, 200)
    # rl_zoo3's train.py end to end on its CartPole-v1 entry (8 envs); the zoo's --eval-freq counts env steps of all envs
    out = tmp_path / "zoo_check" / "ppo_CartPole-v1_seed3.json"
    args = ["--env", "CartPole-v1", "--seed", "3", "--steps", "4096", "--eval-freq", "2048", "--eval-episodes", "2"]
    zoo_check.main([*args, "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["eval_timesteps"] == [2048, 4096] and len(result["eval_means"]) == 2
    assert result["entry"]["n_envs"] == 8 and result["entry"]["policy"] == "MlpPolicy"  # the zoo's own entry
    assert result["command"].startswith("python -m rl_zoo3.train --algo ppo --env CartPole-v1 --seed 3 -n 4096")
    assert result["versions"]["rl_zoo3"] and result["versions"]["stable-baselines3"]
    table = load_script("results_pages").zoo_check_table(tmp_path)
    assert f"| ppo (rl_zoo3) | CartPole-v1 | 3 | 4,096 | 2k: {result['eval_means'][0]:.0f}, 4k: " in table
