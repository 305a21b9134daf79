"""
GRPO's **KL penalty** to a reference policy, ``beta * KL(pi_theta || pi_ref)`` per step (DeepSeekMath), and the
settings it owns: ``beta`` (0: no penalty and no reference policy), the estimator (``k3``, ``k1``, ``exact``; see
:func:`sb3_po.common.kl.policy_kl`) and ``ref_update_interval`` (0: the initial policy stays the reference; k: the
policy is copied into the reference every k rollouts, iterative GRPO). Without a penalty the other two would do
nothing, and are refused.
"""

from dataclasses import dataclass

from sb3_po.common.checks import check_choice, check_int, check_number
from sb3_po.common.kl import KL_ESTIMATORS


@dataclass(frozen=True)
class KLPenalty:
    """
    :param beta: Coefficient of the KL penalty (>= 0)
    :param estimator: ``"k3"`` (default), ``"k1"`` or ``"exact"``
    :param ref_update_interval: 0, or copy the policy into the reference every k rollouts
    """

    beta: float = 0.0
    estimator: str = "k3"
    ref_update_interval: int = 0

    def __post_init__(self) -> None:
        check_number("GRPO", "beta", self.beta, 0)
        check_choice("GRPO", "kl_estimator", self.estimator, KL_ESTIMATORS)
        check_int("GRPO", "ref_update_interval", self.ref_update_interval, 0)
        if self.beta == 0:
            for name, value, default in (
                ("kl_estimator", self.estimator, "k3"),
                ("ref_update_interval", self.ref_update_interval, 0),
            ):
                if value != default:
                    raise ValueError(f"GRPO: {name}={value!r} is used by the KL penalty (beta > 0); beta=0 would ignore it")

    @property
    def active(self) -> bool:
        """Whether there is a penalty (and a reference policy)."""
        return self.beta > 0
