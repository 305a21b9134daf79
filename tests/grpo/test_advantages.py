import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sb3_po.grpo.advantages import (
    discounted_return,
    discounted_reward_to_go,
    group_advantages,
    leave_one_out_scales,
    make_group_advantage,
    process_advantages,
    step_baseline_advantages,
)


def test_mean_std_by_hand():
    returns = np.array([[1.0, 2.0, 3.0, 6.0]])  # mean 3, population std sqrt(3.5)
    expected = (returns - 3.0) / np.sqrt(3.5)
    np.testing.assert_allclose(group_advantages(returns), expected, rtol=1e-7)
    np.testing.assert_allclose(group_advantages(returns, "mean"), [[-2.0, -1.0, 0.0, 3.0]])
    np.testing.assert_allclose(group_advantages(returns, scale_rewards="none"), [[-2.0, -1.0, 0.0, 3.0]])


def test_batch_scaling_uses_the_std_of_every_return():
    returns = np.array([[0.0, 2.0], [10.0, 30.0]])
    batch_std = np.std([0.0, 2.0, 10.0, 30.0])
    np.testing.assert_allclose(group_advantages(returns, scale_rewards="batch"), [[-1, 1], [-10, 10]] / batch_std, rtol=1e-7)


def test_softmax_relative_by_hand():
    returns = np.array([[0.0, np.log(3.0)]])  # exp: 1 and 3 -> softmax 1/4, 3/4
    np.testing.assert_allclose(group_advantages(returns, "softmax"), [[0.25 - 0.5, 0.75 - 0.5]], atol=1e-12)
    # the temperature sharpens: b = 2 -> 1 and 9 -> 1/10, 9/10
    np.testing.assert_allclose(group_advantages(returns, "softmax", temperature=2.0), [[-0.4, 0.4]], atol=1e-12)
    # huge returns do not overflow
    assert np.all(np.isfinite(group_advantages(np.array([[1e6, 1e6 + 1]]), "softmax")))


@pytest.mark.parametrize("advantage", ["mean_std", "mean", "softmax"])
@pytest.mark.parametrize("value", [0.1, 500.0, -1e9, 0.0])
def test_zero_spread_gives_zero_never_nan(advantage, value):
    returns = np.full((2, 8), value)
    returns[1, 3] += 1.0
    out = group_advantages(returns, advantage)
    assert np.all(out[0] == 0.0) and np.all(np.isfinite(out)) and np.any(out[1] != 0)


def test_process_supervision_by_hand():
    # group of 2 episodes: rewards [1, 2] and [3]; mean 2, std sqrt(2/3)
    std = np.sqrt(2 / 3)
    adv = process_advantages([np.array([1.0, 2.0]), np.array([3.0])])
    np.testing.assert_allclose(adv[0], [(-1 + 0) / std, 0 / std], rtol=1e-7)
    np.testing.assert_allclose(adv[1], [1 / std], rtol=1e-7)
    flat = process_advantages([np.ones(3), np.ones(2)])
    assert all(np.all(a == 0) for a in flat)
    np.testing.assert_allclose(process_advantages([np.array([0.0, 2.0])], scale_rewards="none", gamma=0.5)[0], [-1 + 0.5, 1])


def test_reward_to_go():
    np.testing.assert_allclose(discounted_reward_to_go(np.array([1.0, 2.0, 4.0]), 0.5), [1 + 1 + 1, 2 + 2, 4])
    np.testing.assert_allclose(discounted_reward_to_go(np.array([1.0, 2.0, 4.0])), [7, 6, 4])
    assert discounted_return(np.array([1.0, 2.0, 4.0]), 0.5) == 3.0 and discounted_return(np.array([1.0, 2.0, 4.0])) == 7.0


def test_bad_choices():
    with pytest.raises(ValueError, match="advantage"):
        group_advantages(np.zeros((1, 2)), "rank")
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(np.zeros((1, 2)), scale_rewards="global")


@settings(max_examples=100, deadline=None)
@given(
    returns=hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=12), elements=st.floats(-1e6, 1e6)
    ),
    advantage=st.sampled_from(["mean_std", "mean", "softmax"]),
    scale=st.sampled_from(["group", "batch", "none"]),
)
def test_fuzz_group_advantages(returns, advantage, scale):
    out = group_advantages(returns, advantage, scale)
    assert out.shape == returns.shape and np.all(np.isfinite(out))
    # relative: every group's advantages sum to zero (up to rounding), and order follows the returns
    np.testing.assert_allclose(out.sum(axis=1), 0.0, atol=1e-6 * max(1.0, np.abs(out).max()))
    for r, a in zip(returns, out, strict=True):
        order = np.argsort(r, kind="stable")
        assert np.all(np.diff(a[order]) >= -1e-9 * max(1.0, np.abs(a).max()))


def _brute_step_baseline(step_rewards, gamma, leave_one_out):
    """Step by step, member by member: the definition, with explicit loops."""
    to_go = [discounted_reward_to_go(r, gamma) for r in step_rewards]
    out = []
    for i, g in enumerate(to_go):
        adv = np.zeros(len(g))
        for t in range(len(g)):
            others = [to_go[j][t] for j in range(len(to_go)) if len(to_go[j]) > t and (j != i or not leave_one_out)]
            # a lone step: step_mean's baseline is the member itself (0), step_rloo's is 0 (its own reward-to-go)
            adv[t] = (0.0 if not leave_one_out else g[t]) if not others else g[t] - np.mean(others)
        out.append(adv)
    return out


def test_step_baselines_by_hand():
    rewards = [np.array([1.0, 1.0, 1.0]), np.array([0.0, 2.0]), np.array([3.0])]
    # rewards-to-go: [3, 2, 1], [2, 2], [3]; step 0: all three run (mean 8/3), step 1: two (mean 2), step 2: one
    mean = step_baseline_advantages(rewards)
    np.testing.assert_allclose(mean[0], [3 - 8 / 3, 0.0, 0.0])
    np.testing.assert_allclose(mean[1], [2 - 8 / 3, 0.0])
    np.testing.assert_allclose(mean[2], [3 - 8 / 3])
    loo = step_baseline_advantages(rewards, leave_one_out=True)
    np.testing.assert_allclose(loo[0], [3 - 2.5, 2 - 2, 1.0])  # step 2: nobody else runs: its own reward-to-go
    np.testing.assert_allclose(loo[1], [2 - 3, 2 - 2])
    np.testing.assert_allclose(loo[2], [3 - 2.5])


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=2, max_size=5),
    gamma=st.sampled_from([1.0, 0.9]),
    leave_one_out=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_step_baselines_match_the_definition(lengths, gamma, leave_one_out, seed):
    rng = np.random.default_rng(seed)
    rewards = [rng.normal(size=n) for n in lengths]
    got = step_baseline_advantages(rewards, gamma, leave_one_out)
    for a, b in zip(got, _brute_step_baseline(rewards, gamma, leave_one_out), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_step_rloo_lone_step_keeps_its_own_reward_to_go():
    # issue 29's repro: the second member's last step runs alone; its baseline is 0, not its own reward-to-go
    advantages = step_baseline_advantages([np.array([0.5]), np.array([0.0, 1.0])], leave_one_out=True)
    np.testing.assert_allclose(advantages[0], [-0.5])
    np.testing.assert_allclose(advantages[1], [0.5, 1.0])


def test_leave_one_out_scales_use_only_the_other_members():
    rewards = [np.array([1.0, 0.0, 2.0]), np.array([0.0, 3.0]), np.array([5.0])]
    scales = leave_one_out_scales(rewards)
    for i in range(3):
        others = [r for j, r in enumerate(rewards) if j != i]
        expected = np.concatenate(step_baseline_advantages(others)).std()
        assert scales[i] == pytest.approx(expected if expected > 0 else 1.0)
        # changing member i's rewards does not change its scale
        changed = [r * 7.0 + 1.0 if j == i else r for j, r in enumerate(rewards)]
        assert leave_one_out_scales(changed)[i] == pytest.approx(scales[i])
    np.testing.assert_array_equal(leave_one_out_scales([np.array([1.0]), np.array([4.0, 2.0])]), [1.0, 1.0])


def test_step_baseline_estimators_by_name():
    rewards = [[np.array([1.0, 0.0]), np.array([0.0])], [np.array([2.0]), np.array([2.0, 2.0])]]
    for name, loo in (("step_mean", False), ("step_rloo", True)):
        estimator = make_group_advantage(name, gamma=1.0, scale_rewards="none", advantage="mean_std", temperature=1.0)
        expected = np.concatenate([a for group in rewards for a in step_baseline_advantages(group, 1.0, loo)])
        np.testing.assert_allclose(estimator.estimate(rewards), expected)
    scaled = make_group_advantage("step_mean", scale_rewards="group").estimate(rewards)
    first = np.concatenate(step_baseline_advantages(rewards[0]))
    np.testing.assert_allclose(scaled[:3], first / first.std(), rtol=1e-6)
