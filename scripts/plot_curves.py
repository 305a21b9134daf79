"""
Learning curves as PNG (mean over seeds with a spread band), without starting a TensorBoard server.

Sources, each grouped into one curve per algorithm (and env):
- ``--tensorboard DIR``: TensorBoard event files below DIR (SB3's ``tensorboard_log`` or the zoo's
  ``--tensorboard-log``); runs named ``<NAME>_<k>`` are seeds of NAME; ``--tag`` picks the scalar;
- ``--zoo DIR``: an RL Zoo log folder (``DIR/<algo>/<env>_<k>/evaluations.npz`` written by its EvalCallback);
- ``--benchmark DIR``: the JSON results of ``scripts/benchmark.py`` (deterministic evaluation curves), one PNG per env
  with the curves against env steps and, beside them, against training wall-clock seconds; ``--algos`` picks the
  algorithms (fnmatch patterns; by default every one but the ablation variants ``algo@variant``).

    python scripts/plot_curves.py --tensorboard runs --tag rollout/ep_rew_mean --out curves.png
    python scripts/plot_curves.py --benchmark benchmark_results --out-dir docs/curves
    python scripts/plot_curves.py --benchmark benchmark_results --algos "grpo*" ppo --prefix grpo-ablation- --out-dir docs
"""

import argparse
import fnmatch
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sb3_po.common.optional import require

Curve = tuple[np.ndarray, np.ndarray]  # (env steps, values)
SEED_SUFFIX = r"_\d+$"  # SB3 and the zoo number the runs of one name: NAME_1, NAME_2, ...


def from_tensorboard(root: Path, tag: str) -> dict[str, list[Curve]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs: dict[str, list[Curve]] = defaultdict(list)
    for run_dir in sorted({p.parent for p in root.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag not in accumulator.Tags()["scalars"]:
            continue
        events = accumulator.Scalars(tag)
        label = re.sub(SEED_SUFFIX, "", str(run_dir.relative_to(root)))
        runs[label].append((np.array([e.step for e in events]), np.array([e.value for e in events])))
    return runs


def from_zoo(root: Path) -> dict[str, list[Curve]]:
    runs: dict[str, list[Curve]] = defaultdict(list)
    for path in sorted(root.glob("*/*/evaluations.npz")):
        data = np.load(path)
        algo, run = path.parent.parent.name, path.parent.name
        label = f"{algo} {re.sub(SEED_SUFFIX, '', run)}"
        runs[label].append((data["timesteps"], data["results"].mean(axis=1)))
    return runs


class BenchmarkRuns(NamedTuple):
    """One env's runs of ``scripts/benchmark.py``, per label (algorithm and budget)."""

    steps: dict[str, list[Curve]]  # evaluation curves against env steps
    wall: dict[str, list[Curve]]  # the same curves against training seconds, for the runs that recorded them
    ends: dict[str, list[tuple[float, float]]]  # (train seconds, final score) of the runs that recorded only their total


def from_benchmark(root: Path, algos: list[str] | None = None, also: tuple[str, ...] = ()) -> dict[str, BenchmarkRuns]:
    """
    {env: runs}; a run stored before ``curve_wall_seconds`` existed has its end point only on the wall-clock axis.

    :param algos: ``fnmatch`` patterns of the algorithms to plot (``["grpo*"]``: GRPO and its variants); default:
        every algorithm, ablation variants (``algo@variant``) left out
    :param also: cells plotted as well (a reference that is a variant, e.g. ``ppo@minatar``)
    """
    envs: dict[str, BenchmarkRuns] = defaultdict(
        lambda: BenchmarkRuns(defaultdict(list), defaultdict(list), defaultdict(list))
    )
    for path in sorted(root.glob("*/*/*/seed*.json")):
        if path.relative_to(root).parts[0] == "quick":
            continue
        result = json.loads(path.read_text())
        if not (_selected(result["algo"], algos) or result["algo"] in also):
            continue
        steps, scores = zip(*result["curve"], strict=True) if result["curve"] else ((), ())
        label, runs = f"{result['algo']} ({result['budget'] // 1000}k)", envs[result["env"]]
        runs.steps[label].append((np.array(steps), np.array(scores)))
        if "curve_wall_seconds" in result:
            runs.wall[label].append((np.array(result["curve_wall_seconds"]), np.array(scores)))
        else:
            runs.ends[label].append((result["train_seconds"], result["final_eval_mean"]))
    return envs


def _selected(algo: str, patterns: list[str] | None) -> bool:
    if patterns is None:
        return "@" not in algo
    return any(fnmatch.fnmatchcase(algo, pattern) for pattern in patterns)


def _draw(ax, runs: dict[str, list[Curve]], colors: dict[str, str] | None = None) -> None:
    """Mean over seeds on the x range they share, with a min-to-max band."""
    for label, curves in sorted(runs.items()):
        end = min(c[0][-1] for c in curves if len(c[0]))
        start = max(c[0][0] for c in curves if len(c[0]))
        grid = np.linspace(start, end, 200)
        values = np.stack([np.interp(grid, steps, vals) for steps, vals in curves if len(steps)])
        color = colors.get(label) if colors else None
        (line,) = ax.plot(grid, values.mean(axis=0), label=f"{label} ({len(values)} seeds)", color=color)
        if len(values) > 1:
            ax.fill_between(grid, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def plot(runs: dict[str, list[Curve]], title: str, ylabel: str, out: Path) -> None:
    matplotlib = require("matplotlib", feature="scripts/plot_curves.py", extra="plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    _draw(ax, runs)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title + "  (line: mean over seeds, band: min to max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def plot_benchmark(runs: BenchmarkRuns, title: str, out: Path) -> None:
    """The env-step curves and, beside them, the same seeds against training wall-clock seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {label: f"C{i % 10}" for i, label in enumerate(sorted(runs.steps))}
    fig, (ax_steps, ax_wall) = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    _draw(ax_steps, runs.steps, colors)
    _draw(ax_wall, runs.wall, colors)
    for label, ends in sorted(runs.ends.items()):
        seconds, finals = zip(*ends, strict=True)
        ax_wall.scatter(
            seconds, finals, marker="x", color=colors[label], label=f"{label}: end of run only ({len(ends)} seeds)"
        )
    ax_steps.set_xlabel("env steps")
    ax_steps.set_ylabel("deterministic evaluation return")
    ax_steps.set_title(title + "  (line: mean over seeds, band: min to max)", fontsize=9)
    ax_wall.set_xlabel("training wall-clock seconds (evaluations excluded)")
    ax_wall.set_xlim(left=0)
    ax_wall.set_title("x: final score at the total train time of runs without per-evaluation wall time", fontsize=8)
    for ax in (ax_steps, ax_wall):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tensorboard", type=Path)
    source.add_argument("--zoo", type=Path)
    source.add_argument("--benchmark", type=Path)
    parser.add_argument("--tag", default="rollout/ep_rew_mean", help="TensorBoard scalar to plot")
    parser.add_argument("--out", type=Path, default=Path("learning_curves.png"))
    parser.add_argument("--out-dir", type=Path, default=Path("learning_curves"), help="--benchmark: one PNG per env")
    parser.add_argument(
        "--algos", nargs="+", default=None, help="--benchmark: fnmatch patterns of the algorithms (default: no variants)"
    )
    parser.add_argument("--prefix", default="", help="--benchmark: put this before each PNG's name (<prefix><env>.png)")
    args = parser.parse_args()
    if args.tensorboard:
        plot(from_tensorboard(args.tensorboard, args.tag), str(args.tensorboard), args.tag, args.out)
    elif args.zoo:
        plot(from_zoo(args.zoo), str(args.zoo), "evaluation return", args.out)
    else:
        for env_id, runs in sorted(from_benchmark(args.benchmark, args.algos).items()):
            # the env id as a file name, as scripts/benchmark.py's file_stem makes it (MinAtar/Breakout-v1)
            plot_benchmark(runs, env_id, args.out_dir / f"{args.prefix}{env_id.replace('/', '-')}.png")


if __name__ == "__main__":
    main()
