"""
KL divergence between SB3 policy distributions: exact where a closed form exists, and the sampled
k1 / k3 estimators (Schulman, "Approximating KL divergence", 2020) otherwise.

SB3's ``Distribution`` objects are mutated in place by every ``proba_distribution`` call (the policy's
``get_distribution()`` hands back the same wrapper each time), so a snapshot keeps the *torch*
distribution (``dist.distribution``), which is a fresh object per call, detached from the graph.
"""

from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.distributions import Distribution
from torch.distributions import Bernoulli, Categorical, Normal


class FrozenCategorical(NamedTuple):
    """
    A detached snapshot of a batch of categorical distributions: the normalised log-probabilities (``logits``, as
    torch names them) and the probabilities, each computed once. Indexing it per minibatch is two tensor look-ups;
    a ``Categorical`` rebuilt from the indexed logits would normalise them again and recompute the softmax on every
    minibatch (issue 31: a third of KLPPO's extra cost per update over PPO). :func:`exact_kl` takes it on either side.
    """

    logits: th.Tensor
    probs: th.Tensor


# What SB3's distributions hold in ``.distribution``: one torch distribution, or a list for MultiCategorical.
TorchDistribution = th.distributions.Distribution | list[th.distributions.Distribution]
# What :func:`index_distribution` returns (a categorical as a FrozenCategorical), and what the KLs take: either.
_Indexed = th.distributions.Distribution | FrozenCategorical
IndexedDistribution = _Indexed | list[_Indexed]
AnyDistribution = TorchDistribution | IndexedDistribution

KL_ESTIMATORS = ("exact", "k1", "k3")


def snapshot(distribution: Distribution) -> IndexedDistribution:
    """The torch distribution inside an SB3 distribution, detached: a frozen copy of pi_old (it can be sampled)."""
    return _select(distribution.distribution, slice(None), frozen=False)


def index_distribution(dist: AnyDistribution, index: np.ndarray | th.Tensor | slice) -> IndexedDistribution:
    """
    The distributions of the samples ``index`` of a batch (detached from the graph), for :func:`exact_kl`; a
    categorical one as a :class:`FrozenCategorical` (look-ups of the snapshot's log-probabilities and probabilities,
    no renormalisation per minibatch).
    """
    return _select(dist, index, frozen=True)


def _select(dist: AnyDistribution, index: np.ndarray | th.Tensor | slice, frozen: bool) -> IndexedDistribution:
    if isinstance(index, np.ndarray):  # converted once, not once per tensor indexed (torch converts an array each time)
        index = th.from_numpy(index)
    if isinstance(dist, list):
        return [_select(d, index, frozen) for d in dist]  # type: ignore[misc]
    if isinstance(dist, (Categorical, FrozenCategorical)):
        if frozen:  # ``probs`` of a torch Categorical is computed on first use and kept: once per snapshot
            return FrozenCategorical(dist.logits[index].detach(), dist.probs[index].detach())
        return Categorical(logits=dist.logits[index].detach(), validate_args=False)
    if isinstance(dist, Bernoulli):
        return Bernoulli(logits=dist.logits[index].detach(), validate_args=False)
    if isinstance(dist, Normal):
        return Normal(dist.loc[index].detach(), dist.scale[index].detach(), validate_args=False)
    raise NotImplementedError(
        f"No closed-form KL for {type(dist).__name__}; use kl_estimator='k3' (or 'k1') for this action distribution."
    )


def exact_kl(p: AnyDistribution, q: AnyDistribution) -> th.Tensor:
    """
    KL(p || q) per sample, summed over independent action dimensions (shape ``(batch,)``).

    Covers every SB3 distribution: Categorical, MultiCategorical (a list of Categoricals), Bernoulli
    (MultiBinary), DiagGaussian and gSDE (Normal per dimension). For the tanh-squashed Gaussian the KL
    of the underlying Gaussians is the exact KL, since KL is invariant under a bijection.
    """
    if isinstance(p, list):
        assert isinstance(q, list) and len(p) == len(q), "MultiCategorical distributions must have the same dimensions"
        return th.stack([exact_kl(pi, qi) for pi, qi in zip(p, q, strict=True)], dim=1).sum(dim=1)
    categorical = (Categorical, FrozenCategorical)
    if isinstance(p, categorical) and isinstance(q, categorical):
        # sum_a p(a) (log p(a) - log q(a)); torch's version adds masking passes that cost more than the KL itself
        return (p.probs * (p.logits - q.logits)).sum(dim=-1)
    assert not isinstance(q, list), "a MultiCategorical distribution against a single one"
    assert not isinstance(p, FrozenCategorical) and not isinstance(q, FrozenCategorical), "a categorical against another kind"
    kl = th.distributions.kl_divergence(p, q)
    return kl.sum(dim=tuple(range(1, kl.dim()))) if kl.dim() > 1 else kl


def kl_k1(log_prob_p: th.Tensor, log_prob_q: th.Tensor) -> th.Tensor:
    """Unbiased, high-variance sample estimate of KL(p || q) for actions drawn from p: ``log p - log q``."""
    return log_prob_p - log_prob_q


def kl_k3(log_prob_p: th.Tensor, log_prob_q: th.Tensor) -> th.Tensor:
    """
    Unbiased, low-variance, always non-negative sample estimate of KL(p || q) for actions drawn from p:
    ``q/p - log(q/p) - 1`` (the GRPO paper's estimator with p = pi_theta, q = pi_ref).
    """
    log_ratio = log_prob_q - log_prob_p
    return th.exp(log_ratio) - log_ratio - 1


def approx_kl(log_ratio: th.Tensor) -> th.Tensor:
    """
    SB3's approximate KL(pi_old || pi_theta) over a batch (PPO's ``approx_kl``, for logging and ``target_kl``): the
    mean of ``(exp(r) - 1) - r`` with ``r = log pi_theta(a|s) - log pi_old(a|s)`` on actions drawn from pi_old, i.e.
    :func:`kl_k3` with p = pi_old, q = pi_theta, averaged.

    :param log_ratio: ``log pi_theta(a|s) - log pi_old(a|s)`` per sample
    :return: a scalar tensor
    """
    return th.mean((th.exp(log_ratio) - 1) - log_ratio)


def policy_kl(
    estimator: str,
    p: AnyDistribution | None,
    q: AnyDistribution | None,
    log_prob_p: th.Tensor,
    log_prob_q: th.Tensor,
    ratio: th.Tensor | None = None,
) -> th.Tensor:
    """
    KL(p || q) per sample with the chosen estimator (``"exact"``, ``"k1"`` or ``"k3"``).

    The sampled estimators assume the actions were drawn from p. Where they were drawn from pi_old and p is
    pi_theta (GRPO's penalty to pi_ref), pass ``ratio = pi_theta / pi_old``:

    - ``"k1"`` is then weighted by the ratio (gradient through it): ``E_old[ratio * (log p - log q)]`` is
      KL(p || q) for every theta, and so is its gradient. Unweighted, only ``log p`` would be differentiated:
      the expected gradient would be zero at theta = theta_old and -grad KL(pi_old || pi_theta) after, pushing
      the policy away from pi_old rather than toward q.
    - ``"k3"`` stays unweighted, as DeepSeekMath writes it: its value estimates KL(p || q), and its expected
      gradient at theta = theta_old is that of the *forward* KL(q || p) (here KL(pi_ref || pi_theta)).
    - ``"exact"`` needs no samples (and is the only one that needs the distributions: None for the others).
    """
    if estimator == "exact":
        assert p is not None and q is not None, "the exact KL needs both distributions"
        return exact_kl(p, q)
    if estimator == "k1":
        return kl_k1(log_prob_p, log_prob_q) if ratio is None else ratio * kl_k1(log_prob_p, log_prob_q)
    if estimator == "k3":
        return kl_k3(log_prob_p, log_prob_q)
    raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
