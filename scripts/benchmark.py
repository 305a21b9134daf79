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
    python scripts/benchmark.py --report --plot-dir docs/results
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

from sb3_po.common.optional import MissingExtraError, missing_extra_message, require
from sb3_po.registry import algorithms, build_model, config_path, reference_algorithms

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
    # gymnasium's registered reward_threshold (the RL Zoo's published PPO HalfCheetah-v3 model: 5836)
    "HalfCheetah-v5": dict(budget=1_000_000, threshold=4800.0, random=-267.7, eval_freq=50_000),
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


# Variants of an algorithm for ablations, run as ``--algos grpo@frontier``: each overrides the shipped entry of
# every env (``"*"``) or of one env; its results are stored and reported under its own name.
VARIANTS_FILE = ROOT / "scripts" / "variants.yml"


def split_variant(algo: str) -> tuple[str, str | None]:
    """``"grpo@frontier"`` -> ``("grpo", "frontier")``; ``"grpo"`` -> ``("grpo", None)``."""
    base, _, variant = algo.partition("@")
    return base, variant or None


def load_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """
    The RL Zoo style entry for ``env_id`` (see :func:`entry_source`): from ``zoo_configs/<algo>.yml``, else (SB3's
    own algorithms) from the hyperparameter files installed with rl_zoo3; empty (the algorithm's defaults) if
    neither has one. A variant (``algo@name``) applies its overrides from ``scripts/variants.yml`` to that entry.
    """
    base, variant = split_variant(algo)
    hyperparams, _ = _shipped_entry(base, env_id)  # a fresh dict: variants update it
    if variant is not None:
        overrides = variant_entry(algo)
        if overrides.get("entry") == "none":  # the algorithm's defaults, not the shipped entry (a reference's baseline)
            hyperparams = {}
        hyperparams.update(overrides.get("*") or {})
        hyperparams.update(overrides.get(env_id) or {})
    return hyperparams


def variant_entry(algo: str) -> dict[str, Any]:
    """
    The overrides of the variant ``algo@name`` in ``scripts/variants.yml``: ``"*"`` (every env), an env id (that
    env), and ``entry: none`` to start from the algorithm's defaults instead of the shipped entry.
    """
    base, variant = split_variant(algo)
    variants = (yaml.safe_load(VARIANTS_FILE.read_text()) or {}).get(base, {})
    if variant not in variants:
        raise ValueError(f"No variant {variant!r} of {base} in {VARIANTS_FILE}: one of {sorted(variants)}")
    return variants[variant]


def entry_source(algo: str, env_id: str) -> str | None:
    """
    Where :func:`load_hyperparams` takes ``env_id``'s entry from, as ``<file>:<env id>``; None for the algorithm's
    defaults. The RL Zoo has MuJoCo entries for the v4 envs only: a reference algorithm without an entry for
    ``env_id`` takes the entry of the newest earlier version of the same env (Hopper-v5 -> Hopper-v4), and each run
    records which.
    """
    base, variant = split_variant(algo)
    if variant is not None and variant_entry(algo).get("entry") == "none":
        return None
    return _shipped_entry(base, env_id)[1]


def older_versions(env_id: str) -> list[str]:
    """``env_id`` and then its earlier versions, newest first: Hopper-v5 -> [Hopper-v5, Hopper-v4, ..., Hopper-v0]."""
    name, sep, version = env_id.rpartition("-v")
    if not sep or not version.isdigit():
        return [env_id]
    return [f"{name}-v{v}" for v in range(int(version), -1, -1)]


def _shipped_entry(algo: str, env_id: str) -> tuple[dict[str, Any], str | None]:
    candidates = [(config_path(algo), [env_id])]
    if algo in reference_algorithms():
        spec = importlib.util.find_spec("rl_zoo3")  # its YAML files only: rl_zoo3 is not imported
        if spec is None or not spec.submodule_search_locations:
            raise MissingExtraError(missing_extra_message("rl_zoo3", f"{algo}'s hyperparameters (the RL Zoo's)", "benchmark"))
        candidates.append((Path(spec.submodule_search_locations[0]) / "hyperparams" / f"{algo}.yml", older_versions(env_id)))
    for path, env_ids in candidates:
        if path.exists():
            entries = yaml.safe_load(path.read_text()) or {}
            for entry_env in env_ids:
                if entry_env in entries:
                    return dict(entries[entry_env]), f"{path.parent.parent.name}/{path.parent.name}/{path.name}:{entry_env}"
    return {}, None


class PeriodicEval(BaseCallback):
    """Deterministic evaluation every ``eval_freq`` env steps; the time it takes is not training time."""

    def __init__(self, env_id: str, seed: int, eval_freq: int, n_eval_episodes: int):
        super().__init__()
        self.eval_env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
        self.eval_freq, self.n_eval_episodes = eval_freq, n_eval_episodes
        self.next_eval = eval_freq
        self.curve: list[tuple[int, float]] = []
        self.wall_seconds: list[float] = []  # training seconds (evaluations excluded) at each point of the curve
        self.trace: dict[str, list[tuple[int, float]]] = {}
        self.eval_seconds = 0.0
        self.train_start = time.perf_counter()

    def _on_training_start(self) -> None:
        self.train_start = time.perf_counter()

    def _init_callback(self) -> None:
        if isinstance(self.training_env, VecNormalize):
            self.eval_env = VecNormalize(self.eval_env, training=False, norm_reward=False)

    def evaluate(self) -> float:
        start = time.perf_counter()
        self.wall_seconds.append(start - self.train_start - self.eval_seconds)
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


# The distributions whose versions every result records (issue 31): what produced the numbers, beside the commit
VERSIONED = ("torch", "numpy", "gymnasium", "mujoco", "box2d", "stable-baselines3", "sb3-contrib", "rl_zoo3", "sb3-po")


def run_versions() -> dict[str, str | None]:
    """
    The versions a run records: python, every distribution of ``VERSIONED`` (None where not installed), the git
    commit of the checkout (with ``-dirty`` when tracked files differ from it; None outside a git checkout) and
    the machine.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

        dirty = git("status", "--porcelain", "--untracked-files=no")
        versions["commit"] = git("rev-parse", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        versions["commit"] = None
    versions["machine"] = f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, {platform.system()}"
    return versions


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown processor"


def run_one(algo: str, env_id: str, seed: int, budget: int, eval_freq: int, n_eval_episodes: int) -> dict[str, Any]:
    th.set_num_threads(1)
    hyperparams = load_hyperparams(algo, env_id)
    model = build_model(split_variant(algo)[0], env_id, seed, hyperparams)
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
        entry=entry_source(algo, env_id),  # the file and env id of the entry (an older version's for some references)
        final_eval_mean=final,
        curve=callback.curve,
        curve_wall_seconds=callback.wall_seconds,  # results before this key have the total train time only
        trace=callback.trace,
        threshold=threshold,
        eval_freq=eval_freq,
        steps_to_threshold=reached,
        train_seconds=wall,
        n_params=int(sum(p.numel() for p in model.policy.parameters())),
        machine=f"{platform.machine()} {os.cpu_count()} cores, torch {th.__version__}, 1 thread",
        versions=run_versions(),  # results before this key record the machine line above only
    )


def result_path(results_dir: Path, algo: str, env_id: str, budget: int, seed: int) -> Path:
    return results_dir / algo / env_id / str(budget) / f"seed{seed}.json"


# The README's two aggregates. "mujoco": the continuous-control envs measured at 1M steps beside InvertedPendulum
# (LunarLanderContinuous is Box2D, but belongs with them by budget and action space rather than with the classic six).
AGGREGATE_SETS: dict[str, list[str]] = {
    "classic": TABLE_ENVS,
    "mujoco": ["InvertedPendulum-v5", "Hopper-v5", "HalfCheetah-v5", "LunarLanderContinuous-v3"],
}
# The normalised score's 1 on each env: this algorithm's mean final score, measured in the same table (same budget,
# machine and evaluation protocol), so that the aggregates compare algorithms with PPO rather than with a solve line.
REFERENCE_ALGO = "ppo"


def load_results(results_dir: Path, variants: bool = True) -> list[dict[str, Any]]:
    """
    Every stored run, --quick ones (which live apart) excepted.

    :param variants: include the ablation variants (``algo@variant``), which the ablation table reports
    """
    runs = []
    for path in sorted(results_dir.glob("*/*/*/seed*.json")):
        algo = path.relative_to(results_dir).parts[0]
        if algo != "quick" and (variants or "@" not in algo):
            runs.append(json.loads(path.read_text()))
    return runs


def first_reached(points: list[float], scores: list[float], threshold: float) -> float | None:
    """The first of ``points`` (env steps or wall seconds) whose evaluation scores at or above ``threshold``."""
    return next((point for point, score in zip(points, scores, strict=True) if score >= threshold), None)


def median_time_to_threshold(times: list[float | None]) -> float | None:
    """
    Median over seeds of the time to the threshold, a seed that never reached it counting as never (+inf):
    None when the median seed did not reach it.
    """
    median = float(np.median([np.inf if t is None else t for t in times]))
    return None if np.isinf(median) else median


def wall_to_solve(runs: list[dict[str, Any]]) -> str:
    """The table's "median wall time to solve" cell; runs stored before ``curve_wall_seconds`` existed have none."""
    recorded = [r for r in runs if "curve_wall_seconds" in r]
    if len(recorded) < len(runs):
        return "n/a" if not recorded else f"n/a ({len(recorded)}/{len(runs)} recorded)"
    times = [first_reached(r["curve_wall_seconds"], [s for _, s in r["curve"]], r["threshold"]) for r in runs]
    median = median_time_to_threshold(times)
    return "-" if median is None else f"{median:.0f}"


def report(results_dir: Path) -> str:
    """The results table: every algorithm's cells, the ablation variants left out (see :func:`ablation`)."""
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in load_results(results_dir, variants=False):
        cells.setdefault((r["env"], r["algo"], r["budget"]), []).append(r)
    lines = [
        "| env | algo | budget | env steps taken (mean) | seeds | final eval (mean +- std over seeds) | per seed | solved "
        "| median steps to solve | train time (s/run) | median wall time to solve (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env_id, algo, budget), runs in sorted(cells.items()):
        finals = np.array([r["final_eval_mean"] for r in runs])
        solved = [r["steps_to_threshold"] for r in runs if r["steps_to_threshold"] is not None]
        median = f"{int(np.median(solved)):,}" if solved else "-"
        per_seed = ", ".join(f"{f:.0f}" for f in finals)
        lines.append(
            f"| {env_id} | {algo} | {budget:,} | {np.mean([r['env_steps'] for r in runs]):,.0f} | {len(runs)} "
            f"| {finals.mean():.1f} +- {finals.std():.1f} | {per_seed} "
            f"| {len(solved)}/{len(runs)} | {median} | {np.mean([r['train_seconds'] for r in runs]):.0f} "
            f"| {wall_to_solve(runs)} |"
        )
    return "\n".join(lines)


def ablation(results_dir: Path, algo: str, reference: str = REFERENCE_ALGO) -> str:
    """
    The ablation table of ``algo`` and its variants (``algo@name``), env by env: final score, seeds solved at some
    evaluation, the fraction of groups with zero spread (no gradient) and the env steps per update (idle slots and
    discarded groups included), beside the target set by ``reference`` on the same env and budget: its mean minus
    the larger of its seed standard deviation and 2% of its mean's magnitude.
    """
    cells: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in load_results(results_dir):
        if split_variant(r["algo"])[0] in (algo, reference):
            cells.setdefault((r["env"], r["budget"]), {}).setdefault(r["algo"], []).append(r)
    lines = [
        f"| env | budget | variant | seeds | final eval (mean +- std) | per seed | solved | vs target ({reference}) "
        "| zero-spread groups | env steps per update | train time (s/run) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env_id, budget), by_algo in sorted(cells.items()):
        variants = sorted(name for name in by_algo if split_variant(name)[0] == algo)
        if not variants:
            continue
        target = None
        if reference in by_algo:
            ref = np.array([r["final_eval_mean"] for r in by_algo[reference]])
            target = ref.mean() - max(ref.std(), 0.02 * abs(ref.mean()))
        for name in variants:
            runs = by_algo[name]
            finals = np.array([r["final_eval_mean"] for r in runs])
            solved = sum(r["steps_to_threshold"] is not None for r in runs)
            zero = [v for r in runs for _, v in r.get("trace", {}).get("train/zero_spread_groups", [])]
            updates = [len(r.get("trace", {}).get("train/zero_spread_groups", [])) for r in runs]
            per_update = [r["env_steps"] / n for r, n in zip(runs, updates, strict=True) if n]
            verdict = "n/a" if target is None else f"{'met' if finals.mean() >= target else 'missed'} ({target:.1f})"
            zero_cell = f"{np.mean(zero):.2f}" if zero else "-"
            per_update_cell = f"{np.mean(per_update):,.0f}" if per_update else "-"
            lines.append(
                f"| {env_id} | {budget:,} | {name} | {len(runs)} | {finals.mean():.1f} +- {finals.std():.1f} "
                f"| {', '.join(f'{f:.0f}' for f in finals)} | {solved}/{len(runs)} | {verdict} | {zero_cell} "
                f"| {per_update_cell} | {np.mean([r['train_seconds'] for r in runs]):.0f} |"
            )
    return "\n".join(lines)


def interquartile_mean(scores: np.ndarray) -> float:
    """Mean of the middle 50% of the scores (rliable's IQM, Agarwal et al. 2021)."""
    scores = np.sort(np.asarray(scores, dtype=float).ravel())
    n = len(scores)
    return float(scores[n // 4 : n - n // 4].mean()) if n >= 4 else float(scores.mean())


def normalised_score(score: Any, random: float, reference: float) -> np.ndarray:
    """(score - random) / (reference - random): 0 for uniformly random actions, 1 for the reference's mean score."""
    return (np.asarray(score, dtype=float) - random) / (reference - random)


def probability_of_improvement(x: list[np.ndarray], y: list[np.ndarray]) -> float:
    """
    rliable's P(X > Y): on each env, the probability that a run of X scores above a run of Y, ties counting one half
    (the Mann-Whitney U statistic over n_x * n_y), averaged over the envs. ``x[i]``, ``y[i]``: the seeds' scores on env i.
    """
    per_env = [
        np.mean((xe[:, None] > ye[None, :]) + 0.5 * (xe[:, None] == ye[None, :]))
        for xe, ye in zip(map(np.asarray, x), map(np.asarray, y), strict=True)
    ]
    return float(np.mean(per_env))


def score_distribution(scores: list[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """
    rliable's performance profile (run-score distribution): for each tau, the fraction of runs scoring above tau, each
    env weighted equally (which is rliable's fraction of all runs when every env has the same number of seeds).
    """
    taus = np.asarray(taus, dtype=float)
    return np.mean([np.mean(np.asarray(s)[:, None] > taus[None, :], axis=0) for s in scores], axis=0)


def stratified_bootstrap(
    statistic: Callable[..., Any], samples: list[list[np.ndarray]], n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """
    ``statistic(*samples)`` on ``n_bootstrap`` resamplings, stacked: every per-env array of every sample (the seeds of one
    algorithm on one env) is resampled with replacement within itself, as rliable's stratified bootstrap does.
    """
    return np.array(
        [
            statistic(*[[rng.choice(v, size=len(v), replace=True) for v in sample] for sample in samples])
            for _ in range(n_bootstrap)
        ]
    )


def at_env_budget(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs at their env's shared budget (the aggregates' runs; other budgets are side experiments)."""
    return [r for r in results if r["env"] in ENVS and r["budget"] == ENVS[r["env"]]["budget"]]


class AggregateSet(NamedTuple):
    """The normalised final scores of the algorithms measured on every env of a set, and why the others are left out."""

    name: str
    envs: list[str]
    reference: dict[str, float]  # env -> REFERENCE_ALGO's mean final score there (the normalised 1)
    scores: dict[str, list[np.ndarray]]  # algo -> its seeds' normalised final scores, one array per env (``envs`` order)
    left_out: dict[str, str]  # algo -> the reason


def aggregate_set(
    results: list[dict[str, Any]], name: str, envs: list[str], reference_algo: str = REFERENCE_ALGO
) -> AggregateSet:
    """
    The runs of ``results`` at each env's shared budget (other budgets are side experiments), normalised by
    :func:`normalised_score` against ``reference_algo``'s mean. An algorithm enters only with every env of ``envs``
    measured, and only if the reference is measured on all of them too (otherwise there is no normaliser).
    """
    finals: dict[str, dict[str, list[float]]] = {}
    for r in at_env_budget(results):
        finals.setdefault(r["algo"], {}).setdefault(r["env"], []).append(r["final_eval_mean"])
    measured = finals.get(reference_algo, {})
    reference = {env: float(np.mean(measured[env])) for env in envs if env in measured}
    no_reference = [env for env in envs if env not in reference]
    scores, left_out = {}, {}
    for algo, ran in sorted(finals.items()):
        missing = [env for env in envs if env not in ran]
        if missing or no_reference:
            reasons = [f"not measured on {', '.join(missing)}"] if missing else []
            if no_reference and algo != reference_algo:
                reasons.append(f"no {reference_algo} reference on {', '.join(no_reference)}")
            left_out[algo] = "; ".join(reasons)
            continue
        scores[algo] = [normalised_score(ran[env], ENVS[env]["random"], reference[env]) for env in envs]
    return AggregateSet(name, list(envs), reference, scores, left_out)


def reference_envs(results: list[dict[str, Any]], envs: list[str], reference_algo: str = REFERENCE_ALGO) -> list[str]:
    """The envs of ``envs`` (in that order) on which ``reference_algo`` is measured at the env's budget."""
    measured = {r["env"] for r in at_env_budget(results) if r["algo"] == reference_algo}
    return [env for env in envs if env in measured]


class AggregateRow(NamedTuple):
    algo: str
    runs: int
    iqm: float
    iqm_ci: tuple[float, float]  # 95% stratified-bootstrap interval
    improvement: float | None  # P(algo > reference); None for the reference itself
    improvement_ci: tuple[float, float] | None


def aggregate_rows(agg: AggregateSet, n_bootstrap: int = 2000, seed: int = 0) -> list[AggregateRow]:
    """
    Per algorithm of ``agg``: the IQM of its normalised final scores over the set's envs and its probability of
    improvement over the reference algorithm, each with a 95% percentile interval from a stratified bootstrap
    (seeds resampled within each env, independently per algorithm; the normaliser is held fixed).
    """
    rows = []
    reference = agg.scores.get(REFERENCE_ALGO)
    for algo, scores in agg.scores.items():
        rng = np.random.default_rng(seed)  # one stream per row: a row's interval does not depend on the others
        boot = stratified_bootstrap(lambda s: interquartile_mean(np.concatenate(s)), [scores], n_bootstrap, rng)
        iqm_ci = tuple(np.percentile(boot, [2.5, 97.5]))
        improvement = improvement_ci = None
        if algo != REFERENCE_ALGO and reference is not None:
            improvement = probability_of_improvement(scores, reference)
            boot = stratified_bootstrap(probability_of_improvement, [scores, reference], n_bootstrap, rng)
            improvement_ci = tuple(np.percentile(boot, [2.5, 97.5]))
        runs = sum(map(len, scores))
        rows.append(AggregateRow(algo, runs, interquartile_mean(np.concatenate(scores)), iqm_ci, improvement, improvement_ci))
    return sorted(rows, key=lambda row: -row.iqm)


def aggregate(agg: AggregateSet, rows: list[AggregateRow]) -> str:
    """One aggregate as Markdown: its normaliser, the table of :func:`aggregate_rows` and the algorithms left out."""
    ref = ", ".join(f"{env} {agg.reference[env]:.1f}" for env in agg.envs if env in agg.reference)
    lines = [
        f"Aggregate '{agg.name}' over {', '.join(agg.envs)}: normalised score (score - random) / "
        f"({REFERENCE_ALGO} mean - random); {REFERENCE_ALGO} means: {ref or 'none measured'}",
        "",
        f"| algo | runs | IQM | 95% CI | P(algo > {REFERENCE_ALGO}) | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        improvement = "-" if row.improvement is None else f"{row.improvement:.2f}"
        improvement_ci = "-" if row.improvement_ci is None else f"[{row.improvement_ci[0]:.2f}, {row.improvement_ci[1]:.2f}]"
        lines.append(
            f"| {row.algo} | {row.runs} | {row.iqm:.3f} | [{row.iqm_ci[0]:.3f}, {row.iqm_ci[1]:.3f}] "
            f"| {improvement} | {improvement_ci} |"
        )
    if not rows:
        lines.append("| (no algorithm with every env of the set measured) | | | | | |")
    reference = agg.scores.get(REFERENCE_ALGO)
    if rows and reference is not None:  # where the probability of improvement comes from
        lines += ["", f"| P(algo > {REFERENCE_ALGO}) per env | {' | '.join(agg.envs)} |", "|---" * (len(agg.envs) + 1) + "|"]
        for row in rows:
            if row.improvement is not None:
                per_env = [probability_of_improvement([x], [y]) for x, y in zip(agg.scores[row.algo], reference, strict=True)]
                lines.append(f"| {row.algo} | {' | '.join(f'{p:.2f}' for p in per_env)} |")
    lines += ["", *(f"Left out: {algo} ({reason})" for algo, reason in agg.left_out.items())]
    return "\n".join(lines)


def plot_aggregate(agg: AggregateSet, rows: list[AggregateRow], out: Path, n_bootstrap: int = 2000, seed: int = 0) -> None:
    """
    rliable's three views of one aggregate: IQM intervals, probability of improvement over the reference with its
    interval, and the performance profiles (fraction of runs above each normalised score, 95% bootstrap band).
    """
    matplotlib = require("matplotlib", feature="benchmark.py --plot-dir", extra="benchmark")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda row: row.iqm)
    colors = {row.algo: f"C{i}" for i, row in enumerate(sorted(rows, key=lambda row: row.algo))}
    fig, (ax_iqm, ax_poi, ax_profile) = plt.subplots(1, 3, figsize=(15, 0.35 * len(rows) + 3.2))
    for y, row in enumerate(rows):
        ax_iqm.barh(y, row.iqm_ci[1] - row.iqm_ci[0], left=row.iqm_ci[0], height=0.6, alpha=0.5, color=colors[row.algo])
        ax_iqm.plot([row.iqm] * 2, [y - 0.3, y + 0.3], color="black")
        if row.improvement is not None:
            low, high = row.improvement_ci
            ax_poi.barh(y, high - low, left=low, height=0.6, alpha=0.5, color=colors[row.algo])
            ax_poi.plot([row.improvement] * 2, [y - 0.3, y + 0.3], color="black")
    for ax in (ax_iqm, ax_poi):
        ax.set_yticks(range(len(rows)), [row.algo for row in rows])
        ax.grid(axis="x", alpha=0.3)
    ax_iqm.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax_iqm.set_xlabel(f"IQM of normalised score (1 = {REFERENCE_ALGO}'s mean); bar: 95% CI")
    ax_poi.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax_poi.set_xlim(0, 1)
    ax_poi.set_xlabel(f"P(algo > {REFERENCE_ALGO}); bar: 95% CI")
    everything = np.concatenate([s for scores in agg.scores.values() for s in scores])
    taus = np.linspace(min(0.0, everything.min()), max(1.25, everything.max()), 101)
    for algo, scores in sorted(agg.scores.items()):
        boot = stratified_bootstrap(lambda s: score_distribution(s, taus), [scores], n_bootstrap, np.random.default_rng(seed))
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
        ax_profile.plot(taus, score_distribution(scores, taus), color=colors[algo], label=algo)
        ax_profile.fill_between(taus, low, high, color=colors[algo], alpha=0.15)
    ax_profile.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax_profile.set_xlabel("normalised score tau")
    ax_profile.set_ylabel("fraction of runs with score > tau")
    ax_profile.grid(alpha=0.3)
    ax_profile.legend(fontsize=8)
    fig.suptitle(f"{agg.name}: " + ", ".join(agg.envs), fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
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
    parser.add_argument("--ablation", metavar="ALGO", default=None, help="print ALGO's ablation table (its variants) and exit")
    parser.add_argument("--plot-dir", type=Path, default=None, help="--report: also plot each aggregate as a PNG here")
    parser.add_argument("--memory", metavar="ENV_ID", default=None, help="measure parameters and peak memory on ENV_ID")
    parser.add_argument("--memory-steps", type=int, default=20_000)
    args = parser.parse_args(argv)

    if args.ablation:
        print(ablation(args.results_dir, args.ablation))
        return
    if args.report:
        print(report(args.results_dir))
        results = load_results(args.results_dir, variants=False)
        for name, envs in AGGREGATE_SETS.items():  # each aggregate over a fixed set: every row covers the same envs
            sets = [(name, envs)]
            covered = reference_envs(results, envs)
            if 0 < len(covered) < len(envs):  # a set still missing its reference somewhere: also the part measured
                sets.append((f"{name}-partial", covered))
            for set_name, set_envs in sets:
                agg = aggregate_set(results, set_name, set_envs)
                rows = aggregate_rows(agg)
                print(f"\n{aggregate(agg, rows)}")
                if args.plot_dir and rows:
                    plot_aggregate(agg, rows, args.plot_dir / f"aggregate-{set_name}.png")
                    print(f"wrote {args.plot_dir / f'aggregate-{set_name}.png'}")
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
