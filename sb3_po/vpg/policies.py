from typing import Any

from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_po.common.policies import actor_only_net_arch, remove_critic


class VPGPolicy(ActorCriticPolicy):
    """
    Actor-critic policy for VPG: SB3's ``ActorCriticPolicy`` with two optimisers, as vanilla policy
    gradient takes one step on the policy and then fits the baseline separately.

    - ``optimizer`` holds the actor's parameters (policy network, action head, log std and the
      features extractor when it is shared);
    - ``critic_optimizer`` holds the baseline's (value network, value head and its own features
      extractor); it is ``None`` without a baseline.

    Differences from ``ActorCriticPolicy``: ``share_features_extractor`` defaults to ``False`` (so the
    baseline regression never moves the actor's features), and ``use_baseline=False`` replaces the
    value head by a constant zero with no parameters (plain REINFORCE).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule of the actor (the critic's is set by the algorithm)
    :param use_baseline: Whether to learn a state-value baseline V(s)
    :param share_features_extractor: Whether actor and critic share the features extractor
    :param kwargs: Every other keyword argument of ``ActorCriticPolicy``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        use_baseline: bool = True,
        share_features_extractor: bool = False,
        **kwargs: Any,
    ):
        self.use_baseline = use_baseline
        super().__init__(
            observation_space, action_space, lr_schedule, *args, share_features_extractor=share_features_extractor, **kwargs
        )  # type: ignore[misc]  # args hold no share_features_extractor

    def _build_mlp_extractor(self) -> None:
        if not self.use_baseline:
            self.net_arch = actor_only_net_arch(self.net_arch)  # no value layers at all
        super()._build_mlp_extractor()

    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the baseline regression."""
        if not self.use_baseline:
            return []
        modules = [self.mlp_extractor.value_net, self.value_net]
        if not self.share_features_extractor:
            modules.append(self.vf_features_extractor)
        return [p for module in modules for p in module.parameters()]

    def actor_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the policy-gradient step (everything but the critic's)."""
        critic_ids = {id(p) for p in self.critic_parameters()}
        return [p for p in self.parameters() if id(p) not in critic_ids]

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if not self.use_baseline:
            remove_critic(self)
        # Replace SB3's single optimiser by one for the actor and one for the critic.
        # The critic's learning rate is set by VPG before every update.
        self.optimizer = self.optimizer_class(self.actor_parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.critic_optimizer = (
            self.optimizer_class(self.critic_parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
            if self.use_baseline
            else None
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["use_baseline"] = self.use_baseline
        return data


class VPGCnnPolicy(VPGPolicy):
    """
    :class:`VPGPolicy` with SB3's ``NatureCNN`` features extractor, for image observations.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule of the actor
    :param kwargs: Every other keyword argument of :class:`VPGPolicy`
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


class VPGMultiInputPolicy(VPGPolicy):
    """
    :class:`VPGPolicy` with SB3's ``CombinedExtractor``, for ``Dict`` observations.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule of the actor
    :param kwargs: Every other keyword argument of :class:`VPGPolicy`
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


MlpPolicy = VPGPolicy
CnnPolicy = VPGCnnPolicy
MultiInputPolicy = VPGMultiInputPolicy
