"""The pure estimator functions against brute-force references and against each other."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.buffers import RolloutBuffer

from sb3_po.common.estimators import (
    gae_advantages,
    monte_carlo_advantages,
    n_step_advantages,
    next_values_and_non_terminal,
    td_residuals,
)


def random_rollout(rng, n_steps, n_envs, p_start=0.15, p_done=0.5, scale=1.0):
    """Random rewards/values with episode boundaries anywhere, including cuts mid-episode."""
    rewards = (rng.normal(size=(n_steps, n_envs)) * scale).astype(np.float32)
    values = (rng.normal(size=(n_steps, n_envs)) * scale).astype(np.float32)
    episode_starts = (rng.random((n_steps, n_envs)) < p_start).astype(np.float32)
    last_values = (rng.normal(size=n_envs) * scale).astype(np.float32)
    dones = rng.random(n_envs) < p_done
    return rewards, values, episode_starts, last_values, dones


def episode_ends_after(t, env, episode_starts, dones):
    """True when step t is the last step of its episode."""
    n_steps = len(episode_starts)
    return bool(dones[env]) if t == n_steps - 1 else bool(episode_starts[t + 1, env])


def brute_n_step(rewards, values, episode_starts, last_values, dones, gamma, n):
    """A_t = sum_{i<m} gamma^i r_{t+i} + gamma^m V(s_{t+m}) - V(s_t), written as the definition reads."""
    n_steps, n_envs = rewards.shape
    out = np.zeros((n_steps, n_envs), dtype=np.float64)
    for env in range(n_envs):
        for t in range(n_steps):
            total, k = 0.0, t
            while True:
                total += gamma ** (k - t) * float(rewards[k, env])
                if episode_ends_after(k, env, episode_starts, dones):
                    break  # terminal: no bootstrap
                if k - t + 1 == n:  # m = n: bootstrap with V(s_{t+n})
                    nxt = float(values[k + 1, env]) if k + 1 < n_steps else float(last_values[env])
                    total += gamma ** (k - t + 1) * nxt
                    break
                if k == n_steps - 1:  # rollout cut mid-episode: bootstrap with last_values
                    total += gamma ** (k - t + 1) * float(last_values[env])
                    break
                k += 1
            out[t, env] = total - float(values[t, env])
    return out


def brute_gae(rewards, values, episode_starts, last_values, dones, gamma, lam):
    """A_t = sum_l (gamma lambda)^l delta_{t+l} within the episode, each delta computed from scratch."""
    n_steps, n_envs = rewards.shape
    out = np.zeros((n_steps, n_envs), dtype=np.float64)
    for env in range(n_envs):
        for t in range(n_steps):
            total, k = 0.0, t
            while k < n_steps:
                ends = episode_ends_after(k, env, episode_starts, dones)
                nxt = 0.0 if ends else (float(values[k + 1, env]) if k + 1 < n_steps else float(last_values[env]))
                delta = float(rewards[k, env]) + gamma * nxt - float(values[k, env])
                total += (gamma * lam) ** (k - t) * delta
                if ends:
                    break
                k += 1
            out[t, env] = total
    return out


CASES = [(n_steps, n_envs, seed) for n_steps, n_envs in [(1, 1), (7, 1), (16, 3), (33, 4)] for seed in range(3)]


@pytest.mark.parametrize("n_steps,n_envs,seed", CASES)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 40])
def test_n_step_matches_brute_force(n_steps, n_envs, seed, n):
    data = random_rollout(np.random.default_rng(seed), n_steps, n_envs)
    expected = brute_n_step(*data, gamma=0.97, n=n)
    np.testing.assert_allclose(n_step_advantages(*data, gamma=0.97, n_step=n), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_steps,n_envs,seed", CASES)
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_brute_force(n_steps, n_envs, seed, lam):
    data = random_rollout(np.random.default_rng(seed), n_steps, n_envs)
    expected = brute_gae(*data, gamma=0.99, lam=lam)
    np.testing.assert_allclose(gae_advantages(*data, gamma=0.99, gae_lambda=lam), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_steps,n_envs,seed", CASES)
def test_monte_carlo_is_reward_to_go_minus_baseline(n_steps, n_envs, seed):
    data = random_rollout(np.random.default_rng(seed), n_steps, n_envs)
    expected = brute_n_step(*data, gamma=0.99, n=10**9)
    np.testing.assert_allclose(monte_carlo_advantages(*data, gamma=0.99), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_steps,n_envs,seed", CASES)
def test_equivalences(n_steps, n_envs, seed):
    data = random_rollout(np.random.default_rng(seed), n_steps, n_envs)
    gamma = 0.95
    td0 = td_residuals(*data, gamma=gamma)
    np.testing.assert_allclose(n_step_advantages(*data, gamma=gamma, n_step=1), td0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gae_advantages(*data, gamma=gamma, gae_lambda=0.0), td0, rtol=1e-6, atol=1e-6)
    mc = monte_carlo_advantages(*data, gamma=gamma)
    np.testing.assert_array_equal(mc, gae_advantages(*data, gamma=gamma, gae_lambda=1.0))
    for n in (n_steps, n_steps + 1, 10 * n_steps):
        np.testing.assert_allclose(n_step_advantages(*data, gamma=gamma, n_step=n), mc, rtol=1e-5, atol=1e-5)


def test_hand_computed_example():
    # one env, 4 steps; an episode ends after step 1 (a new one starts at step 2); the rollout cuts the second.
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    values = np.array([[10.0], [20.0], [30.0], [40.0]], dtype=np.float32)
    starts = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)
    last_values, dones, g = np.array([50.0], dtype=np.float32), np.array([False]), 0.5
    # 2-step: A_0 = 1 + .5*2 - 10 (episode ends at 1), A_1 = 2 - 20, A_2 = 3 + .5*4 + .25*50 - 30, A_3 = 4 + .5*50 - 40
    expected = np.array([[-8.0], [-18.0], [-12.5], [-11.0]])
    np.testing.assert_allclose(n_step_advantages(rewards, values, starts, last_values, dones, g, 2), expected)
    # TD(0): 1 + .5*20 - 10, 2 - 20, 3 + .5*40 - 30, 4 + .5*50 - 40
    np.testing.assert_allclose(td_residuals(rewards, values, starts, last_values, dones, g), [[1.0], [-18.0], [-7.0], [-11.0]])
    # a final `done` masks the bootstrap
    np.testing.assert_allclose(td_residuals(rewards, values, starts, last_values, np.array([True]), g)[-1], [-36.0])


@pytest.mark.parametrize("n_envs", [1, 2, 5])
@pytest.mark.parametrize("lam", [0.0, 0.8, 0.95, 1.0])
def test_gae_is_bitwise_sb3(n_envs, lam):
    """Same numbers as SB3's own RolloutBuffer, to the last bit."""
    rng = np.random.default_rng(n_envs)
    n_steps = 64
    rewards, values, starts, last_values, dones = random_rollout(rng, n_steps, n_envs, scale=10.0)
    buf = RolloutBuffer(n_steps, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), gamma=0.99, gae_lambda=lam, n_envs=n_envs)
    buf.rewards, buf.values, buf.episode_starts = rewards.copy(), values.copy(), starts.copy()
    buf.compute_returns_and_advantage(th.as_tensor(last_values), dones)
    ours = gae_advantages(rewards, values, starts, last_values, dones, 0.99, lam)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, buf.advantages)


def test_next_values_shapes():
    _, values, starts, last_values, dones = random_rollout(np.random.default_rng(0), 5, 3)
    nv, nnt = next_values_and_non_terminal(values, starts, last_values, dones)
    assert nv.shape == nnt.shape == (5, 3)
    np.testing.assert_array_equal(nv[-1], last_values)
    np.testing.assert_array_equal(nnt[-1], 1.0 - dones)
    np.testing.assert_array_equal(nnt[:-1], 1.0 - starts[1:])


def test_n_step_rejects_bad_n():
    data = random_rollout(np.random.default_rng(0), 4, 1)
    with pytest.raises(ValueError, match="n_step"):
        n_step_advantages(*data, gamma=0.9, n_step=0)


@settings(max_examples=60, deadline=None)
@given(
    n_steps=st.integers(1, 24),
    n_envs=st.integers(1, 4),
    n=st.integers(1, 30),
    gamma=st.floats(0.0, 1.0),
    scale=st.sampled_from([1e-6, 1.0, 1e4]),
    p_start=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_fuzz_n_step_and_gae(n_steps, n_envs, n, gamma, scale, p_start, seed):
    data = random_rollout(np.random.default_rng(seed), n_steps, n_envs, p_start=p_start, scale=scale)
    atol = 1e-4 * scale * max(1, n_steps)
    ours = n_step_advantages(*data, gamma=gamma, n_step=n)
    assert ours.shape == (n_steps, n_envs) and np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, brute_n_step(*data, gamma=gamma, n=n), rtol=1e-4, atol=atol)
    np.testing.assert_allclose(
        gae_advantages(*data, gamma=gamma, gae_lambda=0.9), brute_gae(*data, gamma=gamma, lam=0.9), rtol=1e-4, atol=atol
    )
