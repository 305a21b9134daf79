"""The one mechanism for per-minibatch lookups (KLPPO's pi_old, GRPO's pi_ref): minibatches with their positions."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_po.common.minibatches import flatten_rollout, indexed_minibatches, minibatch_indices


def filled(buffer_class, observation_space, n_steps=12, n_envs=2):
    rng = np.random.default_rng(0)
    buffer = buffer_class(n_steps, observation_space, spaces.Discrete(3), device="cpu", n_envs=n_envs)
    for _ in range(n_steps):
        obs = (
            {k: rng.normal(size=(n_envs, *s.shape)) for k, s in observation_space.items()}
            if isinstance(observation_space, spaces.Dict)
            else rng.normal(size=(n_envs, *observation_space.shape))
        )
        buffer.add(
            obs, rng.integers(0, 3, (n_envs, 1)), rng.normal(size=n_envs), np.zeros(n_envs), th.zeros(n_envs), th.zeros(n_envs)
        )
    buffer.compute_returns_and_advantage(th.zeros(n_envs), np.zeros(n_envs))
    return buffer


@pytest.mark.parametrize("dict_obs", [False, True])
def test_indexed_minibatches_are_sb3s_get_with_their_positions(dict_obs):
    space = spaces.Dict({"a": spaces.Box(-1, 1, (3,)), "b": spaces.Box(-1, 1, (2,))}) if dict_obs else spaces.Box(-1, 1, (3,))
    buffer_class = DictRolloutBuffer if dict_obs else RolloutBuffer
    ours, theirs = filled(buffer_class, space), filled(buffer_class, space)
    np.random.seed(7)
    flatten_rollout(ours)
    assert ours.generator_ready
    after_flatten = np.random.get_state()[1].copy()
    np.random.seed(7)
    assert np.array_equal(np.random.get_state()[1], after_flatten)  # flattening drew nothing from NumPy's generator
    indexed = list(indexed_minibatches(ours, batch_size=10))
    np.random.seed(7)
    batches = list(theirs.get(batch_size=10))
    assert [len(i) for i, _ in indexed] == [len(b.actions) for b in batches] == [10, 10, 4]
    positions = np.concatenate([i for i, _ in indexed])
    assert sorted(positions) == list(range(24))
    for (indices, mine), reference in zip(indexed, batches, strict=True):
        th.testing.assert_close(mine.actions, reference.actions, rtol=0, atol=0)
        th.testing.assert_close(mine.advantages, reference.advantages, rtol=0, atol=0)
        # the positions point at the minibatch's samples in the flattened rollout
        np.testing.assert_array_equal(ours.actions[indices], reference.actions.numpy())


def test_minibatch_indices_split_one_permutation():
    np.random.seed(3)
    permutation = np.random.permutation(10)
    np.random.seed(3)
    by_size = list(minibatch_indices(10, batch_size=4))
    np.random.seed(3)
    by_count = list(minibatch_indices(10, n_minibatches=3))
    assert [b.tolist() for b in by_size] == [permutation[:4].tolist(), permutation[4:8].tolist(), permutation[8:].tolist()]
    assert [b.tolist() for b in by_count] == [a.tolist() for a in np.array_split(permutation, 3)]
    with pytest.raises(ValueError, match="either batch_size or n_minibatches"):
        next(minibatch_indices(10))
