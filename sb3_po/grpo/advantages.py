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
    of member i's step t is its reward-to-go ``G_t^i`` minus a baseline ``b_t^i`` (steps counted from the group's
    shared start).

    - ``leave_one_out=False`` (``step_mean``): ``b_t^i`` is the mean ``G_t`` of the ``n_t`` members running at step t,
      member i included. Because the baseline contains the member's own ``G_t^i / n_t``, the expected gradient of
      step t's term is ``E[1 - 1/n_t]`` times the exact policy gradient's (``1 - 1/G`` where the whole group runs,
      0 on a step where member i runs alone).
    - ``leave_one_out=True`` (``step_rloo``, RLOO): ``b_t^i`` is the mean ``G_t`` of the *other* members running at
      step t, and 0 where no other member runs (the member's own reward-to-go is its advantage there). ``b_t^i``
      depends only on the other members, so the expected gradient is exactly the policy gradient (unbiased).

    :param step_rewards: the per-step rewards of each member episode of the group
    :return: the per-step advantages of each member episode
    """
    padded, running = _padded_rewards_to_go(step_rewards, gamma)
    total, count = padded.sum(axis=0), running.sum(axis=0)
    if leave_one_out:
        others = count - running  # the other members running at step t
        baseline = np.where(others > 0, (total - padded) / np.maximum(others, 1), 0.0)
        advantages = padded - baseline
    else:
        advantages = padded - total / count
    return [advantages[i, :n] for i, n in enumerate(running.sum(axis=1))]


def leave_one_out_scales(step_rewards: list[np.ndarray], gamma: float = 1.0) -> np.ndarray:
    """
    The group scale of ``step_rloo`` for each member i: the std of the per-step advantages that the group would have
    without member i (each other member's reward-to-go minus the mean reward-to-go of the others-but-i running at the
    same step, over all their steps), or 1 where that is 0 (a group of 2, or others whose rewards-to-go agree; "0":
    below 1e-6 times the others' largest reward-to-go, so that rounding is not mistaken for spread).
    It depends only on the other members, so dividing member i's advantages by it keeps their expected gradient
    a positive multiple (``E[1/scale]``, the same for every state) of the exact one.

    :return: ``(G,)`` scales
    """
    padded, running = _padded_rewards_to_go(step_rewards, gamma)
    scales = np.ones(len(padded))
    for i in range(len(padded)):
        others = np.arange(len(padded)) != i
        g, on = padded[others], running[others]
        mean = np.where(on, g, 0.0).sum(axis=0) / np.maximum(on.sum(axis=0), 1)
        std = (g - mean)[on].std()
        if std > 1e-6 * np.abs(g[on]).max(initial=0.0):
            scales[i] = std
    return scales


def _padded_rewards_to_go(step_rewards: list[np.ndarray], gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """``(G, T)`` rewards-to-go of the members, zero-padded, and ``(G, T)`` whether member i runs at step t."""
    to_go = [discounted_reward_to_go(r, gamma) for r in step_rewards]
    lengths = np.array([len(g) for g in to_go])
    padded = np.zeros((len(to_go), lengths.max()))
    running = np.arange(lengths.max()) < lengths[:, None]  # (G, T): member i is running at step t
    padded[running] = np.concatenate(to_go)
    return padded, running


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
    (``GRPO(..., supervision=MyAdvantage, supervision_kwargs=dict(...))``). GRPO passes the settings the subclass's
    constructor takes (``gamma``, ``scale_rewards``, ``advantage``, ``temperature``) and refuses a non-default value of
    one it does not take.

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

    def has_signal(self, group: list[np.ndarray]) -> bool:
        """
        Whether a group's advantages are not all zero (DAPO's dynamic sampling replaces a group without signal).
        This default estimates the group alone; subclasses answer exactly from the rewards.

        :param group: the per-step rewards of each member of one group
        """
        return bool(np.any(self.estimate([group]) != 0))


class OutcomeAdvantage(GroupAdvantage):
    """
    Outcome supervision: every step of member i gets the group advantage of its return (:func:`group_advantages`).

    With ``advantage="mean"`` (or ``"mean_std"`` with ``scale_rewards="none"``) the advantage ``R_i - mean(R)``
    contains the member's own return with weight 1/G: the expected gradient is exactly ``1 - 1/G`` times the policy
    gradient. Dividing by the group's std (the default) is DeepSeekMath's GRPO: not a constant scale (the std depends
    on the member's own return), so not an unbiased estimate of any multiple of the gradient (Dr. GRPO's point).

    :param advantage: ``"mean_std"``, ``"mean"`` (Dr. GRPO) or ``"softmax"``
    :param temperature: b of the softmax-relative advantage (only with ``advantage="softmax"``)
    """

    def __init__(
        self, gamma: float = 1.0, scale_rewards: str = "group", advantage: str = "mean_std", temperature: float = 1.0
    ):
        super().__init__(gamma, scale_rewards)
        check_choice(type(self).__name__, "advantage", advantage, ADVANTAGES)
        if advantage == "softmax" and scale_rewards != "group":
            raise ValueError(
                f"scale_rewards={scale_rewards!r} is used by advantage='mean_std'; advantage='softmax' ignores it"
            )
        if advantage == "mean" and scale_rewards == "batch":
            raise ValueError("scale_rewards='batch' is used by advantage='mean_std'; advantage='mean' does not scale")
        if advantage != "softmax" and temperature != 1.0:
            raise ValueError(
                f"softmax_temperature={temperature!r} is used by advantage='softmax'; advantage={advantage!r} ignores it"
            )
        if temperature <= 0:
            raise ValueError(f"softmax_temperature must be > 0, got {temperature!r}")
        self.advantage = advantage
        self.temperature = temperature

    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        per_episode = group_advantages(self.returns(rewards), self.advantage, self.scale_rewards, self.temperature)
        lengths = [len(r) for group in rewards for r in group]
        return np.repeat(per_episode.reshape(-1), lengths)

    def has_signal(self, group: list[np.ndarray]) -> bool:
        """Returns that are not all equal (a zero-spread group has zero advantages)."""
        return bool(np.ptp(self.returns([group])[0]) > 0)


class ProcessAdvantage(GroupAdvantage):
    """
    Process supervision: per-step rewards normalised over the group, summed to go (:func:`process_advantages`).

    The group's mean reward, subtracted from every reward, includes the member's own rewards, which biases the
    estimate. Exactly: with ``scale_rewards="none"``, ``gamma=1`` and episodes of one length T, the expected gradient
    of step t's term is ``1 - (T - t) / (G T)`` times the exact one; in general it is not a multiple of the policy
    gradient. Zero advantages where every step's reward is the same (CartPole, MountainCar).
    """

    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        batch_std = np.concatenate([r for group in rewards for r in group]).std()
        return np.concatenate(
            [a for group in rewards for a in process_advantages(group, self.scale_rewards, batch_std, self.gamma)]
        )

    def has_signal(self, group: list[np.ndarray]) -> bool:
        """Step rewards that are not all equal."""
        return bool(np.ptp(np.concatenate(group)) > 0)


class StepBaselineAdvantage(GroupAdvantage):
    """
    Per-step group baselines (:func:`step_baseline_advantages`), ``supervision="step_mean"``: reward-to-go minus the
    mean reward-to-go of the group's members running at the same step, the member's own included, so that the
    expected gradient of step t's term is ``E[1 - 1/n_t]`` times the exact one (n_t: the members running at step t,
    the member included; ``1 - 1/G`` where the whole group runs, 0 on a step the member runs alone). Divided by the std
    of the group's advantages (``scale_rewards="group"``), of the rollout's (``"batch"``) or not at all (``"none"``);
    those stds include the member's own advantages too.

    :param leave_one_out: RLOO's baseline: the mean of the other running members (see :class:`StepRLOOAdvantage`)
    """

    def __init__(self, gamma: float = 1.0, scale_rewards: str = "group", leave_one_out: bool = False):
        super().__init__(gamma, scale_rewards)
        self.leave_one_out = leave_one_out

    def estimate(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        if self.leave_one_out:
            return self._estimate_leave_one_out(rewards)
        groups = [np.concatenate(step_baseline_advantages(group, self.gamma, self.leave_one_out)) for group in rewards]
        if self.scale_rewards == "group":
            groups = [a / (a.std() + 1e-8) for a in groups]
        advantages = np.concatenate(groups)
        return advantages / (advantages.std() + 1e-8) if self.scale_rewards == "batch" else advantages

    def _estimate_leave_one_out(self, rewards: list[list[np.ndarray]]) -> np.ndarray:
        members = [step_baseline_advantages(group, self.gamma, leave_one_out=True) for group in rewards]
        if self.scale_rewards == "group":
            # each member by a scale computed from the other members only (leave_one_out_scales)
            members = [
                [a / s for a, s in zip(group, leave_one_out_scales(r, self.gamma), strict=True)]
                for group, r in zip(members, rewards, strict=True)
            ]
        groups = [np.concatenate(group) for group in members]
        if self.scale_rewards == "batch":
            groups = [a / s for a, s in zip(groups, _other_groups_stds(groups), strict=True)]
        return np.concatenate(groups)

    def has_signal(self, group: list[np.ndarray]) -> bool:
        """Some step where the running members' rewards-to-go differ (step_rloo: or a lone step with G_t != 0)."""
        padded, running = _padded_rewards_to_go(group, self.gamma)
        high = np.where(running, padded, -np.inf).max(axis=0)
        low = np.where(running, padded, np.inf).min(axis=0)
        if np.any(high > low):
            return True
        return bool(self.leave_one_out and np.any((running.sum(axis=0) == 1) & (high != 0)))


class StepRLOOAdvantage(StepBaselineAdvantage):
    """
    :class:`StepBaselineAdvantage` with the leave-one-out (RLOO) baseline, ``supervision="step_rloo"``: the mean
    reward-to-go of the *other* members running at the step, and 0 where none is (the member's own reward-to-go is
    then its advantage). Unbiased as shipped: the expected gradient is a positive multiple of the exact policy
    gradient, the same for every state, with every ``scale_rewards``:

    - ``"none"``: exactly the policy gradient;
    - ``"group"`` (the default): member i's advantages are divided by a scale computed from the *other* members only
      (:func:`leave_one_out_scales`: the std of the advantages the group would have without member i; 1 where that
      is 0, e.g. a group of 2): the expected gradient is ``E[1/scale]`` times the exact one;
    - ``"batch"``: group g's advantages are divided by the std of all *other* groups' advantages (1 with one group).
    """

    def __init__(self, gamma: float = 1.0, scale_rewards: str = "group"):
        super().__init__(gamma, scale_rewards, leave_one_out=True)


def _other_groups_stds(groups: list[np.ndarray]) -> np.ndarray:
    """For each group, the std of the advantages of all other groups together (1 where there are none or it is 0)."""
    stds = np.ones(len(groups))
    for g in range(len(groups)):
        others = np.concatenate([a for h, a in enumerate(groups) if h != g] or [np.zeros(0)])
        std = others.std() if len(others) else 0.0
        if std > 1e-6 * np.abs(others).max(initial=0.0):
            stds[g] = std
    return stds


# GRPO(supervision=name)
SUPERVISIONS: dict[str, type[GroupAdvantage]] = {
    "outcome": OutcomeAdvantage,
    "process": ProcessAdvantage,
    "step_mean": StepBaselineAdvantage,
    "step_rloo": StepRLOOAdvantage,
}

# The settings GRPO passes to an estimator, with the values that change nothing (GRPO's defaults): a class that
# does not take one of them is built without it, and refused when the value asks for something
ESTIMATOR_SETTINGS: dict[str, Any] = dict(gamma=0.99, scale_rewards="group", advantage="mean_std", temperature=1.0)
_GRPO_NAMES = dict(temperature="softmax_temperature")
_USED_BY = dict(
    advantage="supervision='outcome' and branch scoring (branch_states > 0)",
    temperature="advantage='softmax' (supervision='outcome', branch scoring)",
    scale_rewards="every built-in supervision",
    gamma="every built-in supervision",
)


def make_group_advantage(
    supervision: str | type[GroupAdvantage],
    supervision_kwargs: dict[str, Any] | None = None,
    used_elsewhere: tuple[str, ...] = (),
    **settings: Any,
) -> GroupAdvantage:
    """
    The estimator named (or given as a class) by ``supervision``, built with the ``settings`` (GRPO's ``gamma``,
    ``scale_rewards``, ``advantage``, ``temperature``) its constructor takes and every ``supervision_kwargs``.

    No setting is dropped silently: a setting the class does not take must keep the value that changes nothing
    (:data:`ESTIMATOR_SETTINGS`) unless it is in ``used_elsewhere`` (GRPO's branch scoring uses ``advantage`` and
    ``temperature``); otherwise a ValueError names the settings that use it.
    """
    check_choice("GRPO", "advantage", settings.get("advantage", "mean_std"), ADVANTAGES)
    check_choice("GRPO", "scale_rewards", settings.get("scale_rewards", "group"), SCALE_REWARDS)
    cls = SUPERVISIONS.get(supervision) if isinstance(supervision, str) else supervision
    if not (isinstance(cls, type) and issubclass(cls, GroupAdvantage)):
        raise ValueError(f"supervision must be one of {tuple(SUPERVISIONS)} or a GroupAdvantage subclass, got {supervision!r}")
    name = supervision if isinstance(supervision, str) else cls.__name__
    supervision_kwargs = dict(supervision_kwargs or {})
    clash = sorted(set(supervision_kwargs) & set(ESTIMATOR_SETTINGS))
    if clash:
        raise ValueError(f"supervision_kwargs {clash} are GRPO's own keywords: pass them to GRPO directly")
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    kwargs = {}
    for key, value in settings.items():
        if takes_any or key in accepted:
            kwargs[key] = value
        elif value != ESTIMATOR_SETTINGS.get(key, value) and key not in used_elsewhere:
            raise ValueError(
                f"{_GRPO_NAMES.get(key, key)}={value!r} is used by {_USED_BY.get(key, 'other estimators')}: "
                f"supervision={name!r} would ignore it. Leave it at {ESTIMATOR_SETTINGS[key]!r} or choose an "
                "estimator that uses it."
            )
    unknown = sorted(k for k in supervision_kwargs if not takes_any and k not in accepted)
    if unknown:
        raise ValueError(f"supervision={name!r} takes no {unknown} (supervision_kwargs); it takes {sorted(accepted)}")
    return cls(**kwargs, **supervision_kwargs)
