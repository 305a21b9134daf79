"""
Where GRPO's frontier breaks on the deep sea (issue 32: ``tests/envs.py``'s ``DeepSea-v0``, 20 x 20).

The only way to the treasure is the diagonal: "right" on each of the 20 rows. Trains GRPO with a variant of
``scripts/variants.yml`` (optionally with ``--set key=value`` overrides on top) and, every ``--every`` rollouts,
records the two halves of the chain the frontier has to build:

- the archive: its cells, the deepest row of the diagonal it holds (a state from which "right" to the end reaches
  the treasure), and the draws that went to diagonal cells;
- the policy: the probability of "right" on each diagonal cell, the deepest row from which the deterministic policy
  goes right to the end (``chain_from``: 0 = solved), and the members that reached the treasure so far.

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


def chain_from(p_right: np.ndarray) -> int:
    """The deepest row from which the deterministic policy moves right on every diagonal cell to the end (0: solved)."""
    rows = len(p_right)
    for row in range(rows - 1, -1, -1):
        if p_right[row] <= 0.5:
            return row + 1
    return 0


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
            print(json.dumps({k: v for k, v in self.records[-1].items() if k != "p_right"}), flush=True)

    def measure(self) -> dict[str, Any]:
        sea = self.model.env.envs[0].unwrapped
        size = sea.size
        diagonal = np.arange(size) * size + np.arange(size)  # the one-hot index of cell (row, row)
        with th.no_grad():
            observations = th.as_tensor(np.eye(size * size, dtype=np.float32)[diagonal])
            probs = self.model.policy.get_distribution(observations).distribution.probs.numpy()
        p_right = probs[np.arange(size), sea.right_action[np.arange(size), np.arange(size)]]
        archive = self.model.start_state_strategy.archive
        cells = archive.observations.argmax(axis=1)
        on_diagonal = (cells // size == cells % size) & (archive.observations.max(axis=1) > 0)
        return dict(
            env_steps=int(self.num_timesteps),
            episodes=self.episodes,
            treasure=self.treasure,
            archive_cells=len(archive),
            archive_diagonal_row=int((cells[on_diagonal] // size).max()) if on_diagonal.any() else -1,
            draws=int(archive.chosen.sum()),
            diagonal_draws=int(archive.chosen[on_diagonal].sum()),
            chain_from=chain_from(p_right),
            p_right=[round(float(p), 3) for p in p_right],
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
        seconds=time.perf_counter() - start,
        versions=benchmark.run_versions(),
        records=probe.records,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
