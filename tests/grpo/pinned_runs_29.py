"""
GRPO runs pinned after issue 29's fixes (``tests/data/grpo_pinned_29.npz``): the per-step defaults, step_rloo as
fixed, dynamic sampling, frontier and visited start states and branch scoring with the model's settings, so that the
rebuild into components (start-state strategies, branching, the collector's rollout record, the buffer by
composition) keeps them bit for bit. The file was written by the code of commit 0d9893a (the fixes, before the
rebuild): ``python tests/grpo/pinned_runs_29.py`` regenerates it; only do that for an intended change.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from sb3_po import GRPO
from tests.grpo.pinned_runs import N_ROLLOUTS, _env, _pinned_parameters, _StopAfterRollouts

PINNED_29 = Path(__file__).resolve().parents[1] / "data" / "grpo_pinned_29.npz"

# name -> (env factory, GRPO keyword arguments over GRPO's defaults)
CONFIGS_29: dict[str, tuple[Any, dict[str, Any]]] = {
    "step_mean_defaults": (lambda: _env("CartPole-v1", 4), dict(group_size=4, n_groups=2)),
    "step_rloo_visited": (
        lambda: _env("CartPole-v1", 3),
        dict(group_size=4, n_groups=2, supervision="step_rloo", start_states="visited", visited_capture_prob=0.2),
    ),
    "step_rloo_batch": (
        lambda: _env("Acrobot-v1", 4),
        dict(group_size=4, n_groups=3, supervision="step_rloo", scale_rewards="batch"),
    ),
    "dynamic_sampling": (lambda: _env("MountainCar-v0", 4), dict(group_size=4, n_groups=2, resample_groups=3)),
    "frontier_fresh": (
        lambda: _env("MountainCar-v0", 4),
        dict(group_size=4, n_groups=2, start_states="frontier", fresh_time_limit=True, ent_coef=0.01),
    ),
    "branch_crn": (
        lambda: _env("Pendulum-v1", 2),
        dict(
            group_size=3,
            n_groups=2,
            gamma=0.9,
            advantage="mean",
            scale_rewards="none",
            branch_states=3,
            branch_count=2,
            branch_horizon=5,
            branch_credit=2,
            common_random_numbers=True,
        ),
    ),
}


def run(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The pinned parameters after the first update and after ``N_ROLLOUTS`` updates, and the env steps taken."""
    th.set_num_threads(1)
    np.random.seed(0)
    make, kwargs = CONFIGS_29[name]
    model = GRPO("MlpPolicy", make(), seed=0, device="cpu", **kwargs)
    stop = _StopAfterRollouts(N_ROLLOUTS)
    model.learn(10**9, callback=stop)
    assert stop.first is not None
    return stop.first, _pinned_parameters(model), model.num_timesteps


if __name__ == "__main__":
    arrays = {}
    for name in CONFIGS_29:
        first, params, steps = run(name)
        arrays[f"{name}/first"], arrays[name], arrays[f"{name}/steps"] = first, params, np.array(steps)
        print(name, params.shape, steps)
    np.savez_compressed(PINNED_29, **arrays)
