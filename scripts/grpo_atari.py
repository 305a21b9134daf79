"""
GRPO on an Atari game end to end (issue 32): ``CnnPolicy`` on ``make_restorable_atari_env`` (SB3's Atari wrappers,
4 frames stacked inside each env), groups restored from shared ALE states. Not a benchmark claim: one seed, one
budget, to show the restore-based groups working on pixels. Per rollout it records what the groups did (that every
member of a group started from the same stacked frames, the spread of the group's returns, the zero-spread
fraction) and SB3's ``rollout/ep_rew_mean`` (whole games, unclipped score: Monitor sits below the Atari wrappers);
at the end, 10 games with the deterministic policy. Writes one JSON::

    python scripts/grpo_atari.py --env BreakoutNoFrameskip-v4 --steps 200000 --out benchmark_results/atari/grpo_breakout.json
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import run_versions

from sb3_po import GRPO
from sb3_po.common.env_util import make_restorable_atari_env

# GRPO's settings for the run: the RL Zoo's PPO Atari entry where GRPO has the same knob (learning rate 2.5e-4,
# clip 0.1, entropy 0.01, 4 epochs, 8 envs), groups of 8 members (one per env), 4 groups per rollout
SETTINGS: dict[str, Any] = dict(
    group_size=8,
    n_groups=4,
    learning_rate=2.5e-4,
    clip_range=0.1,
    ent_coef=0.01,
    n_epochs=4,
    n_minibatches=8,
)


class GroupRecord(BaseCallback):
    """After each update: the groups' start observations, return spread, and SB3's episode statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        starts = self.model.rollout_buffer.start_observations()
        same = bool(all((group == group[0]).all() for group in starts))  # every member from the group's frames
        self.rows.append(dict(timesteps=int(self.model.num_timesteps), same_start_frames=same, groups=len(starts)))

    def _on_rollout_start(self) -> None:  # the previous update's train/* values are still in the logger here
        self._fill()

    def _on_training_end(self) -> None:  # the last update's
        self._fill()

    def _fill(self) -> None:
        if self.rows and "seconds" not in self.rows[-1]:
            values = self.logger.name_to_value
            row = self.rows[-1]
            for key in ("train/group_return_std", "train/zero_spread_groups", "train/group_return_mean"):
                if key in values:
                    row[key] = float(values[key])
            rewards = [info["r"] for info in self.model.ep_info_buffer]
            row["rollout/ep_rew_mean"] = float(np.mean(rewards)) if rewards else None
            row["seconds"] = time.perf_counter() - self.start

    def _on_step(self) -> bool:
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tensorboard", default=None, help="a TensorBoard log folder (optional)")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    env = make_restorable_atari_env(args.env, n_envs=SETTINGS["group_size"], seed=args.seed)
    model = GRPO("CnnPolicy", env, seed=args.seed, device="cpu", tensorboard_log=args.tensorboard, **SETTINGS)
    record = GroupRecord()
    start = time.perf_counter()
    model.learn(args.steps, callback=record)
    train_seconds = time.perf_counter() - start
    eval_env = make_restorable_atari_env(args.env, n_envs=1, seed=10_000 + args.seed)
    # Monitor below the Atari wrappers: each evaluation episode is a whole game, scored unclipped
    scores, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True, return_episode_rewards=True)
    result = dict(
        env=args.env,
        algo="grpo",
        seed=args.seed,
        steps=int(model.num_timesteps),
        settings={k: str(v) for k, v in SETTINGS.items()},
        frame_stack=4,
        rollouts=record.rows,
        final_eval_games=[float(s) for s in scores],
        final_eval_mean=float(np.mean(scores)),
        train_seconds=train_seconds,
        versions=run_versions(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    same = all(row["same_start_frames"] for row in record.rows)
    print(
        f"{args.env}: {model.num_timesteps} steps in {train_seconds:.0f} s, {len(record.rows)} updates, every group from "
        f"shared frames: {same}; deterministic policy over 10 games: {np.mean(scores):.1f}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
