"""
Where GRPO's frontier breaks on the deep sea (issue 32: ``tests/envs.py``'s ``DeepSea-v0``, 20 x 20).

The treasure (the bottom-right corner) can be reached from cell (row r, column c) only while c >= r - 1: from the
start along the diagonal ("right" on every row), or "left" first (the column stays 0) and then "right" along the
cells (r, r - 1). These 39 cells are the band. Trains GRPO with a variant of ``scripts/variants.yml`` (optionally with
``--set key=value`` overrides on top) and, every ``--every`` rollouts, records the two halves of the chain the
frontier has to build:

- the archive: its cells, the deepest row of the band it holds, and the draws that went to band cells;
- the policy: from which rows the deterministic (greedy) policy reaches the treasure (``greedy_from``: the shallowest
  row with a band cell it reaches the treasure from; 0 = solved, 20 = from nowhere), the band cells where it moves
  right, and the members that reached the treasure so far.

    python scripts/deep_sea_probe.py frontier_explore10_draws --set ent_coef=0.01 --steps 400000 \\
        --json benchmark_results/diagnostics/deep_sea/explore10_draws_ent.json
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import benchmark  # noqa: E402  (scripts/benchmark.py: the variants and the env registration)

from sb3_po.registry import build_model  # noqa: E402

ENV_ID = "DeepSea-v0"


def band(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of the cells the treasure can be reached from (c >= r - 1; c <= r is all the start reaches)."""
    rows = np.concatenate([np.arange(size), np.arange(1, size)])
    return rows, np.concatenate([np.arange(size), np.arange(size - 1)])


def greedy_reaches(right: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """
    Whether the deterministic policy reaches the treasure from each cell: ``right[r, c]`` says whether it moves right
    at (r, c); it descends a row a step, the column clipped to the grid, as ``DeepSea`` moves.
    """
    size = right.shape[0]
    rows, columns = rows.copy(), columns.copy()
    for _ in range(size):
        running = rows < size
        move = np.where(right[np.minimum(rows, size - 1), columns], 1, -1)
        columns = np.where(running, np.clip(columns + move, 0, size - 1), columns)
        rows = np.where(running, rows + 1, rows)
    return columns == size - 1


def greedy_from(reaches: np.ndarray, rows: np.ndarray, size: int) -> int:
    """The shallowest row with a cell the deterministic policy reaches the treasure from (0: solved; ``size``: none)."""
    return int(rows[reaches].min()) if reaches.any() else size


class Probe(BaseCallback):
    """Every ``every`` rollouts: the archive's side and the policy's side of the chain (see the module's docstring)."""

    def __init__(self, every: int):
        super().__init__()
        self.every, self.rollouts, self.treasure, self.episodes = every, 0, 0, 0
        self.records: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes += 1
                self.treasure += int(info["episode"]["r"] > 0.5)
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        if self.rollouts % self.every == 0:
            self.records.append(self.measure())
            print(json.dumps({k: v for k, v in self.records[-1].items() if k != "p_right_band"}), flush=True)

    def measure(self) -> dict[str, Any]:
        sea = self.model.env.envs[0].unwrapped
        size = sea.size
        with th.no_grad():  # every cell's action probabilities, one forward over the one-hot observations
            probs = self.model.policy.get_distribution(th.eye(size * size)).distribution.probs.numpy()
        p_right = probs.reshape(size, size, 2)[np.arange(size)[:, None], np.arange(size)[None, :], sea.right_action]
        rows, columns = band(size)
        reaches = greedy_reaches(p_right > 0.5, rows, columns)
        archive = self.model.start_state_strategy.archive
        seen = archive.observations.max(axis=1) > 0  # the terminal row's observation is all zeros
        cells = archive.observations.argmax(axis=1)
        in_band = seen & (cells % size >= cells // size - 1)
        return dict(
            env_steps=int(self.num_timesteps),
            episodes=self.episodes,
            treasure=self.treasure,
            archive_cells=len(archive),
            archive_band_row=int((cells[in_band] // size).max()) if in_band.any() else -1,
            draws=int(archive.chosen.sum()),
            band_draws=int(archive.chosen[in_band].sum()),
            greedy_from=greedy_from(reaches, rows, size),
            band_right=int((p_right[rows, columns] > 0.5).sum()),
            p_right_band=[round(float(p), 3) for p in p_right[rows, columns]],
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", help="a GRPO variant of scripts/variants.yml with start_states='frontier'")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides (YAML values)")
    parser.add_argument("--steps", type=int, default=200_000, help="env steps (the benchmark's budget: 200k)")
    parser.add_argument("--every", type=int, default=10, help="rollouts between measurements")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    benchmark.register_env(ENV_ID)
    hyperparams = benchmark.load_hyperparams(f"grpo@{args.variant}", ENV_ID)
    for setting in args.set:
        key, _, value = setting.partition("=")
        hyperparams[key] = yaml.safe_load(value)  # as the variants file would write it
    if hyperparams.get("start_states") != "frontier":
        raise SystemExit(f"{args.variant} does not use start_states='frontier': the probe reads the frontier's archive")
    model = build_model("grpo", ENV_ID, args.seed, hyperparams)
    probe = Probe(args.every)
    start = time.perf_counter()
    model.learn(args.steps, callback=probe)
    probe.records.append(probe.measure())
    record = dict(
        env=ENV_ID,
        variant=args.variant,
        overrides=args.set,
        seed=args.seed,
        steps=args.steps,
        hyperparams={k: str(v) for k, v in hyperparams.items()},
        # the frontier's settings as used (the defaults of the time included)
        frontier=dict(
            backward=model.frontier_backward,
            scale_rewards=model.resolved_scale_rewards,
            ent_coef=model.ent_coef,
            n_epochs=model.n_epochs,
        ),
        seconds=time.perf_counter() - start,
        versions=benchmark.run_versions(),
        records=probe.records,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
