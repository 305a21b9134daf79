"""
Branching rollouts (TRPO's vine, Schulman et al. 2015, section 5), ``GRPO(branch_states=...)``.

At states chosen uniformly along a rollout's whole episodes (the trunks), ``branch_count`` (K) branches of at most
``branch_horizon`` (H) steps start from the restored state. The branches of one state form a branch group, scored by
**outcome supervision with the model's own settings**: a branch's return over its steps, discounted with GRPO's
``gamma`` from the branch state, relative to the other branches of its state with GRPO's ``advantage``,
``scale_rewards`` and ``softmax_temperature``; that advantage goes to the branch's first ``branch_credit`` actions
(only those are trained on). With ``advantage="mean"`` (or ``scale_rewards="none"``) the expected gradient at a branch
state is exactly ``1 - 1/K`` times the gradient of the expected discounted return over the H steps from it.
``common_random_numbers`` seeds the env's generator of every branch of a state alike after the restore, so that they
differ only by the policy's actions.
"""

from dataclasses import dataclass
from typing import Any

from sb3_po.common.checks import check_int

# GRPO's defaults of the branching settings: without branching (branch_states=0) each must keep its default
DEFAULTS: dict[str, Any] = dict(branch_count=4, branch_horizon=50, branch_credit=1, common_random_numbers=False)


@dataclass(frozen=True)
class Branching:
    """
    Branching rollouts (see the module's docstring).

    :param n_states: States branched from per rollout
    :param n_branches: K, the branches of one state (>= 2)
    :param horizon: H, the steps a branch runs at most
    :param credit: How many of a branch's first actions are trained on
    :param common_random_numbers: The branches of a state get the same env random numbers (the env's generator is
        seeded alike), so that they differ only by the policy's actions
    """

    n_states: int
    n_branches: int
    horizon: int
    credit: int = 1
    common_random_numbers: bool = False

    def __post_init__(self) -> None:
        check_int("GRPO", "branch_states", self.n_states, 1)
        check_int("GRPO", "branch_count", self.n_branches, 2)
        check_int("GRPO", "branch_horizon", self.horizon, 1)
        check_int("GRPO", "branch_credit", self.credit, 1)


def make_branching(
    branch_states: int,
    branch_count: int = DEFAULTS["branch_count"],
    branch_horizon: int = DEFAULTS["branch_horizon"],
    branch_credit: int = DEFAULTS["branch_credit"],
    common_random_numbers: bool = DEFAULTS["common_random_numbers"],
) -> Branching | None:
    """GRPO's branching settings: None with ``branch_states=0``, which refuses the other settings (it ignores them)."""
    check_int("GRPO", "branch_states", branch_states, 0)
    if branch_states == 0:
        settings = dict(
            branch_count=branch_count,
            branch_horizon=branch_horizon,
            branch_credit=branch_credit,
            common_random_numbers=common_random_numbers,
        )
        for name, value in settings.items():
            if value != DEFAULTS[name]:
                raise ValueError(f"GRPO: {name}={value!r} is used by branching rollouts (branch_states > 0)")
        return None
    return Branching(branch_states, branch_count, branch_horizon, branch_credit, common_random_numbers)
