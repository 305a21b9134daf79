from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import TensorDict

from sb3_po.grpo.advantages import discounted_return, group_advantages, process_advantages

LOSS_TYPES = ("step", "episode", "dr_grpo")
SUPERVISIONS = ("outcome", "process")


class GroupRolloutBufferSamples(NamedTuple):
    observations: th.Tensor | TensorDict
    actions: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    weights: th.Tensor  # each step's weight in the loss: the weights of the whole rollout sum to its normaliser
    indices: np.ndarray  # positions in the flat rollout, to look up per-sample data kept elsewhere


class GroupRolloutBuffer(RolloutBuffer):
    """
    Rollout buffer of GRPO: whole episodes, in groups that share a start state.

    Unlike SB3's fixed ``(n_steps, n_envs)`` buffer, a rollout holds ``n_groups * group_size`` complete
    episodes of any length; :meth:`finalize` flattens them and computes the group-relative advantages
    (:mod:`sb3_po.grpo.advantages`) and each step's weight in the loss.

    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gamma: Discount of the returns that score the episodes (1: the plain episode return)
    :param n_envs: Number of parallel environments
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gamma: float = 1.0,
        n_envs: int = 1,
    ):
        super().__init__(1, observation_space, action_space, device, gae_lambda=1.0, gamma=gamma, n_envs=n_envs)

    def reset(self) -> None:
        # episodes[g] lists the group's member episodes: dicts of per-step arrays
        self.groups: list[list[dict[str, Any]]] = []
        self.episode_returns = np.zeros((0, 0))
        self.n_samples = 0
        self.full = False
        self.generator_ready = False
        self.pos = 0

    def add_group(self, episodes: list[dict[str, Any]]) -> None:
        """
        :param episodes: the group's member episodes, each a dict with ``observations`` (array, or dict of
            arrays), ``actions``, ``log_probs`` and ``rewards``, one row per step
        """
        self.groups.append(episodes)

    def finalize(
        self,
        supervision: str = "outcome",
        advantage: str = "mean_std",
        scale_rewards: str = "group",
        temperature: float = 1.0,
        loss_type: str = "step",
        loss_normalizer: int | None = None,
    ) -> None:
        """Flatten the episodes and compute each step's advantage and loss weight."""
        episodes = [ep for group in self.groups for ep in group]
        # (n_groups, group_size) discounted returns of the member episodes from their start state
        self.episode_returns = np.array(
            [[discounted_return(ep["rewards"], self.gamma) for ep in group] for group in self.groups]
        )
        lengths = np.array([len(ep["rewards"]) for ep in episodes])
        if supervision == "outcome":
            per_episode = group_advantages(self.episode_returns, advantage, scale_rewards, temperature).reshape(-1)
            advantages = np.repeat(per_episode, lengths)
        else:
            all_rewards = np.concatenate([ep["rewards"] for ep in episodes])
            advantages = np.concatenate(
                [
                    a
                    for group in self.groups
                    for a in process_advantages([ep["rewards"] for ep in group], scale_rewards, all_rewards.std(), self.gamma)
                ]
            )
        # loss weights: "step" averages over all steps; "episode" over each episode then over episodes
        # (the paper's 1/G sum_i 1/|o_i| sum_t); "dr_grpo" divides the sum by a constant (Dr. GRPO)
        n_episodes = len(episodes)
        if loss_type == "step":
            weights = np.full(lengths.sum(), 1.0 / lengths.sum())
        elif loss_type == "episode":
            weights = np.repeat(1.0 / (n_episodes * lengths), lengths)
        else:
            assert loss_normalizer is not None, "loss_type='dr_grpo' needs loss_normalizer"
            weights = np.full(lengths.sum(), 1.0 / (n_episodes * loss_normalizer))

        first = episodes[0]["observations"]
        if isinstance(first, dict):
            self.observations = {k: np.concatenate([ep["observations"][k] for ep in episodes]) for k in first}
        else:
            self.observations = np.concatenate([ep["observations"] for ep in episodes])
        self.actions = np.concatenate([ep["actions"] for ep in episodes]).reshape(lengths.sum(), self.action_dim)
        self.log_probs = np.concatenate([ep["log_probs"] for ep in episodes]).astype(np.float32)
        self.rewards = np.concatenate([ep["rewards"] for ep in episodes]).astype(np.float32)
        self.advantages = advantages.astype(np.float32)
        self.weights = weights.astype(np.float32)
        self.episode_lengths = lengths
        self.n_samples = int(lengths.sum())
        self.full = True

    def get(  # type: ignore[override]
        self, n_minibatches: int = 1
    ) -> Generator[GroupRolloutBufferSamples, None, None]:
        """The rollout in ``n_minibatches`` random minibatches of (nearly) equal size."""
        assert self.full, "finalize() the rollout first"
        indices = np.random.permutation(self.n_samples)
        for batch_indices in np.array_split(indices, min(n_minibatches, self.n_samples)):
            yield self._get_samples(batch_indices)

    def all_samples(self) -> GroupRolloutBufferSamples:
        """The whole rollout as one batch, in buffer order."""
        return self._get_samples(np.arange(self.n_samples))

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: Any = None
    ) -> GroupRolloutBufferSamples:
        if isinstance(self.observations, dict):
            observations = {k: self.to_torch(v[batch_inds]) for k, v in self.observations.items()}
        else:
            observations = self.to_torch(self.observations[batch_inds])
        return GroupRolloutBufferSamples(
            observations=observations,
            actions=self.to_torch(self.actions[batch_inds].astype(np.float32, copy=False)),
            old_log_prob=self.to_torch(self.log_probs[batch_inds]),
            advantages=self.to_torch(self.advantages[batch_inds]),
            weights=self.to_torch(self.weights[batch_inds]),
            indices=batch_inds,
        )
