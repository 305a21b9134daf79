"""
Learning-quality benchmark of the sb3-po algorithms next to SB3's own.

Every run trains one algorithm on one env with one seed for a fixed budget of env steps (every env
step counted, as ``model.num_timesteps`` counts them), evaluates the deterministic policy every
``--eval-freq`` steps on a separate env, and stores the result as JSON under
``--results-dir/<algo>/<env>/<budget>/seed<k>.json``. A finished run is never repeated, so an interrupted
benchmark continues where it stopped. ``--report`` reads the JSON files back and prints the tables.

Hyperparameters: the entry for the env in ``zoo_configs/<algo>.yml`` when there is one (RL Zoo
format), otherwise the algorithm's defaults. ``n_timesteps`` in the YAML is ignored: the budget is
the env's, shared by all algorithms.

    python scripts/benchmark.py --algos vpg --envs CartPole-v1 --seeds 5
    python scripts/benchmark.py --report --aggregate-plot docs/results/aggregate.png
"""

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

from sb3_po.common.optional import MissingExtraError, missing_extra_message, require
from sb3_po.common.registry import algorithms, build_model, config_path, reference_algorithms

ROOT = Path(__file__).resolve().parents[1]

# Budget (env steps, shared by every algorithm) and the score that counts as solved.
# ``random``: the score of uniformly random actions (measured: 100 episodes, seeds 0-99), the zero of the
# normalised score that aggregates envs: (score - random) / (threshold - random).
ENVS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(budget=200_000, threshold=475.0, random=23.7),
    "Acrobot-v1": dict(budget=200_000, threshold=-100.0, random=-497.1),
    "MountainCar-v0": dict(budget=500_000, threshold=-110.0, random=-200.0),
    "Pendulum-v1": dict(budget=200_000, threshold=-200.0, random=-1207.6),
    "MountainCarContinuous-v0": dict(budget=200_000, threshold=90.0, random=-33.3),
    # evaluated every 50k: one evaluation of a hovering lander is up to 10 x 1000 env steps
    "LunarLander-v3": dict(budget=1_000_000, threshold=200.0, random=-192.0, eval_freq=50_000),
    # MuJoCo (the mujoco extra), where GRPO restores the full physics state
    "InvertedPendulum-v5": dict(budget=100_000, threshold=950.0, random=5.2),
    # Beyond the six envs, for the zoo entries of the box2d and mujoco extras (the RL Zoo's PPO budgets).
    # Hopper's threshold is about the RL Zoo PPO's published Hopper score (2410 on Hopper-v3), not gymnasium's 3800.
    "LunarLanderContinuous-v3": dict(budget=1_000_000, threshold=200.0, random=-206.7, eval_freq=50_000),
    "Hopper-v5": dict(budget=1_000_000, threshold=2400.0, random=17.0, eval_freq=50_000),
}
# The table: what a run without --envs trains.
TABLE_ENVS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0", "LunarLander-v3"]
QUICK_BUDGET = 20_000
EVAL_FREQ = 10_000  # env steps between two evaluations, unless the env's entry says otherwise
# Algorithm-specific scalars recorded after every update (the beta trajectory of KLPPO, GRPO's group statistics, ...)
TRACE_KEYS = (
    "train/beta",
    "train/kl",
    "train/approx_kl",
    "train/kl_ref",
    "train/group_return_std",
    "train/zero_spread_groups",
)


def algorithm_classes() -> dict[str, type]:
    return {**reference_algorithms(), **algorithms()}


def load_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """
    The RL Zoo style entry for ``env_id``: from ``zoo_configs/<algo>.yml``, else (SB3's own algorithms)
    from the hyperparameter files installed with rl_zoo3; empty (the algorithm's defaults) if neither has one.
    """
    candidates = [config_path(algo)]
    if algo in reference_algorithms():
        spec = importlib.util.find_spec("rl_zoo3")  # its YAML files only: rl_zoo3 is not imported
        if spec is None or not spec.submodule_search_locations:
            raise MissingExtraError(missing_extra_message("rl_zoo3", f"{algo}'s hyperparameters (the RL Zoo's)", "benchmark"))
        candidates.append(Path(spec.submodule_search_locations[0]) / "hyperparams" / f"{algo}.yml")
    for path in candidates:
        if path.exists():
            entries = yaml.safe_load(path.read_text()) or {}
            if env_id in entries:
                return dict(entries[env_id])
    return {}


class PeriodicEval(BaseCallback):
    """Deterministic evaluation every ``eval_freq`` env steps; the time it takes is not training time."""

    def __init__(self, env_id: str, seed: int, eval_freq: int, n_eval_episodes: int):
        super().__init__()
        self.eval_env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
        self.eval_freq, self.n_eval_episodes = eval_freq, n_eval_episodes
        self.next_eval = eval_freq
        self.curve: list[tuple[int, float]] = []
        self.trace: dict[str, list[tuple[int, float]]] = {}
        self.eval_seconds = 0.0

    def _init_callback(self) -> None:
        if isinstance(self.training_env, VecNormalize):
            self.eval_env = VecNormalize(self.eval_env, training=False, norm_reward=False)

    def evaluate(self) -> float:
        start = time.perf_counter()
        sync_envs_normalization(self.training_env, self.eval_env)
        mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_eval_episodes, deterministic=True)
        self.curve.append((int(self.model.num_timesteps), float(mean)))
        self.eval_seconds += time.perf_counter() - start
        return float(mean)

    def _on_rollout_start(self) -> None:
        # the logger still holds the previous update's train/* values: SB3 dumps them after the next rollout
        for key in TRACE_KEYS:
            if key in self.logger.name_to_value:
                self.trace.setdefault(key, []).append((int(self.model.num_timesteps), float(self.logger.name_to_value[key])))

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_eval:
            self.evaluate()
            self.next_eval += self.eval_freq
        return True


def run_one(algo: str, env_id: str, seed: int, budget: int, eval_freq: int, n_eval_episodes: int) -> dict[str, Any]:
    th.set_num_threads(1)
    hyperparams = load_hyperparams(algo, env_id)
    model = build_model(algo, env_id, seed, hyperparams)
    callback = PeriodicEval(env_id, seed, eval_freq, n_eval_episodes)
    start = time.perf_counter()
    model.learn(budget, callback=callback)
    wall = time.perf_counter() - start - callback.eval_seconds
    callback.n_eval_episodes = 2 * n_eval_episodes  # the final score uses more episodes
    final = callback.evaluate()
    threshold = ENVS[env_id]["threshold"]
    reached = next((step for step, score in callback.curve if score >= threshold), None)
    return dict(
        algo=algo,
        env=env_id,
        seed=seed,
        budget=budget,
        env_steps=int(model.num_timesteps),
        hyperparams={k: str(v) for k, v in hyperparams.items()},
        final_eval_mean=final,
        curve=callback.curve,
        trace=callback.trace,
        threshold=threshold,
        eval_freq=eval_freq,
        steps_to_threshold=reached,
        train_seconds=wall,
        n_params=int(sum(p.numel() for p in model.policy.parameters())),
        machine=f"{platform.machine()} {os.cpu_count()} cores, torch {th.__version__}, 1 thread",
    )


def result_path(results_dir: Path, algo: str, env_id: str, budget: int, seed: int) -> Path:
    return results_dir / algo / env_id / str(budget) / f"seed{seed}.json"


def report(results_dir: Path) -> str:
    rows = []
    for path in sorted(results_dir.glob("*/*/*/seed*.json")):
        if path.relative_to(results_dir).parts[0] != "quick":  # --quick results live apart
            rows.append(json.loads(path.read_text()))
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["env"], r["algo"], r["budget"]), []).append(r)
    lines = [
        "| env | algo | budget | env steps taken (mean) | seeds | final eval (mean +- std over seeds) | per seed | solved "
        "| median steps to solve | train time (s/run) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env_id, algo, budget), runs in sorted(cells.items()):
        finals = np.array([r["final_eval_mean"] for r in runs])
        solved = [r["steps_to_threshold"] for r in runs if r["steps_to_threshold"] is not None]
        median = f"{int(np.median(solved)):,}" if solved else "-"
        per_seed = ", ".join(f"{f:.0f}" for f in finals)
        lines.append(
            f"| {env_id} | {algo} | {budget:,} | {np.mean([r['env_steps'] for r in runs]):,.0f} | {len(runs)} "
            f"| {finals.mean():.1f} +- {finals.std():.1f} | {per_seed} "
            f"| {len(solved)}/{len(runs)} | {median} | {np.mean([r['train_seconds'] for r in runs]):.0f} |"
        )
    return "\n".join(lines)


def interquartile_mean(scores: np.ndarray) -> float:
    """Mean of the middle 50% of the scores (rliable's IQM, Agarwal et al. 2021)."""
    scores = np.sort(np.asarray(scores, dtype=float).ravel())
    n = len(scores)
    return float(scores[n // 4 : n - n // 4].mean()) if n >= 4 else float(scores.mean())


def aggregate_rows(
    results_dir: Path, n_bootstrap: int = 2000, seed: int = 0, envs: list[str] | None = None
) -> list[dict[str, Any]]:
    """
    Per algorithm, over ``envs`` (default: every env it ran on) at each env's shared budget: the IQM of normalised
    final scores with a 95% stratified-bootstrap confidence interval (seeds resampled within each env), as rliable
    computes it. With ``envs`` given, only algorithms with results on all of them are listed, so rows compare.
    """
    per_algo: dict[str, dict[str, list[float]]] = {}
    for path in sorted(results_dir.glob("*/*/*/seed*.json")):
        r = json.loads(path.read_text())
        env = ENVS.get(r["env"])
        if path.relative_to(results_dir).parts[0] == "quick" or env is None or r["budget"] != env["budget"]:
            continue
        if envs is not None and r["env"] not in envs:
            continue
        normalised = (r["final_eval_mean"] - env["random"]) / (env["threshold"] - env["random"])
        per_algo.setdefault(r["algo"], {}).setdefault(r["env"], []).append(normalised)
    rows = []
    for algo, ran in sorted(per_algo.items()):
        if envs is not None and set(ran) != set(envs):
            continue
        scores = [np.array(v) for v in ran.values()]
        rng = np.random.default_rng(seed)  # one stream per row: a row's interval does not depend on the others
        boot = [
            interquartile_mean(np.concatenate([rng.choice(v, size=len(v), replace=True) for v in scores]))
            for _ in range(n_bootstrap)
        ]
        low, high = np.percentile(boot, [2.5, 97.5])
        iqm = interquartile_mean(np.concatenate(scores))
        rows.append(dict(algo=algo, envs=sorted(ran), runs=sum(map(len, scores)), iqm=iqm, low=low, high=high))
    return rows


def aggregate(results_dir: Path, n_bootstrap: int = 2000, seed: int = 0, envs: list[str] | None = None) -> str:
    """The rows of :func:`aggregate_rows` as a Markdown table."""
    lines = ["| algo | envs | runs | IQM of normalised score | 95% bootstrap CI |", "|---|---|---|---|---|"]
    for row in aggregate_rows(results_dir, n_bootstrap, seed, envs):
        lines.append(
            f"| {row['algo']} | {', '.join(row['envs'])} | {row['runs']} | {row['iqm']:.3f} "
            f"| [{row['low']:.3f}, {row['high']:.3f}] |"
        )
    return "\n".join(lines)


def plot_aggregate(rows: list[dict[str, Any]], out: Path) -> None:
    """rliable's interval plot: one bar per algorithm from the CI's low to high end, the IQM marked on it."""
    matplotlib = require("matplotlib", feature="benchmark.py --aggregate-plot", extra="benchmark")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda row: row["iqm"])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.4))
    for y, row in enumerate(rows):
        ax.barh(y, row["high"] - row["low"], left=row["low"], height=0.6, alpha=0.4)
        ax.plot([row["iqm"]] * 2, [y - 0.3, y + 0.3], color="black")
    ax.set_yticks(range(len(rows)), [row["algo"] for row in rows])
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    envs = sorted({env for row in rows for env in row["envs"]})
    ax.set_xlabel("IQM of (score - random) / (solved - random); bar: 95% stratified bootstrap CI")
    ax.set_title(f"{len(envs)} envs: " + ", ".join(envs), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def peak_memory(algo: str, env_id: str, steps: int) -> dict[str, Any]:
    """Parameter count and peak resident memory of one training run, in a fresh process."""
    code = (
        "import resource, sys, torch as th; th.set_num_threads(1); sys.path.insert(0, 'scripts');"
        "from benchmark import build_model, load_hyperparams;"
        f"m = build_model({algo!r}, {env_id!r}, 0, load_hyperparams({algo!r}, {env_id!r})); m.learn({steps});"
        "print(sum(p.numel() for p in m.policy.parameters()), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    n_params, max_rss_kib = map(int, out.split()[-2:])
    return dict(algo=algo, env=env_id, steps=steps, n_params=n_params, peak_rss_mib=max_rss_kib / 1024)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=None, help="default: every algorithm available")
    parser.add_argument("--envs", nargs="+", default=TABLE_ENVS, choices=list(ENVS), help="default: %(default)s")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1); full mode needs >= 5")
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed (to split seeds over processes)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_BUDGET} steps, 2 seeds: checks the pipeline only")
    parser.add_argument("--budget", type=int, default=None, help="override every env's budget (not for published tables)")
    parser.add_argument("--eval-freq", type=int, default=None, help=f"default: the env's, else {EVAL_FREQ}")
    parser.add_argument("--n-eval-episodes", type=int, default=10)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmark_results")
    parser.add_argument("--report", action="store_true", help="print the tables from the stored results and exit")
    parser.add_argument("--aggregate-plot", type=Path, default=None, help="--report: also plot the aggregate as PNG")
    parser.add_argument("--memory", metavar="ENV_ID", default=None, help="measure parameters and peak memory on ENV_ID")
    parser.add_argument("--memory-steps", type=int, default=20_000)
    args = parser.parse_args(argv)

    if args.report:
        print(report(args.results_dir))
        print()
        # over --envs (default: the table's six), so every row of the aggregate covers the same envs
        print(aggregate(args.results_dir, envs=args.envs))
        if args.aggregate_plot:
            plot_aggregate(aggregate_rows(args.results_dir, envs=args.envs), args.aggregate_plot)
            print(f"wrote {args.aggregate_plot}")
        return
    if args.memory:
        rows = [peak_memory(algo, args.memory, args.memory_steps) for algo in (args.algos or list(algorithm_classes()))]
        path = args.results_dir / "memory.json"
        path.write_text(json.dumps(rows, indent=1))
        print("| algo | env | parameters | peak resident memory (MiB) |\n|---|---|---|---|")
        for row in rows:
            print(f"| {row['algo']} | {row['env']} | {row['n_params']:,} | {row['peak_rss_mib']:.0f} |")
        return
    algos = args.algos or list(algorithm_classes())
    n_seeds = 2 if args.quick else args.seeds
    results_dir = args.results_dir / "quick" if args.quick else args.results_dir
    for env_id in args.envs:
        budget = QUICK_BUDGET if args.quick else (args.budget or ENVS[env_id]["budget"])
        for algo in algos:
            for seed in range(args.first_seed, args.first_seed + n_seeds):
                path = result_path(results_dir, algo, env_id, budget, seed)
                if path.exists():
                    continue
                eval_freq = args.eval_freq or ENVS.get(env_id, {}).get("eval_freq", EVAL_FREQ)
                result = run_one(algo, env_id, seed, budget, min(eval_freq, budget), args.n_eval_episodes)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(result, indent=1))
                tmp.replace(path)  # atomic: an interrupted run leaves no half-written result
                print(
                    f"{algo} {env_id} seed={seed}: final {result['final_eval_mean']:.1f}, "
                    f"solved at {result['steps_to_threshold']}, {result['train_seconds']:.0f}s",
                    flush=True,
                )
    print(report(results_dir))


if __name__ == "__main__":
    sys.exit(main())
