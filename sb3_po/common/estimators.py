"""
Advantage estimators as small pure functions on numpy arrays.

Every function follows the conventions of SB3's ``RolloutBuffer``:

- ``rewards``, ``values`` and ``episode_starts`` are shaped ``(n_steps, n_envs)``;
- ``episode_starts[t]`` is 1 where the observation at step ``t`` is the first of an episode,
  so step ``t`` is the last step of its episode when ``episode_starts[t + 1] == 1``;
- ``last_values`` (shape ``(n_envs,)``) is V(s_T) for the observation after the rollout and
  ``dones`` (shape ``(n_envs,)``) says whether the rollout's last step ended an episode;
- on a time-limit truncation SB3's ``collect_rollouts`` has already added ``gamma * V(terminal_obs)``
  to the reward, so a truncation is treated here exactly like a termination.

Notation (GAE paper, Schulman et al. 2016): the TD residual is
``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)``, and every estimator below is a
(possibly truncated) discounted sum of residuals.
"""

import numpy as np


def next_values_and_non_terminal(
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """
    V(s_{t+1}) and the mask ``1 - done_t`` for every step of a rollout.

    :param values: V(s_t), shape (n_steps, n_envs)
    :param episode_starts: 1 where step t starts an episode, shape (n_steps, n_envs)
    :param last_values: V(s_T) after the rollout, shape (n_envs,)
    :param dones: whether the rollout's last step ended an episode, shape (n_envs,)
    :return: ``(next_values, next_non_terminal)``, both shaped (n_steps, n_envs)
    """
    next_values = np.concatenate([values[1:], np.asarray(last_values, dtype=values.dtype)[None]], axis=0)
    last_non_terminal = 1.0 - np.asarray(dones).astype(np.float32)
    next_non_terminal = np.concatenate([1.0 - episode_starts[1:], last_non_terminal[None]], axis=0)
    return next_values, next_non_terminal


def td_residuals(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """
    One-step TD residuals ``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)``.

    This is also the TD(0) advantage estimate (GAE with lambda = 0).

    :return: delta, shape (n_steps, n_envs)
    """
    next_values, next_non_terminal = next_values_and_non_terminal(values, episode_starts, last_values, dones)
    return rewards + gamma * next_values * next_non_terminal - values


def gae_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> np.ndarray:
    """
    Generalized Advantage Estimation, ``A_t = sum_l (gamma * lambda)^l delta_{t+l}`` within an episode.

    The recursion and its order of floating-point operations are those of SB3's
    ``RolloutBuffer.compute_returns_and_advantage``, so the result is bit-for-bit the same.

    :return: advantages, shape (n_steps, n_envs)
    """
    next_values, next_non_terminal = next_values_and_non_terminal(values, episode_starts, last_values, dones)
    advantages = np.zeros_like(rewards)
    last_gae_lam = 0
    for step in reversed(range(len(rewards))):
        delta = rewards[step] + gamma * next_values[step] * next_non_terminal[step] - values[step]
        last_gae_lam = delta + gamma * gae_lambda * next_non_terminal[step] * last_gae_lam
        advantages[step] = last_gae_lam
    return advantages


def monte_carlo_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """
    Discounted reward-to-go minus the baseline, ``A_t = sum_{l} gamma^l r_{t+l} - V(s_t)`` up to the
    episode's end (or, if the rollout cuts the episode, bootstrapped with ``last_values``).

    Equal to GAE with lambda = 1.

    :return: advantages, shape (n_steps, n_envs)
    """
    return gae_advantages(rewards, values, episode_starts, last_values, dones, gamma, gae_lambda=1.0)


def n_step_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    n_step: int,
) -> np.ndarray:
    """
    A3C's k-step advantage,
    ``A_t = sum_{i<m} gamma^i r_{t+i} + gamma^m V(s_{t+m}) - V(s_t)``
    with ``m = min(n_step, steps to the end of the episode or of the rollout)``; no bootstrap past
    a terminal step, and ``last_values`` (masked by ``dones``) at the rollout's end.

    Computed as the truncated sum of TD residuals ``sum_{i<m} gamma^i delta_{t+i}`` (which telescopes
    to the formula above) with one vectorised pass per look-ahead step.
    ``n_step = 1`` is TD(0); ``n_step >= n_steps`` is Monte Carlo.

    :return: advantages, shape (n_steps, n_envs)
    """
    if n_step < 1:
        raise ValueError(f"n_step must be >= 1, got {n_step}")
    delta = td_residuals(rewards, values, episode_starts, last_values, dones, gamma)
    _, next_non_terminal = next_values_and_non_terminal(values, episode_starts, last_values, dones)
    n_steps = len(rewards)
    advantages = np.zeros_like(delta)
    # weight[t] = gamma^i * prod_{j<i} (1 - done_{t+j}): the discount of delta_{t+i}, zero past an episode end
    weight = np.ones_like(delta)
    for i in range(min(n_step, n_steps)):
        advantages[: n_steps - i] += weight[: n_steps - i] * delta[i:]
        weight[: n_steps - i - 1] *= gamma * next_non_terminal[i : n_steps - 1]
    return advantages
