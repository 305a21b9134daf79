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

# name -> (env factory, GRPO keyword arguments over the defaults of its file); policy "MlpPolicy" unless named
Configs = dict[str, tuple[Any, dict[str, Any]]]

# the configurations over OLD_DEFAULTS
CONFIGS: Configs = {
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


def run(name: str, configs: Configs = CONFIGS, defaults: dict[str, Any] = OLD_DEFAULTS) -> tuple[np.ndarray, np.ndarray, int]:
    """
    The pinned parameters of ``configs[name]`` (its keyword arguments over ``defaults``) after the first update and
    after ``N_ROLLOUTS`` updates, and the env steps taken.
    """
    th.set_num_threads(1)
    np.random.seed(0)  # some envs draw from NumPy's global RNG when built (SimpleMultiObsEnv's images)
    make, kwargs = configs[name]
    kwargs = {**defaults, **kwargs}
    model = GRPO(kwargs.pop("policy", "MlpPolicy"), make(), seed=0, device="cpu", **kwargs)
    stop = _StopAfterRollouts(N_ROLLOUTS)
    model.learn(10**9, callback=stop)
    assert stop.first is not None
    return stop.first, _pinned_parameters(model), model.num_timesteps


# Another CPU's float kernels (or another thread count) sum in another order: about 1e-7 per parameter after the
# first update (measured with 2 threads against 1: at most 7e-7), which later updates can amplify (gSDE, Dict
# observations: up to 1e-2 after three). Any change to the rollout or the objective moves the first update by far
# more than 1e-5.
FIRST_UPDATE_ATOL = 1e-5


def assert_pinned(path: Path, name: str, configs: Configs, defaults: dict[str, Any]) -> None:
    """The run ``name`` takes the pinned steps and reaches the pinned parameters of the file ``path``."""
    pinned = np.load(path)
    first, params, steps = run(name, configs, defaults)
    assert steps == int(pinned[f"{name}/steps"])
    np.testing.assert_allclose(first, pinned[f"{name}/first"], rtol=0, atol=FIRST_UPDATE_ATOL)
    if np.array_equal(first, pinned[f"{name}/first"]):
        # the float kernels of the machine that wrote the file: every update must be bit-identical
        np.testing.assert_array_equal(params, pinned[name])


def write(path: Path, configs: Configs, defaults: dict[str, Any]) -> None:
    """Runs every configuration and stores its pinned parameters and steps in ``path`` (only for an intended change)."""
    arrays = {}
    for name in configs:
        first, params, steps = run(name, configs, defaults)
        arrays[f"{name}/first"], arrays[name], arrays[f"{name}/steps"] = first, params, np.array(steps)
        print(name, params.shape, steps)
    np.savez_compressed(path, **arrays)


if __name__ == "__main__":
    write(PINNED, CONFIGS, OLD_DEFAULTS)
