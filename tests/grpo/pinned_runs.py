"""
GRPO runs whose parameters after a few updates are pinned (``tests/data/grpo_pinned.npz``), so that a restructure
of GRPO's rollout and buffer keeps every existing option bit for bit. The file was written by the code before the
rollout collector (``python tests/grpo/pinned_runs.py`` regenerates it; only do that for an intended change).
"""

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiDiscrete, SimpleMultiObsEnv
from stable_baselines3.common.vec_env import VecNormalize

from sb3_po import GRPO
from sb3_po.common.env_state import RestorableEnv

PINNED = Path(__file__).resolve().parents[1] / "data" / "grpo_pinned.npz"
N_ROLLOUTS = 3
N_PINNED = 4096


def _env(env_id: Any, n_envs: int, mode: str = "auto", seed: int = 0):
    return make_vec_env(
        env_id, n_envs=n_envs, seed=seed, wrapper_class=RestorableEnv, wrapper_kwargs=dict(state_mode=mode, seed=seed)
    )


# The defaults of GRPO when the file was written; every configuration below starts from them
OLD_DEFAULTS: dict[str, Any] = dict(supervision="outcome", gamma=1.0, n_minibatches=4)

# name -> (env factory, GRPO keyword arguments over OLD_DEFAULTS); policy "MlpPolicy" unless the kwargs name one
CONFIGS: dict[str, tuple[Any, dict[str, Any]]] = {
    "outcome_one_env": (lambda: _env("CartPole-v1", 1), dict(group_size=4, n_groups=2)),
    "process_three_envs_kl": (
        lambda: _env("CartPole-v1", 3),
        dict(
            group_size=4,
            n_groups=2,
            supervision="process",
            loss_type="episode",
            scale_rewards="batch",
            beta=0.04,
            ref_update_interval=2,
            gamma=0.99,
        ),
    ),
    "visited_gsde_dr_grpo": (
        lambda: _env("Pendulum-v1", 2),
        dict(
            group_size=3,
            n_groups=2,
            start_states="visited",
            visited_capture_prob=0.2,
            visited_fraction=0.7,
            use_sde=True,
            sde_sample_freq=4,
            loss_type="dr_grpo",
            advantage="mean",
            kl_estimator="exact",
            beta=0.1,
        ),
    ),
    "seed_mode_softmax_normalized": (
        lambda: VecNormalize(_env("CartPole-v1", 2, mode="seed"), norm_reward=False),
        dict(group_size=4, n_groups=3, advantage="softmax", softmax_temperature=0.5, clip_range_upper=0.28),
    ),
    "dict_obs": (
        lambda: _env(SimpleMultiObsEnv, 2),
        dict(policy="MultiInputPolicy", group_size=3, n_groups=2, n_minibatches=2),
    ),
    "multidiscrete_target_kl": (
        lambda: _env(functools.partial(IdentityEnvMultiDiscrete, 4, ep_length=10), 2),
        dict(group_size=4, n_groups=2, target_kl=0.001, ent_coef=0.01),
    ),
}


def _pinned_parameters(model: GRPO) -> np.ndarray:
    """The last ``N_PINNED`` flat parameters (the action head, which every step of the update moves)."""
    return th.cat([p.detach().flatten() for p in model.policy.parameters()]).numpy()[-N_PINNED:].copy()


class _StopAfterRollouts(BaseCallback):
    """
    Stops ``learn`` at the first step of rollout ``n + 1``: the parameters are those after ``n`` updates. Keeps
    the parameters after the first update in ``first``.
    """

    def __init__(self, n: int):
        super().__init__()
        self.n, self.rollouts = n, 0
        self.first: np.ndarray | None = None

    def _on_rollout_start(self) -> None:
        self.rollouts += 1
        if self.rollouts == 2:
            self.first = _pinned_parameters(self.model)

    def _on_step(self) -> bool:
        return self.rollouts <= self.n


def run(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The pinned parameters after the first update and after ``N_ROLLOUTS`` updates, and the env steps taken."""
    th.set_num_threads(1)
    np.random.seed(0)  # some envs draw from NumPy's global RNG when built (SimpleMultiObsEnv's images)
    make, kwargs = CONFIGS[name]
    kwargs = {**OLD_DEFAULTS, **kwargs}
    model = GRPO(kwargs.pop("policy", "MlpPolicy"), make(), seed=0, device="cpu", **kwargs)
    stop = _StopAfterRollouts(N_ROLLOUTS)
    model.learn(10**9, callback=stop)
    assert stop.first is not None
    return stop.first, _pinned_parameters(model), model.num_timesteps


if __name__ == "__main__":
    arrays = {}
    for name in CONFIGS:
        first, params, steps = run(name)
        arrays[f"{name}/first"] = first
        arrays[name] = params
        arrays[f"{name}/steps"] = np.array(steps)
        print(name, params.shape, steps)
    np.savez_compressed(PINNED, **arrays)
