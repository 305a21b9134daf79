"""make_restorable_atari_env (sb3_po/common/env_util.py): SB3's Atari stack with the frame stack inside each env, restored."""

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_po import GRPO
from sb3_po.common.env_state import EnvStateError
from sb3_po.common.env_util import StackedChannels, make_restorable_atari_env
from sb3_po.common.optional import MissingExtraError


class Frames(gym.Env):
    """Frame t is a 2 x 3 x 1 image filled with t."""

    observation_space = spaces.Box(0, 255, (2, 3, 1), dtype=np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.t = 0
        return np.full((2, 3, 1), self.t, dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((2, 3, 1), self.t, dtype=np.uint8), 0.0, False, False, {}


def test_stacked_channels_are_vec_frame_stacks_layout():
    env = StackedChannels(FrameStackObservation(Frames(), 3))
    assert env.observation_space.shape == (2, 3, 3) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[0, 0], [0, 0, 0])  # a new episode's stack: its first frame
    for _ in range(4):
        obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs[1, 2], [2, 3, 4])  # oldest frame first, channels last
    with pytest.raises(ValueError, match="stacked images"):
        StackedChannels(Frames())


def test_atari_env_is_restored_with_its_frame_stack_and_atari_wrappers():
    env = make_restorable_atari_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0)
    assert env.observation_space == spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert env.get_attr("backend") == ["ale", "ale"]
    # as in SB3's make_atari_env, Monitor sits below the Atari wrappers: it reports whole games, unclipped
    layer, below = env.envs[0], []
    while isinstance(layer, gym.Wrapper):
        below.append(type(layer))
        layer = layer.env
    assert below.index(AtariWrapper) < below.index(Monitor)
    env.reset()
    rng = np.random.default_rng(0)
    for action in rng.integers(0, 4, size=30):
        env.step(np.array([action, action]))
    state = env.env_method("get_state", indices=[0])[0]
    actions = rng.integers(0, 4, size=40)
    first = [env.step(np.array([a, a]))[0][0] for a in actions]
    np.testing.assert_array_equal(env.env_method("set_state", state, indices=[0])[0], state["obs"])
    second = [env.step(np.array([a, a]))[0][0] for a in actions]
    for one, two in zip(first, second, strict=True):  # the stack of four frames comes back with the emulator
        np.testing.assert_array_equal(one, two)
    assert len({first[-1][..., k].tobytes() for k in range(4)}) > 1  # the frames differ: a real stack was compared


def test_grpo_trains_on_it_and_refuses_vec_frame_stack_naming_it():
    env = make_restorable_atari_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0)
    model = GRPO("CnnPolicy", env, group_size=2, n_groups=1, n_epochs=1, seed=0, device="cpu")
    model.learn(300)
    assert model.num_timesteps >= 300
    stacked = VecFrameStack(make_restorable_atari_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0, frame_stack=1), 4)
    with pytest.raises(EnvStateError, match="make_restorable_atari_env"):
        GRPO("CnnPolicy", stacked, group_size=2, device="cpu")


def test_without_the_pixels_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # an import of ale_py now fails as if it were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'sb3-po\[pixels\]'"):
        make_restorable_atari_env("BreakoutNoFrameskip-v4")


def test_register_minatar_without_the_pixels_extra_names_it(monkeypatch):
    from sb3_po.common.env_state import register_minatar

    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    with pytest.raises(MissingExtraError, match=r"MinAtar's games needs minatar.*pip install 'sb3-po\[pixels\]'"):
        register_minatar()
