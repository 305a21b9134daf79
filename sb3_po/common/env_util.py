"""
Env builders for restorable pixel envs: SB3's ``make_atari_env`` with the frame stack inside each env, so that GRPO
restores it with the env (a ``VecFrameStack`` around the VecEnv has state GRPO cannot restore, and GRPO refuses it).
"""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from sb3_po.common.env_state import RestorableEnv
from sb3_po.common.optional import require


class StackedChannels(gym.ObservationWrapper):
    """
    A frame stack's ``(stack, height, width, channels)`` observations as ``(height, width, stack * channels)`` images,
    oldest frame first: the layout of SB3's ``VecFrameStack`` (channels last), which ``CnnPolicy`` takes. No state.

    :param env: A ``FrameStackObservation`` of image frames
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 4:
            raise ValueError(f"StackedChannels expects stacked images (stack, height, width, channels), got {space}")
        self.observation_space = spaces.Box(
            low=self.observation(space.low), high=self.observation(space.high), dtype=space.dtype
        )

    def observation(self, observation: Any) -> np.ndarray:
        stack, height, width, channels = observation.shape
        return np.asarray(observation).transpose(1, 2, 0, 3).reshape(height, width, stack * channels)


def make_restorable_atari_env(
    env_id: str | Callable[..., gym.Env],
    n_envs: int = 1,
    seed: int | None = None,
    start_index: int = 0,
    monitor_dir: str | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    vec_env_cls: type[DummyVecEnv] | type[SubprocVecEnv] | None = None,
    vec_env_kwargs: dict[str, Any] | None = None,
    monitor_kwargs: dict[str, Any] | None = None,
    frame_stack: int = 4,
    state_mode: str = "auto",
) -> VecEnv:
    """
    SB3's ``make_atari_env`` (``Monitor``, then SB3's ``AtariWrapper``: no-op starts, frame skip with max-pooling,
    a life loss as episode end, fire on reset, 84 x 84 grayscale, clipped rewards) with ``frame_stack`` frames
    stacked inside each env and the env made restorable (:class:`~sb3_po.common.env_state.RestorableEnv`, the ALE
    backend): the VecEnv GRPO's ``CnnPolicy`` trains on, in place of ``VecFrameStack(make_atari_env(...), 4)``.
    Observations are ``(84, 84, frame_stack)`` uint8 images, as ``VecFrameStack`` gives them (a new episode's stack is
    filled with its first frame rather than zeros). ``Monitor`` sits below the Atari wrappers, so the episode returns
    it reports are whole games with the unclipped score, as with SB3's ``make_atari_env``.

    The other parameters are ``make_atari_env``'s.

    :param env_id: An ALE env id (``"BreakoutNoFrameskip-v4"``: frame skipping is the wrapper's) or a callable
    :param frame_stack: Frames per observation (1: no stacking)
    :param state_mode: ``RestorableEnv``'s ``state_mode``
    """
    ale_py = require("ale_py", feature="Atari envs", extra="pixels")
    gym.register_envs(ale_py)
    atari_wrappers = require("stable_baselines3.common.atari_wrappers", feature="Atari envs", extra="pixels")
    if frame_stack < 1:
        raise ValueError(f"make_restorable_atari_env: frame_stack must be >= 1, got {frame_stack!r}")

    def wrap(env: gym.Env) -> gym.Env:
        env = atari_wrappers.AtariWrapper(env, **(wrapper_kwargs or {}))
        if frame_stack > 1:
            env = StackedChannels(FrameStackObservation(env, frame_stack))
        return RestorableEnv(env, state_mode=state_mode, seed=seed)

    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        start_index=start_index,
        monitor_dir=monitor_dir,
        wrapper_class=wrap,
        env_kwargs=env_kwargs,
        vec_env_cls=vec_env_cls,
        vec_env_kwargs=vec_env_kwargs,
        monitor_kwargs=monitor_kwargs,
    )
