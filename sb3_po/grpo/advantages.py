"""
GRPO's group-relative advantages (DeepSeekMath, Shao et al. 2024): small pure functions on arrays, and the
estimator classes over them that GRPO's buffer calls (selected by ``GRPO(supervision=...)``, by name or class).

A group is G episodes started from one shared state. Outcome supervision scores each episode by its
return R_i and gives ``A_i`` to every step of episode i; process supervision normalises every per-step
reward over the group and gives each step the sum of the normalised rewards to go.
"""

import inspect
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from sb3_po.common.checks import check_choice

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
    check_choice("group_advantages", "advantage", advantage, ADVANTAGES)
    check_choice("group_advantages", "scale_rewards", scale_rewards, SCALE_REWARDS)
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
    check_choice("process_advantages", "scale_rewards", scale_rewards, SCALE_REWARDS)
    rewards = [np.asarray(r, dtype=np.float64) for r in step_rewards]
    everything = np.concatenate(rewards)
    if np.ptp(everything) == 0:
        return [np.zeros_like(r) for r in rewards]
    scale = {"group": everything.std(), "batch": batch_std, "none": 1.0}[scale_rewards]
    if scale is None:
        raise ValueError("scale_rewards='batch' needs batch_std")
    mean = everything.mean()
    return [discounted_reward_to_go((r - mean) / (scale + eps), gamma) for r in rewards]


def step_baseline_advantages(
    step_rewards: list[np.ndarray], gamma: float = 1.0, leave_one_out: bool = False
) -> list[np.ndarray]:
    """
    Per-step group baselines for one group (Group Policy Gradient, Chen et al. 2025, arXiv 2510.03679): the advantage
    of member i's step t is its reward-to-go ``G_t^i`` minus the mean reward-to-go at step t of the group's members
    still running at t (steps counted from the group's shared start). ``leave_one_out`` (RLOO) takes the mean of
    the *other* running members instead, which does not depend on member i's own actions (an unbiased baseline);
    a step where no other member is running gets advantage 0.

    :param step_rewards: the per-step rewards of each member episode of the group
    :return: the per-step advantages of each member episode
    """
    to_go = [discounted_reward_to_go(r, gamma) for r in step_rewards]
    lengths = np.array([len(g) for g in to_go])
    padded = np.zeros((len(to_go), lengths.max()))
    running = np.arange(lengths.max()) < lengths[:, None]  # (G, T): member i is running at step t
    padded[running] = np.concatenate(to_go)
    total, count = padded.sum(axis=0), running.sum(axis=0)
    if leave_one_out:
        others = np.maximum(count - 1, 1)
        advantages = np.where(count > 1, padded - (total - padded) / others, 0.0)
    else:
        advantages = padded - total / count
    return [advantages[i, :n] for i, n in enumerate(lengths)]


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


# -- estimators: what GRPO's buffer calls ------------------------------------------------------------------------------


class GroupAdvantage(ABC):
    """
    A group advantage estimator: the per-step advantages of every member episode of a rollout's groups.

    Subclass it and implement :meth:`estimate` to plug a new estimator into GRPO
    (``GRPO(..., supervision=MyAdvantage, supervision_kwargs=dict(...))``).

    :param gamma: Discount of the returns
    :param scale_rewards: ``"group"``, ``"batch"`` or ``"none"``: what the advantages are divided by
    """

    def __init__(self, gamma: float = 1.0, scale_rewards: str = "group"):
        check_choice(type(self).__name__, "scale_rewards", scale_rewards, SCALE_REWARDS)
        self.gamma = gamma
        self.scale_rewards = scale_rewards

    @abstractmethod
    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        """
        :param rewards: ``rewards[g][i]`` the per-step rewards of member i of group g
        :return: the advantage of every step, flat in the same order (group by group, member by member)
        """

    def returns(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        """``(n_groups, G)`` discounted returns of the members from their start state."""
        return np.array([[discounted_return(r, self.gamma) for r in group] for group in rewards])


class OutcomeAdvantage(GroupAdvantage):
    """
    Outcome supervision: every step of member i gets the group advantage of its return (:func:`group_advantages`).

    :param advantage: ``"mean_std"``, ``"mean"`` (Dr. GRPO) or ``"softmax"``
    :param temperature: b of the softmax-relative advantage
    """

    def __init__(
        self, gamma: float = 1.0, scale_rewards: str = "group", advantage: str = "mean_std", temperature: float = 1.0
    ):
        super().__init__(gamma, scale_rewards)
        check_choice(type(self).__name__, "advantage", advantage, ADVANTAGES)
        self.advantage = advantage
        self.temperature = temperature

    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        per_episode = group_advantages(self.returns(rewards), self.advantage, self.scale_rewards, self.temperature)
        lengths = [len(r) for group in rewards for r in group]
        return np.repeat(per_episode.reshape(-1), lengths)


class ProcessAdvantage(GroupAdvantage):
    """Process supervision: per-step rewards normalised over the group, summed to go (:func:`process_advantages`)."""

    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        batch_std = np.concatenate([r for group in rewards for r in group]).std()
        return np.concatenate(
            [a for group in rewards for a in process_advantages(group, self.scale_rewards, batch_std, self.gamma)]
        )


class StepBaselineAdvantage(GroupAdvantage):
    """
    Per-step group baselines (:func:`step_baseline_advantages`): reward-to-go minus the group's mean reward-to-go
    at the same step; divided by the std of the group's advantages (``scale_rewards="group"``), of the batch's
    (``"batch"``) or not at all (``"none"``).

    :param leave_one_out: RLOO's baseline: the mean of the other running members
    """

    def __init__(self, gamma: float = 1.0, scale_rewards: str = "group", leave_one_out: bool = False):
        super().__init__(gamma, scale_rewards)
        self.leave_one_out = leave_one_out

    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        groups = [np.concatenate(step_baseline_advantages(group, self.gamma, self.leave_one_out)) for group in rewards]
        if self.scale_rewards == "group":
            groups = [a / (a.std() + 1e-8) for a in groups]
        advantages = np.concatenate(groups)
        return advantages / (advantages.std() + 1e-8) if self.scale_rewards == "batch" else advantages


class StepRLOOAdvantage(StepBaselineAdvantage):
    """:class:`StepBaselineAdvantage` with the leave-one-out (RLOO) baseline."""

    def __init__(self, gamma: float = 1.0, scale_rewards: str = "group"):
        super().__init__(gamma, scale_rewards, leave_one_out=True)


# GRPO(supervision=name)
SUPERVISIONS: dict[str, type[GroupAdvantage]] = {
    "outcome": OutcomeAdvantage,
    "process": ProcessAdvantage,
    "step_mean": StepBaselineAdvantage,
    "step_rloo": StepRLOOAdvantage,
}


def make_group_advantage(supervision: str | type[GroupAdvantage], **kwargs: Any) -> GroupAdvantage:
    """
    The estimator named (or given as a class) by ``supervision``, built with those of ``kwargs`` that its
    constructor takes (GRPO passes ``gamma``, ``scale_rewards``, ``advantage``, ``temperature`` and the user's
    ``supervision_kwargs``).
    """
    cls = SUPERVISIONS.get(supervision) if isinstance(supervision, str) else supervision  # type: ignore[arg-type]
    if not (isinstance(cls, type) and issubclass(cls, GroupAdvantage)):
        raise ValueError(f"supervision must be one of {tuple(SUPERVISIONS)} or a GroupAdvantage subclass, got {supervision!r}")
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    return cls(**{k: v for k, v in kwargs.items() if takes_any or k in accepted})
