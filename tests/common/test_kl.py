"""Exact KL for every SB3 action distribution, against closed forms written out by hand, and the k1/k3 estimators."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import make_proba_distribution

from sb3_po.common.kl import FrozenCategorical, exact_kl, index_distribution, kl_k1, kl_k3, policy_kl, snapshot

BATCH = 7


def make_pair(space, use_sde=False):
    """pi_old (snapshot) and an SB3 distribution of the same type with nearby random parameters."""
    th.manual_seed(0)
    dist_a = make_proba_distribution(space, use_sde=use_sde)
    dist_b = make_proba_distribution(space, use_sde=use_sde)
    if isinstance(space, spaces.Box):
        dim = space.shape[0]
        mean_a = th.randn(BATCH, dim)
        mean_b = mean_a + 0.5 * th.randn(BATCH, dim)
        if use_sde:
            latent = th.randn(BATCH, 3)
            log_std_a = th.randn(3, dim) * 0.3
            log_std_b = log_std_a + th.randn(3, dim) * 0.2
            dist_a.proba_distribution(mean_a, log_std_a, latent)
            pa = snapshot(dist_a)
            dist_b.proba_distribution(mean_b, log_std_b, latent)
        else:
            log_std_a = th.randn(dim) * 0.3
            log_std_b = log_std_a + th.randn(dim) * 0.2
            dist_a.proba_distribution(mean_a, log_std_a)
            pa = snapshot(dist_a)
            dist_b.proba_distribution(mean_b, log_std_b)
        return pa, dist_b
    n = {spaces.Discrete: lambda s: s.n, spaces.MultiDiscrete: lambda s: int(sum(s.nvec)), spaces.MultiBinary: lambda s: s.n}[
        type(space)
    ](space)
    logits = th.randn(BATCH, n)
    dist_a.proba_distribution(logits)
    pa = snapshot(dist_a)
    dist_b.proba_distribution(logits + 0.7 * th.randn(BATCH, n))
    return pa, dist_b


def categorical_kl(logits_p, logits_q):
    p, q = th.softmax(logits_p, -1), th.softmax(logits_q, -1)
    return (p * (th.log(p) - th.log(q))).sum(-1)


def gaussian_kl(mp, sp, mq, sq):
    return (th.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5).sum(-1)


def bernoulli_kl(lp, lq):
    p, q = th.sigmoid(lp), th.sigmoid(lq)
    return (p * th.log(p / q) + (1 - p) * th.log((1 - p) / (1 - q))).sum(-1)


@pytest.mark.parametrize(
    "space,use_sde",
    [
        (spaces.Discrete(5), False),
        (spaces.MultiDiscrete([3, 4, 2]), False),
        (spaces.MultiBinary(4), False),
        (spaces.Box(-1, 1, (3,)), False),
        (spaces.Box(-1, 1, (2,)), True),
    ],
    ids=["categorical", "multicategorical", "bernoulli", "diag_gaussian", "gsde"],
)
def test_exact_kl_matches_the_closed_form(space, use_sde):
    p, q_sb3 = make_pair(space, use_sde)
    q = q_sb3.distribution
    ours = exact_kl(p, q)
    assert ours.shape == (BATCH,)
    if isinstance(space, spaces.Discrete):
        expected = categorical_kl(p.logits, q.logits)
    elif isinstance(space, spaces.MultiDiscrete):
        expected = sum(categorical_kl(pi.logits, qi.logits) for pi, qi in zip(p, q, strict=True))
    elif isinstance(space, spaces.MultiBinary):
        expected = bernoulli_kl(p.logits, q.logits)
    else:
        expected = gaussian_kl(p.loc, p.scale, q.loc, q.scale)
    th.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    # and torch's own KL, summed over the independent dimensions
    if isinstance(p, list):
        torch_kl = sum(th.distributions.kl_divergence(pi, qi) for pi, qi in zip(p, q, strict=True))
    else:
        torch_kl = th.distributions.kl_divergence(p, q)
        torch_kl = torch_kl.sum(-1) if torch_kl.dim() > 1 else torch_kl
    th.testing.assert_close(ours, torch_kl, rtol=1e-5, atol=1e-6)
    assert th.all(ours > 0)
    assert th.allclose(exact_kl(p, p), th.zeros(BATCH), atol=1e-6)
    # the sampled estimators are unbiased: their mean over many actions from p approaches the exact KL
    th.manual_seed(1)
    log_p, log_q = sampled_log_probs(p, q, 200_000)
    for estimator in (kl_k1, kl_k3):
        th.testing.assert_close(estimator(log_p, log_q).mean(0), expected, rtol=0.05, atol=0.02)
    assert th.all(kl_k3(log_p, log_q) >= 0)


def sampled_log_probs(p, q, n):
    """log p(a) and log q(a) (summed over independent dimensions) for n actions a ~ p per batch element."""
    if isinstance(p, list):
        pairs = [sampled_log_probs(pi, qi, n) for pi, qi in zip(p, q, strict=True)]
        return sum(lp for lp, _ in pairs), sum(lq for _, lq in pairs)
    actions = p.sample((n,))
    log_p, log_q = p.log_prob(actions), q.log_prob(actions)
    if log_p.dim() == 3:
        log_p, log_q = log_p.sum(-1), log_q.sum(-1)
    return log_p, log_q


def test_snapshot_is_frozen_against_the_policy_mutating_its_distribution():
    dist = make_proba_distribution(spaces.Discrete(3))
    dist.proba_distribution(th.zeros(2, 3, requires_grad=True))
    frozen = snapshot(dist)
    dist.proba_distribution(th.ones(2, 3) * th.tensor([5.0, 0.0, 0.0]))  # the SB3 wrapper is mutated in place
    th.testing.assert_close(frozen.probs, th.full((2, 3), 1 / 3))
    assert not frozen.logits.requires_grad


def test_index_distribution_and_policy_kl_dispatch():
    idx = np.array([4, 0])
    for space in (spaces.Box(-1, 1, (2,)), spaces.Discrete(5), spaces.MultiDiscrete([3, 4, 2])):
        p, q = make_pair(space)
        whole = exact_kl(p, q.distribution)
        # either side indexed (a categorical one becomes a FrozenCategorical: no renormalisation per minibatch)
        th.testing.assert_close(exact_kl(index_distribution(p, idx), index_distribution(q.distribution, idx)), whole[idx])
        q_idx = q.distribution[0] if isinstance(q.distribution, list) else q.distribution
        if isinstance(space, spaces.Discrete):  # the indexed snapshot against a live torch Categorical of the minibatch
            live = th.distributions.Categorical(logits=q_idx.logits[idx])
            frozen = index_distribution(p, idx)
            assert isinstance(frozen, FrozenCategorical)
            th.testing.assert_close(exact_kl(frozen, live), whole[idx])
            th.testing.assert_close(
                exact_kl(live, frozen), th.distributions.kl_divergence(live, p.__class__(logits=p.logits[idx]))
            )
    log_p, log_q = th.tensor([0.0, -1.0]), th.tensor([-0.5, -0.5])
    th.testing.assert_close(policy_kl("k1", None, None, log_p, log_q), log_p - log_q)
    th.testing.assert_close(policy_kl("k3", None, None, log_p, log_q), kl_k3(log_p, log_q))
    with pytest.raises(ValueError, match="kl_estimator"):
        policy_kl("k2", None, None, log_p, log_q)


# -- expected gradients, by enumeration ---------------------------------------------------------------------------------
# A small categorical policy (one state, 5 actions, theta = the logits). The expected gradient of a sampled estimator is
# sum_a pi_sample(a) grad est(a; theta), enumerated over the actions; it must equal the gradient of the exact KL the
# algorithm means to penalise. pi_sample is pi_old in both algorithms (the rollout's policy).

N_ACTIONS = 5


def _dist(logits):
    return th.distributions.Categorical(logits=logits)


def _expected_gradient(theta, pi_sample, estimate):
    """sum_a pi_sample(a) * grad_theta estimate(a, theta), with the actions enumerated."""
    actions = th.arange(N_ACTIONS)
    loss = (pi_sample.detach() * estimate(actions, theta)).sum()
    return th.autograd.grad(loss, theta)[0]


def _exact_gradient(kl_of_theta, theta):
    return th.autograd.grad(kl_of_theta(theta), theta)[0]


def _logits():
    g = th.Generator().manual_seed(0)
    old = th.randn(N_ACTIONS, generator=g)
    ref = old + 0.8 * th.randn(N_ACTIONS, generator=g)
    step = 0.5 * th.randn(N_ACTIONS, generator=g)
    return old, ref, step


@pytest.mark.parametrize("estimator", ["k1", "k3", "exact"])
@pytest.mark.parametrize("at", ["theta_old", "after_a_step"])
def test_grpo_kl_penalty_expected_gradient(estimator, at):
    """GRPO: beta * KL(pi_theta || pi_ref) on steps drawn from pi_old, called as GRPO.train calls policy_kl."""
    old, ref, step = _logits()
    theta = (old + (step if at == "after_a_step" else 0)).clone().requires_grad_(True)
    pi_old, pi_ref = _dist(old).probs, _dist(ref)

    def estimate(actions, theta):
        pi_theta = _dist(theta)
        log_prob, old_log_prob = pi_theta.log_prob(actions), _dist(old).log_prob(actions)
        ratio = th.exp(log_prob - old_log_prob)
        return policy_kl(estimator, _dist(theta.expand(len(actions), -1)), _dist(ref.expand(len(actions), -1)), log_prob,
                         pi_ref.log_prob(actions), ratio=ratio)  # fmt: skip

    reverse = _exact_gradient(lambda t: th.distributions.kl_divergence(_dist(t), pi_ref), theta)
    forward = _exact_gradient(lambda t: th.distributions.kl_divergence(pi_ref, _dist(t)), theta)
    got = _expected_gradient(theta, pi_old, estimate)
    if estimator == "k3":
        if at == "theta_old":  # DeepSeekMath's k3: the forward KL's gradient where the samples come from pi_theta
            th.testing.assert_close(got, forward, rtol=1e-5, atol=1e-6)
        assert not th.allclose(got, reverse, atol=1e-3)  # not the reverse KL's
    else:  # k1 weighted by the ratio, and the exact KL: KL(pi_theta || pi_ref) at every theta
        th.testing.assert_close(got, reverse, rtol=1e-5, atol=1e-6)


def test_unweighted_k1_on_pi_old_samples_pushes_the_wrong_way():
    """What the ratio weight fixes: plain k1 on pi_old's samples has zero expected gradient at theta_old."""
    old, ref, _ = _logits()
    theta = old.clone().requires_grad_(True)
    pi_ref = _dist(ref)
    got = _expected_gradient(theta, _dist(old).probs, lambda a, t: kl_k1(_dist(t).log_prob(a), pi_ref.log_prob(a)))
    th.testing.assert_close(got, th.zeros(N_ACTIONS), atol=1e-6, rtol=0)
    assert th.distributions.kl_divergence(_dist(old), pi_ref) > 0.05  # while the KL to pi_ref is far from zero


@pytest.mark.parametrize("estimator", ["k1", "k3", "exact"])
def test_kl_ppo_penalty_expected_gradient(estimator):
    """KLPPO: beta * KL(pi_old || pi_theta) on steps drawn from pi_old, called as KLPPO.train calls policy_kl."""
    old, _, step = _logits()
    theta = (old + step).clone().requires_grad_(True)
    pi_old = _dist(old)

    def estimate(actions, theta):
        n = len(actions)
        pi_theta = _dist(theta)
        return policy_kl(estimator, _dist(old.expand(n, -1)), _dist(theta.expand(n, -1)), pi_old.log_prob(actions),
                         pi_theta.log_prob(actions))  # fmt: skip

    want = _exact_gradient(lambda t: th.distributions.kl_divergence(pi_old, _dist(t)), theta)
    th.testing.assert_close(_expected_gradient(theta, pi_old.probs, estimate), want, rtol=1e-5, atol=1e-6)
