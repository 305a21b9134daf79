"""
The VecEnv side of the restore protocol of :mod:`sb3_po.common.env_state`: make a VecEnv whose envs can be
restored, put one env slot (or several at once) into a saved state, and hand back the observation the way
the VecEnv's wrappers would show it to the policy.

Every env of the VecEnv is a :class:`~sb3_po.common.env_state.RestorableEnv` (outermost, above ``Monitor``);
the calls go through ``VecEnv.env_method``, so ``DummyVecEnv`` and ``SubprocVecEnv`` work alike. VecEnv
wrappers are seen through when they keep no state of their own (``VecNormalize`` with frozen or running
statistics, ``VecTransposeImage``, ``VecCheckNan``, ``VecVideoRecorder``); any other is refused.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import is_wrapped, make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecNormalize,
    VecTransposeImage,
    VecVideoRecorder,
)

from sb3_po.common.checks import check_choice, check_int
from sb3_po.common.env_state import MODES, EnvStateError, RestorableEnv

# VecEnv wrappers that either leave observations alone or transform them statelessly
TRANSPARENT_VEC_WRAPPERS = (VecNormalize, VecTransposeImage, VecCheckNan, VecVideoRecorder)


def restorable_vec_env(
    env: GymEnv | str | None,
    n_envs: int | None = None,
    state_mode: str = "auto",
    seed: int | None = None,
    default_n_envs: int = 1,
    refuse_unused: bool = False,
) -> Any:
    """
    A VecEnv whose envs are all restorable, built from what a user passes to an algorithm:

    - an env id: ``make_vec_env(env_id, n_envs)`` (``default_n_envs`` when None) with each env wrapped in
      ``RestorableEnv(state_mode=state_mode)``;
    - a ``gym.Env``: ``DummyVecEnv`` of it, wrapped in ``Monitor`` and ``RestorableEnv`` where it is not;
    - a ``DummyVecEnv`` (possibly under transparent VecEnv wrappers) whose envs are not all restorable: each env
      is wrapped in place (the envs live in this process); an env that implements ``get_state``/``set_state``
      itself is restored through them;
    - any other VecEnv is returned as it is (:func:`check_restorable` says what is wrong with it, if anything).

    :param refuse_unused: Refuse ``n_envs`` where ``env`` is not an env id, and a ``state_mode`` other than
        ``"auto"`` where no env is wrapped and the wrapped ones use another (a constructor's arguments: no silent
        no-ops)
    """
    check_choice("GRPO", "state_mode", state_mode, MODES)
    if n_envs is not None:
        check_int("GRPO", "n_envs", n_envs, 1)
    if refuse_unused and n_envs is not None and not isinstance(env, str):
        raise ValueError(
            f"GRPO: n_envs={n_envs!r} is used by an env given by id; this env would ignore it (a VecEnv has its own "
            "number of envs, a gym.Env is one)"
        )
    if refuse_unused and state_mode != "auto" and not needs_wrapping(env) and state_mode not in wrapped_state_modes(env):
        raise ValueError(
            f"GRPO: state_mode={state_mode!r} is used by the envs GRPO wraps in RestorableEnv (an env id, a gym.Env, a "
            "DummyVecEnv's unwrapped envs); this env's envs are wrapped already with another state_mode"
        )
    n_envs = default_n_envs if n_envs is None else n_envs
    wrapper_kwargs = dict(state_mode=state_mode, seed=seed)
    if isinstance(env, str):
        return make_vec_env(env, n_envs=n_envs, seed=seed, wrapper_class=RestorableEnv, wrapper_kwargs=wrapper_kwargs)
    if isinstance(env, gym.Env):
        if not is_wrapped(env, RestorableEnv):
            env = RestorableEnv(env if is_wrapped(env, Monitor) else Monitor(env), **wrapper_kwargs)  # type: ignore[arg-type]
        return DummyVecEnv([lambda: env])
    if isinstance(env, VecEnv):
        base = env.unwrapped
        if isinstance(base, DummyVecEnv):
            for i, inner in enumerate(base.envs):
                if not is_wrapped(inner, RestorableEnv):
                    # the same seeds as make_vec_env gives its envs, so that members of a group differ by env
                    base.envs[i] = RestorableEnv(
                        inner if is_wrapped(inner, Monitor) else Monitor(inner),
                        state_mode=state_mode,
                        seed=None if seed is None else seed + i,
                    )
    return env


def needs_wrapping(env: GymEnv | str | None) -> bool:
    """Whether :func:`restorable_vec_env` wraps envs of ``env`` in ``RestorableEnv`` (and so uses its ``state_mode``)."""
    if isinstance(env, str):
        return True
    if isinstance(env, gym.Env):
        return not is_wrapped(env, RestorableEnv)
    if isinstance(env, VecEnv) and isinstance(env.unwrapped, DummyVecEnv):
        return not all(is_wrapped(inner, RestorableEnv) for inner in env.unwrapped.envs)
    return False


def wrapped_state_modes(env: GymEnv | str | None) -> set[str]:
    """The ``state_mode`` of the ``RestorableEnv`` wrappers of ``env``'s envs (empty where they are not all wrapped)."""
    if isinstance(env, gym.Env):
        return {env.get_wrapper_attr("state_mode")} if is_wrapped(env, RestorableEnv) else set()
    if isinstance(env, VecEnv) and all(env.env_is_wrapped(RestorableEnv)):
        return set(env.get_attr("state_mode"))
    return set()


def check_restorable(env: VecEnv, mid_episode: bool = False) -> None:
    """
    Raise :class:`EnvStateError` naming the way out when ``env``'s states cannot be restored (or, with
    ``mid_episode``, when states in the middle of an episode cannot).
    """
    if not all(env.env_is_wrapped(RestorableEnv)):
        raise EnvStateError(
            f"The envs of this {type(env.unwrapped).__name__} cannot be restored: wrap each env in "
            "sb3_po.common.env_state.RestorableEnv, e.g. make_vec_env(env_id, n_envs, wrapper_class=RestorableEnv, "
            "vec_env_cls=SubprocVecEnv), or pass the env id (or a DummyVecEnv, whose envs are wrapped for you)."
        )
    # the check failed in a worker process (SubprocVecEnv): its message, once
    errors = [error for error in env.get_attr("restore_error") if error is not None]
    if errors:
        raise EnvStateError(errors[0])
    layer: VecEnv = env
    while isinstance(layer, VecEnvWrapper):
        if not isinstance(layer, TRANSPARENT_VEC_WRAPPERS):
            raise EnvStateError(
                f"Cannot restore states through {type(layer).__name__}: a VecEnv wrapper with its own state "
                "would not be restored with the env. Use the equivalent gymnasium wrapper inside each env instead "
                "(for VecFrameStack: gymnasium's FrameStackObservation; for Atari, "
                "sb3_po.common.env_util.make_restorable_atari_env(env_id, n_envs, frame_stack=4))."
            )
        layer = layer.venv
    if mid_episode and not all(env.get_attr("can_restore_mid_episode")):
        raise EnvStateError(
            "Restoring states visited mid-episode (GRPO's start_states='visited'/'frontier', branch_states > 0) needs "
            "envs whose state can be saved mid-episode; in seed mode only reset states can be shared. Use "
            "start_states='reset' and branch_states=0, or state_mode='auto'/'state'/'copy'."
        )


class VecEnvStates:
    """
    Save, draw and restore the states of a VecEnv's env slots.

    :param env: A VecEnv that passes :func:`check_restorable`
    """

    def __init__(self, env: VecEnv):
        self.env = env
        self._wrappers: list[VecEnvWrapper] = []  # innermost first
        layer: VecEnv = env
        while isinstance(layer, VecEnvWrapper):
            self._wrappers.insert(0, layer)
            layer = layer.venv

    def observations(self, obs: Any) -> Any:
        """What the VecEnv's wrappers make of a batch of raw observations from its envs."""
        for wrapper in self._wrappers:
            if isinstance(wrapper, VecNormalize):
                obs = wrapper.normalize_obs(obs)
            elif isinstance(wrapper, VecTransposeImage):
                obs = wrapper.transpose_observations(obs)
        return obs

    def new_start(self, slot: int) -> tuple[Any, Any]:
        """Reset slot ``slot`` into a new start state: ``(state, observation as the policy sees it)``."""
        state, obs = self.env.env_method("new_start_state", indices=[slot])[0]
        return state, self.observations(_batch([obs]))

    def restore(self, slots: list[int], state: Any, fresh_time_limit: bool = False, rng_seed: int | None = None) -> Any:
        """
        Put every slot of ``slots`` into ``state``; their observations as the policy sees them, one row per slot.

        :param fresh_time_limit: Start new episodes from the state (see ``RestorableEnv.set_state``)
        :param rng_seed: Seed every slot's env random number generator alike (common random numbers)
        """
        options = {k: v for k, v in dict(fresh_time_limit=fresh_time_limit, rng_seed=rng_seed).items() if v}
        return self.observations(_batch(self.env.env_method("set_state", state, indices=slots, **options)))

    def get_state(self, slot: int) -> Any:
        """The current state of slot ``slot``."""
        return self.env.env_method("get_state", indices=[slot])[0]


def _batch(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {k: np.stack([np.asarray(o[k]) for o in observations]) for k in observations[0]}
    return np.stack([np.asarray(o) for o in observations])


def set_rows(batch: Any, slots: Any, rows: Any) -> None:
    """``batch[slots] = rows`` for an observation batch (array or dict of arrays)."""
    if isinstance(batch, dict):
        for key in batch:
            batch[key][slots] = rows[key]
    else:
        batch[slots] = rows
