"""The validators every algorithm and buffer uses, the approximate KL and the action helper they share."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_po.common.checks import check_choice, check_int, check_number
from sb3_po.common.kl import approx_kl, kl_k3
from sb3_po.common.policies import policy_actions


def test_validators_name_the_algorithm_and_the_way_out():
    check_choice("GRPO", "loss_type", "step", ("step", "episode"))
    with pytest.raises(ValueError, match=r"^GRPO: loss_type must be one of \('step', 'episode'\), got 'sum'$"):
        check_choice("GRPO", "loss_type", "sum", ("step", "episode"))
    check_int("VPG", "n_steps", np.int64(3), 1)
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"^VPG: n_steps must be an integer >= 1, got"):
            check_int("VPG", "n_steps", bad, 1)
    with pytest.raises(ValueError, match=r"^B: n_step must be an integer >= 1, got 0\. Use n_step=1 for TD\(0\)\.$"):
        check_int("B", "n_step", 0, 1, hint="Use n_step=1 for TD(0).")
    check_number("NPG", "target_kl", 0.01, 0, strict=True)
    check_number("KLPPO", "beta", 0, 0)
    for bad in (0, -1.0, float("nan"), float("inf"), None, True):
        with pytest.raises(ValueError, match=r"^NPG: target_kl must be a finite number > 0, got"):
            check_number("NPG", "target_kl", bad, 0, strict=True)


def test_approx_kl_is_sb3s_expression():
    log_ratio = th.tensor([0.3, -0.2, 0.0, 1.5])
    assert th.equal(approx_kl(log_ratio), th.mean((th.exp(log_ratio) - 1) - log_ratio))
    assert th.equal(approx_kl(log_ratio), th.mean(th.exp(log_ratio) - 1 - log_ratio))  # GRPO's and VPG's spelling
    # k3 with p = pi_old, q = pi_theta
    assert approx_kl(log_ratio).item() == pytest.approx(kl_k3(th.zeros(4), log_ratio).mean().item(), rel=1e-6)
    assert approx_kl(log_ratio).item() == pytest.approx(0.5126, abs=1e-4)  # (0.0499 + 0.0187 + 0 + 1.9817) / 4


def test_policy_actions_flatten_discrete_actions_only():
    stored = th.tensor([[1.0], [0.0], [2.0]])
    actions = policy_actions(stored, spaces.Discrete(3))
    assert actions.dtype == th.long and actions.tolist() == [1, 0, 2]
    boxed = th.tensor([[0.5, -0.5]])
    assert policy_actions(boxed, spaces.Box(-1, 1, (2,))) is boxed
    assert policy_actions(stored, spaces.MultiDiscrete([3])) is stored
