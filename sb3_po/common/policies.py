"""Pieces of SB3's actor-critic policy shared by the sb3-po policies."""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule
from torch import nn


def policy_actions(actions: th.Tensor, action_space: spaces.Space) -> th.Tensor:
    """
    Actions as a rollout buffer stores them (floats, shape ``(batch, action_dim)``) in the form SB3's distributions
    take them: a ``Discrete`` space's flattened to ``long`` (shape ``(batch,)``), the others unchanged.
    """
    return actions.long().flatten() if isinstance(action_space, spaces.Discrete) else actions


def actor_critic_parameters(
    policy: ActorCriticPolicy,
) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """
    The parameters of any ``ActorCriticPolicy`` (a user's subclass too: a custom ``mlp_extractor``, features
    extractor or heads), split by what they feed, found by autograd on one observation of the policy's space:

    - ``critic``: every parameter ``predict_values`` depends on (``value_net``, the value branch of the extractor, the
      critic's features extractor, and whatever the value shares with the action distribution);
    - ``actor``: every parameter but those only the value depends on;
    - ``shared``: those both depend on (a shared features extractor or trunk).

    :param policy: a built policy
    :return: ``(actor, critic, shared)``, each in the order of ``policy.parameters()``
    """
    observation = policy.obs_to_tensor(policy.observation_space.sample())[0]
    parameters = [p for p in policy.parameters() if p.requires_grad]
    training = policy.training
    policy.set_training_mode(False)  # one observation: no batch statistics (BatchNorm), no dropout
    try:
        with th.enable_grad():
            values = policy.predict_values(observation).sum()
            distribution = policy.get_distribution(observation)
            log_prob = distribution.log_prob(distribution.get_actions(deterministic=True).detach()).sum()
            value_grads = (
                th.autograd.grad(values, parameters, allow_unused=True) if values.requires_grad else [None] * len(parameters)
            )
            actor_grads = th.autograd.grad(log_prob, parameters, allow_unused=True)
    finally:
        policy.set_training_mode(training)
    of_value = {id(p) for p, g in zip(parameters, value_grads, strict=True) if g is not None}
    of_actor = {id(p) for p, g in zip(parameters, actor_grads, strict=True) if g is not None}
    critic = [p for p in parameters if id(p) in of_value]
    shared = [p for p in critic if id(p) in of_actor]
    actor = [p for p in parameters if id(p) not in of_value or id(p) in of_actor]
    return actor, critic, shared


class ZeroBaseline(nn.Module):
    """Value head of a policy without a critic: V(s) = 0, no parameters."""

    def forward(self, latent_vf: th.Tensor) -> th.Tensor:
        return th.zeros((latent_vf.shape[0], 1), device=latent_vf.device, dtype=latent_vf.dtype)


def actor_only_net_arch(net_arch: list[int] | dict[str, list[int]]) -> dict[str, list[int]]:
    """The ``net_arch`` of an ``ActorCriticPolicy`` with the critic's layers removed."""
    pi_arch = net_arch.get("pi", []) if isinstance(net_arch, dict) else net_arch
    return dict(pi=list(pi_arch), vf=[])


def remove_critic(policy: ActorCriticPolicy) -> None:
    """
    Turn a built ``ActorCriticPolicy`` (whose ``net_arch`` came from :func:`actor_only_net_arch`) into an
    actor alone: the value head becomes :class:`ZeroBaseline` and the critic's own features extractor
    is the actor's. The caller rebuilds the optimiser.
    """
    policy.value_net = ZeroBaseline()  # type: ignore[assignment]  # SB3 annotates value_net as nn.Linear
    if not policy.share_features_extractor:
        policy.vf_features_extractor = policy.pi_features_extractor


class ActorOnlyPolicy(ActorCriticPolicy):
    """
    SB3's ``ActorCriticPolicy`` without a critic, for critic-free algorithms (GRPO): no value layers,
    no value parameters, no value optimiser state; ``predict_values`` returns 0.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule
    :param kwargs: Every other keyword argument of ``ActorCriticPolicy``
    """

    def _build_mlp_extractor(self) -> None:
        self.net_arch = actor_only_net_arch(self.net_arch)
        super()._build_mlp_extractor()

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        remove_critic(self)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]


class ActorOnlyCnnPolicy(ActorOnlyPolicy):
    """
    :class:`ActorOnlyPolicy` with SB3's ``NatureCNN`` features extractor.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule
    :param kwargs: Every other keyword argument of ``ActorCriticPolicy``
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


class ActorOnlyMultiInputPolicy(ActorOnlyPolicy):
    """
    :class:`ActorOnlyPolicy` with SB3's ``CombinedExtractor``, for ``Dict`` observations.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule
    :param kwargs: Every other keyword argument of ``ActorCriticPolicy``
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
