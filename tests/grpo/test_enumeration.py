"""
The documented scale of every group advantage estimator, by enumeration: every outcome of a group on a two-state toy
with a tabular softmax policy goes through GRPO's public buffer and ``train()`` (one SGD step of learning rate 1
on the whole rollout, ``loss_type="dr_grpo"`` with normaliser 1, so the step is ``(1/G) sum_i sum_t A_it grad log
pi(a_it|s_it)``); the probability-weighted mean step is compared, state by state, with the exact policy gradient.
"""

import itertools
from math import comb

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import configure

from sb3_po import GRPO
from sb3_po.grpo.buffers import Episode

S0, S1 = np.array([1.0, 0.0], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)
LOGITS = np.array([[0.0, 0.0], [0.5, -0.3]])  # [action, state]: P(a=1 | s0) = 0.6225 (sigmoid(0.5)), s1 0.5744


class TwoStateEnv(gym.Env):
    """
    s0: action 0 pays 1 and ends the episode (``lone=True``: members that reach s1 may run alone there) or moves to
    s1 (``lone=False``: every episode has two steps); action 1 pays 0 and moves to s1. s1: action 0 pays 0, action 1
    pays 2; both end the episode.
    """

    observation_space = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, lone: bool = True):
        self.lone = lone

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return S0.copy(), {}

    def step(self, action):
        if self.s == 0:
            self.s = 1
            ends = action == 0 and self.lone
            return S1.copy(), float(action == 0), bool(ends), False, {}
        return S1.copy(), 2.0 * float(action == 1), True, False, {}


def trajectories(lone: bool, p0: np.ndarray, p1: np.ndarray) -> list[tuple[float, list[tuple[int, int, float]]]]:
    """Every episode of the toy: (probability, [(state, action, reward)])."""
    out = []
    for a0 in (0, 1):
        if a0 == 0 and lone:
            out.append((p0[0], [(0, 0, 1.0)]))
            continue
        for a1 in (0, 1):
            out.append((p0[a0] * p1[a1], [(0, a0, float(a0 == 0)), (1, a1, 2.0 * a1)]))
    return out


def make_model(group_size: int, lone: bool = True, **kwargs) -> GRPO:
    kwargs = {"supervision": "outcome", "gamma": 1.0, **kwargs}
    model = GRPO(
        "MlpPolicy",
        TwoStateEnv(lone),
        group_size=group_size,
        n_groups=1,
        n_epochs=1,
        n_minibatches=1,
        learning_rate=1.0,
        max_grad_norm=float("inf"),
        loss_type="dr_grpo",
        loss_normalizer=1,
        policy_kwargs=dict(net_arch=[], optimizer_class=th.optim.SGD),
        seed=0,
        device="cpu",
        **kwargs,
    )
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.as_tensor(LOGITS))
        model.policy.action_net.bias.zero_()
    model.set_logger(configure(None, [""]))
    return model


def probabilities(model: GRPO) -> tuple[np.ndarray, np.ndarray]:
    with th.no_grad():
        dist = model.policy.get_distribution(th.as_tensor(np.stack([S0, S1])))
        probs = dist.distribution.probs.numpy().astype(np.float64)
    return probs[0], probs[1]


def exact_gradient(model: GRPO, lone: bool, gamma: float, to_go: bool = False) -> np.ndarray:
    """
    d J / d logits, ``[action, state]``: J the expected discounted return from s0. ``to_go``: the reference of the
    per-step estimators, ``sum_t E[grad log pi(a_t|s_t) G_t]`` with the reward-to-go discounted from t (step t not
    weighted by gamma^t, as in PPO and A2C): s1's part divided by gamma.
    """
    logits = th.tensor(LOGITS, requires_grad=True, dtype=th.float64)
    p0, p1 = th.softmax(logits[:, 0], 0), th.softmax(logits[:, 1], 0)
    at_s1 = gamma * 2.0 * p1[1]
    j = p0[0] * (1.0 + (0.0 if lone else at_s1)) + p0[1] * at_s1
    (grad,) = th.autograd.grad(j, logits)
    grad = grad.numpy()
    if to_go:
        grad[:, 1] /= gamma
    return grad


def expected_step(model: GRPO, groups, branch_credit: int | None = None) -> np.ndarray:
    """
    The probability-weighted mean of GRPO's parameter step on the action logits over every outcome of ``groups``
    groups of ``model.group_size`` members (of ``branch_credit``-credited branches: one branch group).
    """
    weight = model.policy.action_net.weight
    start = {k: v.clone() for k, v in model.policy.state_dict().items()}
    buffer = model.rollout_buffer
    total = np.zeros(LOGITS.shape)
    size = model.branch_count if branch_credit is not None else model.group_size
    for outcome in itertools.product(groups, repeat=size):
        probability = float(np.prod([p for p, _ in outcome]))
        buffer.reset()
        for member in outcome:
            steps = member[1]
            obs = th.as_tensor(np.stack([S0 if s == 0 else S1 for s, _, _ in steps]))
            actions = th.as_tensor([a for _, a, _ in steps])
            with th.no_grad():
                log_probs = model.policy.get_distribution(obs).log_prob(actions).numpy()
            first = buffer.pos
            for t, (_, a, r) in enumerate(steps):
                buffer.add(obs[t : t + 1].numpy(), np.array([a]), log_probs[t : t + 1], np.array([r]))
            buffer.add_episode(Episode(0, 0, first, buffer.pos, branch_credit))
        buffer.compute_advantages()
        model.train()
        with th.no_grad():
            total += probability * (weight - th.as_tensor(start["action_net.weight"])).numpy()
        model.policy.load_state_dict(start)
    return total


def ratios(step: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per state: the expected step's projection on the exact gradient there, over its squared norm (1: exact)."""
    return (step * exact).sum(axis=0) / (exact * exact).sum(axis=0)


def assert_parallel(step: np.ndarray, exact: np.ndarray) -> None:
    for s in range(2):
        cosine = step[:, s] @ exact[:, s] / np.linalg.norm(step[:, s]) / np.linalg.norm(exact[:, s])
        assert cosine == pytest.approx(1.0, abs=1e-6)


def reach_s1(model: GRPO) -> float:
    return float(probabilities(model)[0][1])


@pytest.mark.parametrize("group_size", [2, 3])
def test_step_rloo_is_unbiased_with_lone_steps(group_size):
    """Issue 29, defect 1: before the fix the later state's ratio was 1 - (1 - p)^(G-1) (0.6225 at G=2, 0.8575 at 3)."""
    model = make_model(group_size, supervision="step_rloo", scale_rewards="none")
    step = expected_step(model, trajectories(True, *probabilities(model)))
    exact = exact_gradient(model, True, 1.0)
    np.testing.assert_allclose(ratios(step, exact), [1.0, 1.0], rtol=1e-5)
    assert_parallel(step, exact)


@pytest.mark.parametrize("group_size", [2, 3])
def test_step_rloo_scaled_as_shipped_is_a_multiple_of_the_gradient(group_size):
    """
    The default scale_rewards="group" divides by leave-one-out stds: one positive factor for every state.
    (scale_rewards="batch" is refused with one group a rollout, as here: tests/grpo/test_options.py.)
    """
    model = make_model(group_size, supervision="step_rloo", gamma=0.9)
    step = expected_step(model, trajectories(True, *probabilities(model)))
    exact = exact_gradient(model, True, 0.9, to_go=True)
    r = ratios(step, exact)
    assert r[0] > 0 and r[0] == pytest.approx(r[1], rel=1e-5)
    assert_parallel(step, exact)


@pytest.mark.parametrize("group_size", [2, 3, 4])
def test_step_mean_scale_is_one_minus_one_over_the_members_running(group_size):
    """Defect 2, documented: step t's expected gradient is E[1 - 1/n_t] times the exact one."""
    model = make_model(group_size, supervision="step_mean", scale_rewards="none")
    step = expected_step(model, trajectories(True, *probabilities(model)))
    exact = exact_gradient(model, True, 1.0)
    p, others = reach_s1(model), group_size - 1
    # at s1 (step 1): n_1 = 1 + the other members that reached s1, Binomial(G - 1, p)
    at_s1 = sum(comb(others, k) * p**k * (1 - p) ** (others - k) * (1 - 1 / (1 + k)) for k in range(others + 1))
    np.testing.assert_allclose(ratios(step, exact), [1 - 1 / group_size, at_s1], rtol=1e-5)
    assert_parallel(step, exact)


@pytest.mark.parametrize("group_size", [2, 3])
@pytest.mark.parametrize("advantage,scale_rewards", [("mean", "group"), ("mean_std", "none")])
def test_outcome_mean_scale_is_one_minus_one_over_g(group_size, advantage, scale_rewards):
    model = make_model(group_size, supervision="outcome", advantage=advantage, scale_rewards=scale_rewards, gamma=0.8)
    step = expected_step(model, trajectories(True, *probabilities(model)))
    exact = exact_gradient(model, True, 0.8)
    np.testing.assert_allclose(ratios(step, exact), [1 - 1 / group_size] * 2, rtol=1e-5)
    assert_parallel(step, exact)


@pytest.mark.parametrize("group_size", [2, 3])
def test_process_scale_with_equal_lengths(group_size):
    """Episodes of length T = 2, gamma 1, no std: step t is scaled by 1 - (T - t) / (G T)."""
    model = make_model(group_size, lone=False, supervision="process", scale_rewards="none")
    step = expected_step(model, trajectories(False, *probabilities(model)))
    exact = exact_gradient(model, False, 1.0)
    np.testing.assert_allclose(ratios(step, exact), [1 - 1 / group_size, 1 - 1 / (2 * group_size)], rtol=1e-5)
    assert_parallel(step, exact)


@pytest.mark.parametrize("branch_count", [2, 3])
def test_branch_scoring_uses_the_model_settings_and_scales_by_one_minus_one_over_k(branch_count):
    """
    Defect 4: branches are scored with GRPO's gamma, advantage and scale_rewards (before: gamma 1, mean and std).
    K branches from s0, each credited on its first 2 actions: (1 - 1/K) times the exact gradient of the discounted
    return, at both states.
    """
    model = make_model(
        2,
        supervision="step_mean",
        gamma=0.9,
        advantage="mean",
        scale_rewards="none",
        branch_states=1,
        branch_count=branch_count,
        branch_horizon=2,
        branch_credit=2,
    )
    step = expected_step(model, trajectories(True, *probabilities(model)), branch_credit=2)
    exact = exact_gradient(model, True, 0.9)
    np.testing.assert_allclose(ratios(step, exact), [1 - 1 / branch_count] * 2, rtol=1e-5)
    assert_parallel(step, exact)


def test_branch_credit_trains_only_the_first_actions():
    model = make_model(2, gamma=0.9, advantage="mean", branch_states=1, branch_count=2, branch_horizon=2, branch_credit=1)
    step = expected_step(model, trajectories(True, *probabilities(model)), branch_credit=1)
    exact = exact_gradient(model, True, 0.9)
    np.testing.assert_allclose(ratios(step, exact), [0.5, 0.0], rtol=1e-5, atol=1e-12)
