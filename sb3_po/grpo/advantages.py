"""
GRPO's group-relative advantages (DeepSeekMath, Shao et al. 2024), as small pure functions on arrays.

A group is G episodes started from one shared state. Outcome supervision scores each episode by its
return R_i and gives ``A_i`` to every step of episode i; process supervision normalises every per-step
reward over the group and gives each step the sum of the normalised rewards to go.
"""

import numpy as np

ADVANTAGES = ("mean_std", "mean", "softmax")
SCALE_REWARDS = ("group", "batch", "none")


def group_advantages(
    returns: np.ndarray,
    advantage: str = "mean_std",
    scale_rewards: str = "group",
    temperature: float = 1.0,
    eps: float = 1e-8,
) -> np.ndarray:
    """
    Group-relative advantage of each episode from the groups' returns, shape ``(n_groups, G)``.

    - ``"mean_std"``: ``A_i = (R_i - mean(R)) / std(R)``, the std being the group's (``scale_rewards="group"``),
      the whole batch's (``"batch"``) or 1 (``"none"``, which is Dr. GRPO's mean-only form);
    - ``"mean"``: ``A_i = R_i - mean(R)`` (Dr. GRPO);
    - ``"softmax"``: ``A_i = exp(b R_i) / sum_j exp(b R_j) - 1/G`` with ``b = temperature``.

    A group whose returns are all equal gets a zero advantage (never NaN). std is the population std (1/G).
    """
    if advantage not in ADVANTAGES:
        raise ValueError(f"advantage must be one of {ADVANTAGES}, got {advantage!r}")
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    returns = np.asarray(returns, dtype=np.float64)
    zero_spread = np.ptp(returns, axis=1, keepdims=True) == 0
    if advantage == "softmax":
        logits = temperature * (returns - returns.max(axis=1, keepdims=True))
        weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        out = weights - 1.0 / returns.shape[1]
    else:
        out = returns - returns.mean(axis=1, keepdims=True)
        if advantage == "mean_std" and scale_rewards == "group":
            out = out / (returns.std(axis=1, keepdims=True) + eps)
        elif advantage == "mean_std" and scale_rewards == "batch":
            out = out / (returns.std() + eps)
    return np.where(zero_spread, 0.0, out)


def process_advantages(
    step_rewards: list[np.ndarray],
    scale_rewards: str = "group",
    batch_std: float | None = None,
    gamma: float = 1.0,
    eps: float = 1e-8,
) -> list[np.ndarray]:
    """
    Process supervision for one group: every step reward of every member is normalised with the group's
    mean and std (``scale_rewards="group"``; ``"batch"`` divides by ``batch_std`` instead, ``"none"`` by 1),
    and the advantage of step t is the (``gamma``-discounted) sum of the normalised rewards from t to the
    episode's end.

    :param step_rewards: the per-step rewards of each member episode of the group
    :return: the per-step advantages of each member episode
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    rewards = [np.asarray(r, dtype=np.float64) for r in step_rewards]
    everything = np.concatenate(rewards)
    if np.ptp(everything) == 0:
        return [np.zeros_like(r) for r in rewards]
    scale = {"group": everything.std(), "batch": batch_std, "none": 1.0}[scale_rewards]
    if scale is None:
        raise ValueError("scale_rewards='batch' needs batch_std")
    mean = everything.mean()
    return [discounted_reward_to_go((r - mean) / (scale + eps), gamma) for r in rewards]


def discounted_return(rewards: np.ndarray, gamma: float = 1.0) -> float:
    """``sum_t gamma^t r_t`` of one episode: the score of outcome supervision."""
    rewards = np.asarray(rewards, dtype=np.float64)
    return float(rewards.sum() if gamma == 1.0 else rewards @ gamma ** np.arange(len(rewards)))


def discounted_reward_to_go(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` for one episode."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if gamma == 1.0:
        return np.cumsum(rewards[::-1])[::-1]
    out = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):  # gamma^-t scaling would overflow on long episodes
        running = rewards[t] + gamma * running
        out[t] = running
    return out
