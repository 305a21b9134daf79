"""
Sparse-reward tasks of the project's own (issue 32: a frontier that transfers is tuned on these and on
MountainCar-v0 only, never on a benchmark env it is then scored on). Each gives reward only at its goal, so a policy
that has not yet reached the goal gets no signal: GRPO's groups of equal returns carry no gradient until some member
gets there, which is what restarting from the frontier of visited states is for.

- ``SparseChain-v0``: a corridor of 40 cells; right moves one cell on, left one back, and with probability 0.1 the
  move slips the other way. Reward 1 at the last cell, 0 elsewhere; 120 steps. Uniformly random actions reach the end
  in 0.057% of episodes (``random_policy_success``, computed exactly; the tests check it).
- ``KeyDoor-v0``: an 11 x 11 room split by a wall with one gap at the far end; the key lies in the left half, the
  door in the right. Reward 1 for reaching the door holding the key; 0 elsewhere; 200 steps. Uniformly random
  actions reach it in about 1% of episodes (1.15% of 2,000; a 7 x 7 room was 13%, too easy).
- ``SparseAcrobot-v0``: Acrobot-v1 with reward 0 each step and 1 for swinging the tip above the line (its goal); 500
  steps. Restored by the classic-control backend (the reward wrapper has no state).
- ``DeepSea-v0``: bsuite's deep sea (Osband et al. 2019), 20 x 20: the agent descends one row a step and moves one
  column left or right, which action is "right" drawn per cell once for all; reward 1 at the bottom-right corner,
  -0.01 / 20 for each move right (the deceptive part: the cost is all a policy sees until it gets there).
  Observations one-hot over the 400 cells. Uniformly random actions find the corner in about 2e-5 of episodes.

Every task defines ``get_state`` / ``set_state`` (or is classic control) and passes ``RestorableEnv``'s restore check;
:func:`register_sparse_tasks` registers them with gymnasium.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SPARSE_TASKS = ("SparseChain-v0", "KeyDoor-v0", "SparseAcrobot-v0", "DeepSea-v0")


class SparseChain(gym.Env):
    """A corridor of ``length`` cells; reward 1 at the far end only (see the module's docstring)."""

    def __init__(self, length: int = 40, slip: float = 0.1):
        self.length, self.slip = length, slip
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)  # 0: left, 1: right
        self.position = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.position / (self.length - 1)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = 0
        return self._obs(), {}

    def step(self, action):
        move = 1 if int(action) == 1 else -1
        if self.np_random.random() < self.slip:
            move = -move
        self.position = int(np.clip(self.position + move, 0, self.length - 1))
        terminated = self.position == self.length - 1
        return self._obs(), float(terminated), terminated, False, {}

    def get_state(self) -> int:
        return self.position

    def set_state(self, state: int) -> None:
        self.position = int(state)


class KeyDoor(gym.Env):
    """An 11 x 11 room, a wall down its middle with a gap at the far end, a key on the left and the door on the right."""

    SIZE = 11
    WALL_X, GAP_Y = 5, 9
    START, KEY, DOOR = (1, 1), (1, 9), (9, 1)
    MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))  # up, down, left, right

    def __init__(self):
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self.agent, self.has_key = self.START, False

    def _obs(self) -> np.ndarray:
        x, y = self.agent
        return np.array([x / (self.SIZE - 1), y / (self.SIZE - 1), float(self.has_key)], dtype=np.float32)

    def _free(self, x: int, y: int) -> bool:
        inside = 0 <= x < self.SIZE and 0 <= y < self.SIZE
        return inside and (x != self.WALL_X or y == self.GAP_Y)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.agent, self.has_key = self.START, False
        return self._obs(), {}

    def step(self, action):
        dx, dy = self.MOVES[int(action)]
        x, y = self.agent[0] + dx, self.agent[1] + dy
        if self._free(x, y):
            self.agent = (x, y)
        if self.agent == self.KEY:
            self.has_key = True
        terminated = self.has_key and self.agent == self.DOOR
        return self._obs(), float(terminated), terminated, False, {}

    def get_state(self) -> tuple[tuple[int, int], bool]:
        return self.agent, self.has_key

    def set_state(self, state: tuple[tuple[int, int], bool]) -> None:
        self.agent, self.has_key = tuple(state[0]), bool(state[1])  # type: ignore[assignment]


class DeepSea(gym.Env):
    """bsuite's deep sea, ``size`` x ``size`` (see the module's docstring)."""

    def __init__(self, size: int = 20, mapping_seed: int = 42):
        self.size = size
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size * size,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        # which action moves right, per cell: fixed for the task (bsuite's randomised action mapping)
        self.right_action = np.random.default_rng(mapping_seed).integers(0, 2, size=(size, size))
        self.row, self.column = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.size * self.size, dtype=np.float32)
        if self.row < self.size:
            obs[self.row * self.size + self.column] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.row, self.column = 0, 0
        return self._obs(), {}

    def step(self, action):
        right = int(action) == self.right_action[self.row, self.column]
        reward = -0.01 / self.size if right else 0.0
        self.column = int(np.clip(self.column + (1 if right else -1), 0, self.size - 1))
        self.row += 1
        terminated = self.row == self.size
        if terminated and self.column == self.size - 1:
            reward += 1.0
        return self._obs(), reward, terminated, False, {}

    def get_state(self) -> tuple[int, int]:
        return self.row, self.column

    def set_state(self, state: tuple[int, int]) -> None:
        self.row, self.column = int(state[0]), int(state[1])


class SparseReward(gym.RewardWrapper):
    """Reward 1 on the step that reaches the goal (terminates), 0 on every other step."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(terminated), terminated, truncated, info

    def reward(self, reward):  # step() above computes it from the termination
        return reward


def make_sparse_acrobot() -> gym.Env:
    from gymnasium.envs.classic_control import AcrobotEnv

    return SparseReward(AcrobotEnv())


def random_policy_success(length: int = 40, horizon: int = 120) -> float:
    """
    The probability that uniformly random actions reach SparseChain's end within ``horizon`` steps: with a random
    action the slip makes no difference, the walk is simple and symmetric (reflected at 0, absorbed at the end).
    """
    p = np.zeros(length)
    p[0], reached = 1.0, 0.0
    for _ in range(horizon):
        moved = np.zeros(length)
        moved[1:] += 0.5 * p[:-1]  # right
        np.add.at(moved, np.maximum(np.arange(length) - 1, 0), 0.5 * p)  # left, reflected at 0 (cells 0, 1 -> 0)
        reached += moved[-1] - 0.5 * p[-1]  # p[-1] is 0: the end absorbs
        moved[-1] = 0.0
        p = moved
    return float(reached)


def register_sparse_tasks() -> None:
    """Register the tasks with gymnasium (idempotent)."""
    if "SparseChain-v0" in gym.registry:
        return
    gym.register("SparseChain-v0", entry_point=SparseChain, max_episode_steps=120)
    gym.register("KeyDoor-v0", entry_point=KeyDoor, max_episode_steps=200)
    gym.register("SparseAcrobot-v0", entry_point=make_sparse_acrobot, max_episode_steps=500)
    gym.register("DeepSea-v0", entry_point=DeepSea, max_episode_steps=20)
