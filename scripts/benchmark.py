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
import importlib
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
MINATAR = "sb3_po.common.env_state:register_minatar"
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
    # The project's own sparse-reward tasks (tests/envs.py, issue 32), on which GRPO's frontier default is tuned:
    # reward 1 at the goal only, so the score is the fraction of evaluation episodes that reach it ("solved": 9 of
    # 10). ``register`` names the function that registers them with gymnasium (called before any env is made).
    "SparseChain-v0": dict(budget=200_000, threshold=0.9, random=0.0, register="tests.envs:register_sparse_tasks"),
    "KeyDoor-v0": dict(budget=200_000, threshold=0.9, random=0.0, register="tests.envs:register_sparse_tasks"),
    "SparseAcrobot-v0": dict(budget=500_000, threshold=0.9, random=0.0, register="tests.envs:register_sparse_tasks"),
    "DeepSea-v0": dict(budget=200_000, threshold=0.9, random=-0.0048, register="tests.envs:register_sparse_tasks"),
    # MinAtar (the pixels extra; issue 32): 10 x 10 images, the MinAtar paper's network (MinAtarCNN) for PPO and GRPO
    # alike, 2M env steps. The "solved" line is the MinAtar paper's actor-critic, AC(lambda = 0.8), at 5M frames, read
    # off the learning curves of its README (30 runs, full action set): a line to compare with, not a solve.
    "MinAtar/Breakout-v1": dict(budget=2_000_000, threshold=17.4, random=0.39, eval_freq=100_000, register=MINATAR),
    "MinAtar/Asterix-v1": dict(budget=2_000_000, threshold=18.7, random=0.52, eval_freq=100_000, register=MINATAR),
    "MinAtar/SpaceInvaders-v1": dict(budget=2_000_000, threshold=183.0, random=3.89, eval_freq=100_000, register=MINATAR),
    "MinAtar/Freeway-v1": dict(budget=2_000_000, threshold=47.5, random=0.31, eval_freq=100_000, register=MINATAR),
}
SPARSE_ENVS = ["SparseChain-v0", "KeyDoor-v0", "SparseAcrobot-v0", "DeepSea-v0"]
MINATAR_ENVS = ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/SpaceInvaders-v1", "MinAtar/Freeway-v1"]


def register_env(env_id: str) -> None:
    """Register ``env_id`` with gymnasium if its entry names a registration hook (``"module:function"``)."""
    hook = ENVS.get(env_id, {}).get("register")
    if hook is not None:
        module, _, function = hook.partition(":")
        if str(ROOT) not in sys.path:  # some hooks live in the repository (tests/envs.py), not in the package
            sys.path.insert(0, str(ROOT))
        getattr(importlib.import_module(module), function)()


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
VERSIONED = (
    "torch",
    "numpy",
    "gymnasium",
    "mujoco",
    "box2d",
    "ale-py",
    "minatar",
    "stable-baselines3",
    "sb3-contrib",
    "rl_zoo3",
    "sb3-po",
)


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


def describe_versions(versions: dict[str, str | None]) -> str:
    """A version record (:func:`run_versions`) as one line: the packages, then the commit and the machine."""
    packages = ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None and k not in ("machine", "commit"))
    return f"commit {str(versions['commit'])[:12]} on {versions['machine']}; {packages}"


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
    register_env(env_id)
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


def file_stem(env_id: str) -> str:
    """``env_id`` as one file or folder name (``"MinAtar/Breakout-v1"`` -> ``"MinAtar-Breakout-v1"``)."""
    return env_id.replace("/", "-")


def result_path(results_dir: Path, algo: str, env_id: str, budget: int, seed: int) -> Path:
    return results_dir / algo / file_stem(env_id) / str(budget) / f"seed{seed}.json"


# The README's two aggregates. "mujoco": the continuous-control envs measured at 1M steps beside InvertedPendulum
# (LunarLanderContinuous is Box2D, but belongs with them by budget and action space rather than with the classic six).
AGGREGATE_SETS: dict[str, list[str]] = {
    "classic": TABLE_ENVS,
    "mujoco": ["InvertedPendulum-v5", "Hopper-v5", "HalfCheetah-v5", "LunarLanderContinuous-v3"],
}
# The normalised score's 1 on each env: this algorithm's mean final score, measured in the same table (same budget,
# machine and evaluation protocol), so that the aggregates compare algorithms with PPO rather than with a solve line.
REFERENCE_ALGO = "ppo"
# PPO's two references (issue 31): the RL Zoo's tuned entry (``ppo``) and SB3's defaults with VecNormalize, no per-env
# tuning (``ppo@defaults_vecnorm``, scripts/variants.yml). Both are reported as cells; the aggregates normalise each env
# by the stronger of the two there (higher mean final score), and the ablation targets are set by it.
REFERENCE_CELLS: dict[str, tuple[str, ...]] = {"ppo": ("ppo", "ppo@defaults_vecnorm", "ppo@minatar")}


def reference_cells(reference: str) -> tuple[str, ...]:
    """The cells (algorithm or variant names) that stand for the reference ``reference``: itself unless listed above."""
    return REFERENCE_CELLS.get(reference, (reference,))


def all_reference_cells() -> tuple[str, ...]:
    """Every cell that stands for a reference (``ppo``, ``ppo@defaults_vecnorm``, ``ppo@minatar``, ...)."""
    return tuple(cell for cells in REFERENCE_CELLS.values() for cell in cells)


def reference_of(cell: str) -> str:
    """The reference a cell stands for (``ppo@defaults_vecnorm`` -> ``ppo``), else the cell itself."""
    return next((reference for reference, cells in REFERENCE_CELLS.items() if cell in cells), cell)


def strongest_cell(finals: dict[str, Any], reference: str = REFERENCE_ALGO) -> str | None:
    """
    Of ``reference``'s cells measured in ``finals`` (cell -> its seeds' final scores), the one with the highest mean.
    A cell with fewer seeds than ``reference``'s own cell (one still being measured) is not eligible: a mean over its
    first seeds is not a reference yet.
    """
    measured = [cell for cell in reference_cells(reference) if len(finals.get(cell, [])) > 0]
    own = len(finals.get(reference, []))
    complete = [cell for cell in measured if len(finals[cell]) >= own] or measured
    return max(complete, key=lambda cell: float(np.mean(finals[cell]))) if complete else None


def load_results(results_dir: Path, variants: bool = True) -> list[dict[str, Any]]:
    """
    Every stored run, --quick ones (which live apart) excepted.

    :param variants: include the ablation variants (``algo@variant``), which the ablation table reports; the
        variants that are references (``REFERENCE_CELLS``) are always included
    """
    references = all_reference_cells()
    runs = []
    for path in sorted(results_dir.glob("*/*/*/seed*.json")):
        algo = path.relative_to(results_dir).parts[0]
        if algo != "quick" and (variants or "@" not in algo or algo in references):
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


def version_key(run: dict[str, Any]) -> tuple[tuple[str, str | None], ...] | None:
    """What produced a run, less its commit (python, packages, machine); None for a run stored before runs recorded it."""
    versions = run.get("versions")
    return None if versions is None else tuple((k, v) for k, v in versions.items() if k != "commit")


class VersionSets:
    """
    The version records of a table's runs, each distinct one labelled ``V1``, ``V2``, ... (in order of the records),
    for a "versions" column and the legend printed under the table; ``-`` marks runs stored before the record existed.
    """

    def __init__(self, runs: list[dict[str, Any]]):
        keys = sorted({key for r in runs if (key := version_key(r)) is not None})
        self.labels = {key: f"V{i + 1}" for i, key in enumerate(keys)}
        self.runs = runs

    def cell(self, runs: list[dict[str, Any]]) -> str:
        """The labels of ``runs``' records, e.g. ``V1`` or ``V1, -``."""
        labels = {"-" if (key := version_key(r)) is None else self.labels[key] for r in runs}
        return ", ".join(sorted(labels, key=lambda label: (label == "-", label)))

    def legend(self) -> str:
        lines = []
        for key, label in self.labels.items():
            runs = [r for r in self.runs if version_key(r) == key]
            commits = sorted({str(r["versions"].get("commit"))[:12] for r in runs})
            described = ", ".join(f"{k} {v}" for k, v in key if k != "machine" and v is not None)
            missing = [k for k, v in key if v is None]
            lines.append(
                f"- {label} ({len(runs)} runs): {described}"
                + (f"; not installed: {', '.join(missing)}" if missing else "")
                + f"; machine: {dict(key).get('machine')}; commits: {', '.join(commits)}"
            )
        old = sum(version_key(r) is None for r in self.runs)
        if old:
            lines.append(f"- `-` ({old} runs): versions not recorded (stored before runs recorded them; machine line only)")
        return "Versions:\n" + "\n".join(lines)


def report(results_dir: Path) -> str:
    """The results table: every algorithm's cells, the ablation variants left out (see :func:`ablation`)."""
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in load_results(results_dir, variants=False):
        cells.setdefault((r["env"], r["algo"], r["budget"]), []).append(r)
    lines = [
        "| env | algo | budget | env steps taken (mean) | seeds | final eval (mean +- std over seeds) | per seed | solved "
        "| median steps to solve | train time (s/run) | median wall time to solve (s) | versions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    versions = VersionSets([r for runs in cells.values() for r in runs])
    for (env_id, algo, budget), runs in sorted(cells.items()):
        finals = np.array([r["final_eval_mean"] for r in runs])
        solved = [r["steps_to_threshold"] for r in runs if r["steps_to_threshold"] is not None]
        median = f"{int(np.median(solved)):,}" if solved else "-"
        per_seed = ", ".join(f"{f:.0f}" for f in finals)
        lines.append(
            f"| {env_id} | {algo} | {budget:,} | {np.mean([r['env_steps'] for r in runs]):,.0f} | {len(runs)} "
            f"| {finals.mean():.1f} +- {finals.std():.1f} | {per_seed} "
            f"| {len(solved)}/{len(runs)} | {median} | {np.mean([r['train_seconds'] for r in runs]):.0f} "
            f"| {wall_to_solve(runs)} | {versions.cell(runs)} |"
        )
    return "\n".join([*lines, "", versions.legend()])


def ablation(results_dir: Path, algo: str, reference: str = REFERENCE_ALGO) -> str:
    """
    The ablation table of ``algo`` and its variants (``algo@name``), env by env: final score, seeds solved at some
    evaluation, the fraction of groups with zero spread (no gradient) and the env steps per update (idle slots and
    discarded groups included), beside the target set by ``reference`` on the same env and budget: its mean minus
    the larger of its seed standard deviation and 2% of its mean's magnitude.
    """
    cells: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in load_results(results_dir):
        if split_variant(r["algo"])[0] == algo or r["algo"] in reference_cells(reference):
            cells.setdefault((r["env"], r["budget"]), {}).setdefault(r["algo"], []).append(r)
    lines = [
        f"| env | budget | variant | seeds | final eval (mean +- std) | per seed | solved | vs target ({reference}) "
        "| zero-spread groups | env steps per update | train time (s/run) | versions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    versions = VersionSets(
        [r for by_algo in cells.values() for name, runs in by_algo.items() if split_variant(name)[0] == algo for r in runs]
    )
    for (env_id, budget), by_algo in sorted(cells.items()):
        variants = sorted(name for name in by_algo if split_variant(name)[0] == algo)
        if not variants:
            continue
        target = None
        strongest = strongest_cell({name: [r["final_eval_mean"] for r in runs] for name, runs in by_algo.items()}, reference)
        if strongest is not None:  # the stronger of the reference's cells on this env (see REFERENCE_CELLS)
            ref = np.array([r["final_eval_mean"] for r in by_algo[strongest]])
            target = ref.mean() - max(ref.std(), 0.02 * abs(ref.mean()))
        for name in variants:
            runs = by_algo[name]
            finals = np.array([r["final_eval_mean"] for r in runs])
            solved = sum(r["steps_to_threshold"] is not None for r in runs)
            zero = [v for r in runs for _, v in r.get("trace", {}).get("train/zero_spread_groups", [])]
            updates = [len(r.get("trace", {}).get("train/zero_spread_groups", [])) for r in runs]
            per_update = [r["env_steps"] / n for r, n in zip(runs, updates, strict=True) if n]
            verdict = "n/a" if target is None else f"{'met' if finals.mean() >= target else 'missed'} ({target:.1f})"
            if target is not None and strongest != reference:
                verdict += f" ({strongest})"
            zero_cell = f"{np.mean(zero):.2f}" if zero else "-"
            per_update_cell = f"{np.mean(per_update):,.0f}" if per_update else "-"
            lines.append(
                f"| {env_id} | {budget:,} | {name} | {len(runs)} | {finals.mean():.1f} +- {finals.std():.1f} "
                f"| {', '.join(f'{f:.0f}' for f in finals)} | {solved}/{len(runs)} | {verdict} | {zero_cell} "
                f"| {per_update_cell} | {np.mean([r['train_seconds'] for r in runs]):.0f} | {versions.cell(runs)} |"
            )
    return "\n".join([*lines, "", versions.legend()])


# Scores that others publish for these envs (issue 31): RL Zoo, sb3-contrib, CleanRL, Tianshou, Spinning Up, the papers.
PUBLISHED_FILE = ROOT / "benchmark_results" / "published.yml"


class PublishedScore(NamedTuple):
    """One score as its source publishes it (``benchmark_results/published.yml``; its header says how each statistic reads)."""

    env: str  # our env id (the source's version may be older: ``source_env``)
    algo: str  # our algorithm name
    score: float
    std: float | None
    source_env: str
    budget: int | None
    runs: int | None
    statistic: str
    source: str
    url: str
    settings: str


def load_published(path: Path = PUBLISHED_FILE) -> dict[str, list[PublishedScore]]:
    """Env id -> its published scores (an empty list where none was found)."""
    entries = yaml.safe_load(path.read_text()) or {}
    return {
        env: [
            PublishedScore(
                env, e["algo"], float(e["score"]), e.get("std"), e["env"], e.get("budget"), e.get("runs"),
                e.get("statistic", ""), e["source"], e.get("url", ""), e.get("settings", ""),
            )
            for e in (listed or [])
        ]
        for env, listed in entries.items()
    }  # fmt: skip


# How a published statistic differs from ours (the final evaluation of the deterministic policy, 20 episodes, mean
# over seeds), found by the words its entry uses (published.yml's header says how each source's statistic reads)
STATISTIC_KINDS = (
    ("max over training", "the best point of the learning curve, not the last"),
    ("last-100", "the last 100 training episodes of the stochastic policy, not an evaluation"),
    ("last 100", "the last 100 training episodes of the stochastic policy, not an evaluation"),
    ("training-batch", "training episodes of the stochastic policy, smoothed, not an evaluation"),
    ("one trained agent", "one trained agent's evaluation (std over its episodes, not over seeds)"),
    ("stochastic", "the stochastic policy"),
    ("read", "read off a figure"),
    ("approx", "read off a figure"),
)


def what_differs(p: PublishedScore, budget: int) -> str:
    """
    What differs between a published score and our cell at ``budget`` env steps, from the entry's recorded facts: the
    env version, the budget, the statistic, the number of runs, and the source's settings (where recorded).
    """
    differs = []
    if p.source_env != p.env:
        differs.append(f"env {p.source_env} (ours {p.env})")
    if p.budget is None:
        differs.append("budget not stated")
    elif int(p.budget) != budget:
        differs.append(f"budget {int(p.budget):,} (ours {budget:,})")
    statistic = p.statistic.lower()
    kinds = dict.fromkeys(text for key, text in STATISTIC_KINDS if key in statistic)  # each once, in order
    if "the stochastic policy" in kinds and any("stochastic policy," in k or "stochastic policy " in k for k in kinds):
        del kinds["the stochastic policy"]
    differs.extend(kinds)
    if p.runs == 1 and "one trained agent's evaluation (std over its episodes, not over seeds)" not in kinds:
        differs.append("one run")
    if p.settings:
        differs.append(f"settings: {p.settings}")
    return "; ".join(differs) or "nothing recorded"


def published(results_dir: Path, path: Path = PUBLISHED_FILE) -> str:
    """
    Every published score beside our cells of the same env and algorithm at the env's budget (PPO: both reference
    cells), with the gap (published - ours) and whether it is larger than our seeds' std; then, per env, the
    algorithms measured there that no source publishes ("none found"; the env alone where nothing is published).
    """
    ours: dict[tuple[str, str], list[float]] = {}
    for r in at_env_budget(load_results(results_dir, variants=False)):
        ours.setdefault((r["env"], r["algo"]), []).append(r["final_eval_mean"])
    lines = [
        "| env | algo | published | its env | its budget | its runs | statistic | source | ours (mean +- std, seeds) "
        "| published - ours | beyond our std | what differs from ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, scores in load_published(path).items():
        for p in scores:
            cells = [c for c in reference_cells(p.algo) if (env_id, c) in ours]
            mine = [np.array(ours[(env_id, c)]) for c in cells]
            number = f"{p.score:.1f}" + ("" if p.std is None else f" +- {float(p.std):.1f}")
            budget = "?" if p.budget is None else f"{int(p.budget):,}"
            source = f"[{p.source}]({p.url})" if p.url else p.source
            pairs = list(zip(cells, mine, strict=True))
            ours_cell = "; ".join(f"{c}: {m.mean():.1f} +- {m.std():.1f} ({len(m)})" for c, m in pairs)
            gap = "; ".join(f"{c}: {p.score - m.mean():+.1f}" for c, m in pairs)
            beyond = "; ".join(f"{c}: {'yes' if abs(p.score - m.mean()) > m.std() else 'no'}" for c, m in pairs)
            lines.append(
                f"| {env_id} | {p.algo} | {number} | {p.source_env} | {budget} | {p.runs or '?'} | {p.statistic} | {source} "
                f"| {ours_cell or 'not measured'} | {gap or '-'} | {beyond or '-'} "
                f"| {what_differs(p, ENVS[env_id]['budget']) if env_id in ENVS else '-'} |"
            )
        # the algorithms we measured here that no source publishes for this env (or none at all where nothing is)
        unpublished = sorted({reference_of(algo) for env, algo in ours if env == env_id} - {p.algo for p in scores})
        if unpublished or not scores:
            algos = f" {', '.join(unpublished)} " if unpublished else " "
            lines.append(f"| {env_id} |{algos}| none found | | | | | | | | | |")
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
    reference_cell: dict[str, str]  # env -> the reference's cell that stands for it there (the strongest)


def aggregate_set(
    results: list[dict[str, Any]], name: str, envs: list[str], reference_algo: str = REFERENCE_ALGO
) -> AggregateSet:
    """
    The runs of ``results`` at each env's shared budget (other budgets are side experiments), normalised by
    :func:`normalised_score` against ``reference_algo``'s mean. An algorithm enters only with every env of ``envs``
    measured, and only if the reference is measured on all of them too (otherwise there is no normaliser).

    Where the reference has several cells (``REFERENCE_CELLS``: PPO's zoo entry and its defaults with VecNormalize),
    ``reference_algo`` stands on each env for the strongest of them measured there (its seeds are the reference's,
    for the normaliser, the IQM and P(algo > reference)); the other cells are not rows of the aggregate.
    """
    finals: dict[str, dict[str, list[float]]] = {}
    for r in at_env_budget(results):
        finals.setdefault(r["algo"], {}).setdefault(r["env"], []).append(r["final_eval_mean"])
    cells = reference_cells(reference_algo)
    reference_cell = {}
    for env in envs:
        cell = strongest_cell({c: finals.get(c, {}).get(env, []) for c in cells}, reference_algo)
        if cell is not None:
            reference_cell[env] = cell
    by_cell = {c: finals.pop(c, {}) for c in cells}
    if reference_cell:
        finals[reference_algo] = {env: by_cell[cell][env] for env, cell in reference_cell.items()}
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
    return AggregateSet(name, list(envs), reference, scores, left_out, reference_cell)


def reference_envs(results: list[dict[str, Any]], envs: list[str], reference_algo: str = REFERENCE_ALGO) -> list[str]:
    """The envs of ``envs`` (in that order) on which ``reference_algo`` is measured at the env's budget."""
    measured = {r["env"] for r in at_env_budget(results) if r["algo"] in reference_cells(reference_algo)}
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
    ref = ", ".join(f"{env} {agg.reference[env]:.1f} ({agg.reference_cell[env]})" for env in agg.envs if env in agg.reference)
    cells = reference_cells(REFERENCE_ALGO)
    lines = [
        f"Aggregate '{agg.name}' over {', '.join(agg.envs)}: normalised score (score - random) / "
        f"({REFERENCE_ALGO} mean - random); {REFERENCE_ALGO} means: {ref or 'none measured'}"
        + (f". On each env {REFERENCE_ALGO} is the stronger of its cells {', '.join(cells)} there." if len(cells) > 1 else ""),
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


# --- Dispatch (issue 33): the runs of a grid one after the other in this process, or each as a Ray task ---------------


class Run(NamedTuple):
    """One run of a grid: the arguments of :func:`run_one` and the path of its result in the results store."""

    algo: str
    env_id: str
    seed: int
    budget: int
    eval_freq: int
    n_eval_episodes: int
    path: Path

    @property
    def label(self) -> str:
        return f"{self.algo} {self.env_id} seed={self.seed}"

    @property
    def arguments(self) -> tuple[str, str, int, int, int, int]:
        """What :func:`run_one` takes: plain values, as they cross to a Ray worker."""
        return self.algo, self.env_id, self.seed, self.budget, self.eval_freq, self.n_eval_episodes


class Finished(NamedTuple):
    """A finished run: its result (what :func:`run_one` returns) and where and how long it ran."""

    run: Run
    result: dict[str, Any]
    node: str  # the machine that ran it (on Ray: host name, node id and worker process)
    seconds: float  # the whole run where it ran: build, train, evaluate
    latency: float  # from dispatch to its result in this process: ``seconds`` plus the dispatch overhead


def grid(
    algos: list[str],
    envs: list[str],
    seeds: range,
    results_dir: Path,
    budget: int | None,
    eval_freq: int | None,
    n_eval_episodes: int,
) -> list[Run]:
    """Every run of ``algos`` x ``envs`` x ``seeds``, env by env; ``budget`` None: each env's own."""
    runs = []
    for env_id in envs:
        env_budget = budget or ENVS[env_id]["budget"]
        env_eval_freq = min(eval_freq or ENVS.get(env_id, {}).get("eval_freq", EVAL_FREQ), env_budget)
        for algo in algos:
            for seed in seeds:
                path = result_path(results_dir, algo, env_id, env_budget, seed)
                runs.append(Run(algo, env_id, seed, env_budget, env_eval_freq, n_eval_episodes, path))
    return runs


def store_result(path: Path, result: dict[str, Any]) -> None:
    """Write one run's result; atomic: an interrupted write leaves no half-written result, only a ``.tmp`` file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)


def execute(
    algo: str, env_id: str, seed: int, budget: int, eval_freq: int, n_eval_episodes: int, node: str | None = None
) -> tuple[dict[str, Any], str, float]:
    """:func:`run_one`, timed: ``(result, node, seconds)``; ``node`` default: this machine's host name."""
    start = time.perf_counter()
    result = run_one(algo, env_id, seed, budget, eval_freq, n_eval_episodes)
    return result, node or platform.node(), time.perf_counter() - start


def ray_task(arguments: tuple) -> tuple[dict[str, Any], str, float]:
    """
    One run on a Ray worker. The driver ships its checkout as Ray's ``working_dir`` (the worker's current directory,
    first on its ``sys.path``): the worker imports this file and sb3_po from there, so every node runs the driver's
    code, whatever is installed there besides. Only plain values cross: no class of this module has to be importable
    on the worker under the name the driver knows it by (``__main__``, ``benchmark``).
    """
    import os
    import sys

    import ray

    scripts = os.path.join(os.getcwd(), "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import benchmark

    context = ray.get_runtime_context()
    node = f"{platform.node()} {ray.util.get_node_ip_address()} node {context.get_node_id()[:8]} pid {os.getpid()}"
    return benchmark.execute(*arguments, node=node)


class Progress:
    """
    What a grid has done: one line per finished (or failed) run with the done / running / left counts, and a progress
    bar (tqdm's) where stdout is a terminal and tqdm is installed.
    """

    def __init__(self, total: int, where: str, bar: bool | None = None):
        self.total, self.done, self.running, self.failed = total, 0, 0, 0
        if bar is None:
            bar = sys.stdout.isatty() and importlib.util.find_spec("tqdm") is not None
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, desc=where)

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed - self.running

    def counts(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total} done, {self.running} running, {self.left} left{failed}"

    def set_running(self, running: int) -> None:
        self.running = running
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.running} running, {self.left} left", refresh=True)

    def finished(self, finished: Finished) -> None:
        self.done += 1
        self.running -= 1
        result = finished.result
        self._line(
            f"[{self.counts()}] {finished.run.label}: final {result['final_eval_mean']:.1f}, solved at "
            f"{result['steps_to_threshold']}, {result['train_seconds']:.0f}s training, {finished.seconds:.0f}s in all, "
            f"on {finished.node}"
        )

    def failure(self, run: Run, error: BaseException) -> None:
        self.failed += 1
        self.running -= 1
        self._line(
            f"[{self.counts()}] {run.label}: FAILED, {type(error).__name__}: {(str(error).strip().splitlines() or [''])[-1]}"
        )

    def _line(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)
            self.bar.update(1)
            self.bar.set_postfix_str(f"{self.running} running, {self.left} left", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sequential(runs: list[Run], progress: Progress) -> list[Finished]:
    """Each run in this process, one after the other, stored as it finishes; an error stops the grid."""
    finished = []
    for run in runs:
        progress.set_running(1)
        start = time.perf_counter()
        result, node, seconds = execute(*run.arguments)
        store_result(run.path, result)
        finished.append(Finished(run, result, node, seconds, time.perf_counter() - start))
        progress.finished(finished[-1])
    return finished


def working_dir_excludes(results_dir: Path) -> list[str]:
    """What the driver leaves out of the checkout it ships to the workers (besides what .gitignore lists)."""
    excludes = ["/benchmark_results/", "/docs/", "/tests/", "/.ci/"]
    if results_dir.resolve().is_relative_to(ROOT):  # a results store inside the checkout
        excludes.append(f"/{results_dir.resolve().relative_to(ROOT).as_posix()}/")
    return excludes


RAY_FEATURE = "benchmark.py on Ray (--ray-address, --workers)"


class GridFailed(RuntimeError):
    """Runs of a grid on Ray raised; the others are stored."""


def run_on_ray(
    runs: list[Run], progress: Progress, address: str | None, workers: int, max_retries: int, results_dir: Path
) -> list[Finished]:
    """
    Each run as a Ray task of one CPU, on the cluster at ``address`` ("auto": the one this machine belongs to) or, with
    ``address`` None, on a local Ray started here with ``workers`` CPUs. The driver (this process) stores each result
    from the task's return value: the workers' disks need not be shared. At most as many runs are in flight as the
    cluster has CPUs, so that "running" counts what runs. A task whose worker process or node dies is run again
    (``max_retries`` times, by Ray); a run that raises is reported and the others go on; :class:`GridFailed` at the end.
    """
    ray = require("ray", feature=RAY_FEATURE, extra="cluster")
    if __name__ != "__main__":  # imported as a module: ray_task travels by value too (see its docstring)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    commit = run_versions()["commit"]  # the shipped checkout's: the workers have no .git
    runtime_env = {
        "working_dir": str(ROOT),
        "excludes": working_dir_excludes(results_dir),
        "env_vars": {"OMP_NUM_THREADS": "1"},
    }
    options: dict[str, Any] = dict(runtime_env=runtime_env, logging_level="WARNING")
    if address is None:
        options.update(num_cpus=workers, include_dashboard=False)
    ray.init(address=address, **options)
    try:
        remote = ray.remote(num_cpus=1, max_retries=max_retries)(ray_task)
        pending, in_flight, finished, failures = list(reversed(runs)), {}, [], []
        while pending or in_flight:
            capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))  # nodes may join or leave meanwhile
            while pending and len(in_flight) < capacity:
                run = pending.pop()
                in_flight[remote.options(name=run.label).remote(run.arguments)] = (run, time.perf_counter())
            progress.set_running(len(in_flight))
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                run, submitted = in_flight.pop(ref)
                try:
                    result, node, seconds = ray.get(ref)
                except ray.exceptions.RayError as error:
                    failures.append((run, error))
                    progress.failure(run, error)
                    continue
                if commit is not None and "versions" in result:
                    result["versions"]["commit"] = commit
                store_result(run.path, result)
                finished.append(Finished(run, result, node, seconds, time.perf_counter() - submitted))
                progress.finished(finished[-1])
    finally:
        ray.shutdown()
    if failures:
        raise GridFailed(
            f"{len(failures)} of {len(runs)} runs failed (the others are stored; a rerun runs the failed ones): "
            + "; ".join(f"{run.label}: {type(error).__name__}" for run, error in failures)
        )
    return finished


def check_dispatch(sequential: bool, address: str | None, workers: int | None, max_retries: int | None) -> None:
    """Refuse dispatch options that go against each other or would change nothing (ValueError naming them)."""
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    if max_retries is not None and max_retries < 0:
        raise ValueError(f"--max-retries must be at least 0, not {max_retries}")
    if sequential and (address or workers is not None or max_retries is not None):
        raise ValueError("--sequential runs in this process: no --ray-address, --workers or --max-retries with it")
    if address and workers is not None:
        raise ValueError("--workers sizes a local Ray; a cluster joined with --ray-address has its own workers")
    if workers == 1 and max_retries is not None:
        raise ValueError("--max-retries retries Ray tasks: not with --workers 1, which runs in this process")


def use_ray(sequential: bool, address: str | None, workers: int | None, n_runs: int) -> bool:
    """
    Whether to dispatch to Ray: with ``--ray-address`` or ``--workers`` above 1 (Ray must be installed); by default
    when Ray is installed, this machine has several CPUs and more than one run is left; never with ``--sequential``
    or ``--workers 1``.
    """
    if sequential or workers == 1:
        return False
    if address or workers is not None:
        require("ray", feature=RAY_FEATURE, extra="cluster")
        return True
    return importlib.util.find_spec("ray") is not None and (os.cpu_count() or 1) > 1 and n_runs > 1


def dispatch(
    runs: list[Run],
    results_dir: Path,
    sequential: bool = False,
    address: str | None = None,
    workers: int | None = None,
    max_retries: int | None = None,
    bar: bool | None = None,
) -> list[Finished]:
    """
    The runs of ``runs`` not yet in the results store (``results_dir``), run (in this process or on Ray: see
    :func:`use_ray`) and stored as each finishes. A rerun skips what is stored, so an interrupted grid goes on where it
    stopped. Returns the runs finished now.
    """
    check_dispatch(sequential, address, workers, max_retries)
    todo = [run for run in runs if not run.path.exists()]
    on_ray = use_ray(sequential, address, workers, len(todo))
    workers = workers or os.cpu_count() or 1
    if on_ray:
        where = f"on the Ray cluster at {address}" if address else f"on a local Ray with {workers} workers"
    else:
        where = "in this process, one at a time"
        if not sequential and len(todo) > 1 and importlib.util.find_spec("ray") is None:
            where += f" ({missing_extra_message('ray', 'running several at once', 'cluster')})"
    print(f"{len(runs)} runs: {len(runs) - len(todo)} already stored, {len(todo)} to run {where}", flush=True)
    if not todo:
        return []
    progress = Progress(len(todo), "runs", bar)
    try:
        if not on_ray:
            return run_sequential(todo, progress)
        return run_on_ray(todo, progress, address, workers, 3 if max_retries is None else max_retries, results_dir)
    finally:
        progress.close()


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
    parser.add_argument("--published", action="store_true", help="print the published scores beside ours and exit")
    parser.add_argument("--plot-dir", type=Path, default=None, help="--report: also plot each aggregate as a PNG here")
    parser.add_argument("--memory", metavar="ENV_ID", default=None, help="measure parameters and peak memory on ENV_ID")
    parser.add_argument("--memory-steps", type=int, default=20_000)
    cluster = parser.add_argument_group("dispatch (docs/cluster.md)", "default: a local Ray when installed, else sequential")
    cluster.add_argument("--ray-address", default=None, help="join this Ray cluster: auto (this machine's) or HOST:PORT")
    cluster.add_argument("--workers", type=int, default=None, help="runs at once on a local Ray (default: the CPUs)")
    cluster.add_argument("--max-retries", type=int, default=None, help="Ray: reruns of a run whose worker died (default 3)")
    cluster.add_argument("--sequential", action="store_true", help="one run after the other in this process, no Ray")
    args = parser.parse_args(argv)

    if args.ablation:
        print(ablation(args.results_dir, args.ablation))
        return
    if args.published:
        print(published(args.results_dir))
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
    seeds = range(args.first_seed, args.first_seed + n_seeds)
    budget = QUICK_BUDGET if args.quick else args.budget
    runs = grid(algos, args.envs, seeds, results_dir, budget, args.eval_freq, args.n_eval_episodes)
    try:
        check_dispatch(args.sequential, args.ray_address, args.workers, args.max_retries)
    except ValueError as error:  # options that do not go together
        parser.error(str(error))
    try:
        dispatch(runs, results_dir, args.sequential, args.ray_address, args.workers, args.max_retries)
    except (MissingExtraError, GridFailed) as error:  # Ray not installed; runs that failed
        raise SystemExit(f"benchmark.py: {error}") from None
    print(report(results_dir))


if __name__ == "__main__":
    sys.exit(main())
