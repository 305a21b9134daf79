"""The project's own sparse-reward tasks (tests/envs.py): restorable, solvable, and sparse."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor

from sb3_po.common.env_state import RestorableEnv
from tests.envs import SPARSE_TASKS, DeepSea, KeyDoor, random_policy_success, register_sparse_tasks


def oracle_actions(env_id: str, env: gym.Env, obs: np.ndarray) -> int:
    """A policy that solves the task: right along the chain; key, gap, door in the room; pumping the acrobot; right
    all the way down the deep sea."""
    if env_id == "SparseChain-v0":
        return 1
    if env_id == "DeepSea-v0":
        sea: DeepSea = env.unwrapped  # type: ignore[assignment]
        return int(sea.right_action[sea.row, sea.column])
    if env_id == "KeyDoor-v0":  # the first move of a shortest path (breadth-first) to the key, then to the door
        room: KeyDoor = env.unwrapped  # type: ignore[assignment]
        target = room.DOOR if room.has_key else room.KEY
        first_move: dict[tuple[int, int], int] = {room.agent: -1}
        frontier = [room.agent]
        while target not in first_move:
            cell = frontier.pop(0)
            for action, (dx, dy) in enumerate(room.MOVES):
                nxt = (cell[0] + dx, cell[1] + dy)
                if room._free(*nxt) and nxt not in first_move:
                    first_move[nxt] = action if cell == room.agent else first_move[cell]
                    frontier.append(nxt)
        return first_move[target]
    # Acrobot: torque in the direction of the second link's angular velocity (energy pumping)
    return 2 if obs[5] > 0 else 0


@pytest.mark.parametrize("env_id", SPARSE_TASKS)
def test_sparse_tasks_restore_and_are_solvable(env_id):
    register_sparse_tasks()
    env = RestorableEnv(Monitor(gym.make(env_id)), seed=0)  # the restore check passes
    assert env.backend == ("classic_control" if env_id == "SparseAcrobot-v0" else "protocol")
    solved = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        rewards = []
        for _ in range(env.spec.max_episode_steps):
            obs, reward, terminated, truncated, _ = env.step(oracle_actions(env_id, env, obs))
            rewards.append(reward)
            if terminated or truncated:
                break
        solved += terminated
        # sparse: 0 on every step but the last, 1 there when the goal is reached
        if env_id == "DeepSea-v0":  # the cost of each move right before, the treasure at the end
            assert set(rewards[:-1]) == {-0.01 / 20} and rewards[-1] == pytest.approx(1 - 0.01 / 20)
        else:
            assert set(rewards[:-1]) <= {0.0} and rewards[-1] == float(terminated)
    assert solved == 3


@pytest.mark.parametrize("env_id", SPARSE_TASKS)
def test_random_actions_rarely_reach_the_goal(env_id):
    register_sparse_tasks()
    env = gym.make(env_id)
    env.action_space.seed(0)
    reached = 0
    for seed in range(30):
        env.reset(seed=seed)
        while True:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        reached += reward > 0.5
    assert reached <= 3  # of 30


def test_chain_random_success_is_what_its_docstring_says():
    # the exact probability against a brute-force count of every path of a shorter chain (length 6, 10 steps)
    length, horizon = 6, 10
    count = 0
    for path in range(2**horizon):
        position = 0
        for t in range(horizon):
            position = max(position + (1 if path >> t & 1 else -1), 0)
            if position == length - 1:
                count += 1
                break
    assert random_policy_success(length, horizon) == pytest.approx(count / 2**horizon, abs=1e-12)
    assert random_policy_success() == pytest.approx(0.00057, abs=5e-6)  # the module docstring's 0.057%
