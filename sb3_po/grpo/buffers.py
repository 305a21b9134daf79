"""
GRPO's rollout buffer: the steps of all env slots as SB3 stores them (one row per VecEnv step), the member
episodes as typed records pointing into those rows, and the group advantages computed once per rollout.
"""

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.type_aliases import TensorDict

from sb3_po.common.checks import check_choice
from sb3_po.common.minibatches import minibatch_indices
from sb3_po.grpo.advantages import GroupAdvantage, OutcomeAdvantage

LOSS_TYPES = ("step", "episode", "dr_grpo")


@dataclass(frozen=True)
class Episode:
    """
    One member episode: it ran in env slot ``slot`` over the buffer's rows ``start`` to ``stop - 1``. A branch
    (TRPO's vine) has ``credit``: its whole return is scored, but only its first ``credit`` actions are trained on.
    """

    group: int
    slot: int
    start: int
    stop: int
    credit: int | None = None

    @property
    def length(self) -> int:
        return self.stop - self.start


class GroupRolloutBufferSamples(NamedTuple):
    observations: th.Tensor | TensorDict
    actions: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    weights: th.Tensor  # each step's weight in the loss: the weights of the whole rollout sum to its normaliser
    indices: np.ndarray  # positions in the flat rollout, to look up per-sample data kept elsewhere


class GroupRolloutBuffer(BaseBuffer):
    """
    Rollout buffer of GRPO: whole episodes, in groups that share a start state.

    Steps are added for all env slots at once (:meth:`add`, one row per VecEnv step, in storage that grows as
    the episodes take); :meth:`add_episode` records which rows of which slot form a member episode of which
    group; :meth:`compute_advantages` flattens the episodes, group by group, and computes each step's
    group advantage (with the ``advantage_estimator``) and its weight in the loss (``loss_type``).

    :param observation_space: Observation space
    :param action_space: Action space
    :param advantage_estimator: The group advantage estimator (:mod:`sb3_po.grpo.advantages`)
    :param branch_estimator: The estimator of branch groups (episodes with ``credit``): the vine's advantage of a
        branch's return relative to the other branches from the same state (GRPO builds it from its own ``gamma``,
        ``advantage``, ``scale_rewards`` and ``softmax_temperature``); default: outcome supervision with the
        ``advantage_estimator``'s gamma and scale_rewards
    :param loss_type: ``"step"`` (mean over all steps), ``"episode"`` (the paper's per-episode mean, then mean
        over episodes) or ``"dr_grpo"`` (sum over steps divided by episodes x ``loss_normalizer``)
    :param loss_normalizer: Dr. GRPO's constant episode length (needed with ``loss_type="dr_grpo"``)
    :param device: PyTorch device
    :param n_envs: Number of parallel environments (env slots)
    :param initial_rows: Rows allocated at first; the storage doubles when a rollout needs more
    """

    observations: np.ndarray | dict[str, np.ndarray]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        advantage_estimator: GroupAdvantage,
        branch_estimator: GroupAdvantage | None = None,
        loss_type: str = "step",
        loss_normalizer: int | None = None,
        device: th.device | str = "auto",
        n_envs: int = 1,
        initial_rows: int = 256,
    ):
        super().__init__(initial_rows, observation_space, action_space, device, n_envs=n_envs)
        check_choice(type(self).__name__, "loss_type", loss_type, LOSS_TYPES)
        self.advantage_estimator = advantage_estimator
        if branch_estimator is None:
            branch_estimator = OutcomeAdvantage(advantage_estimator.gamma, advantage_estimator.scale_rewards)
        self.branch_estimator = branch_estimator
        self.loss_type = loss_type
        self.loss_normalizer = loss_normalizer
        self._steps = self._allocate(initial_rows)
        self.reset()

    # -- storage, one row per VecEnv step ----------------------------------------------------------------------

    def _allocate(self, rows: int) -> dict[str, Any]:
        def array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.zeros((rows, self.n_envs, *shape), dtype=dtype)

        if isinstance(self.observation_space, spaces.Dict):
            observations: Any = {
                key: array(shape, self.observation_space[key].dtype)
                for key, shape in self.obs_shape.items()  # type: ignore[union-attr]
            }
        else:
            observations = array(self.obs_shape, self.observation_space.dtype)  # type: ignore[arg-type]
        return dict(
            observations=observations,
            actions=array((self.action_dim,), self.action_space.dtype),
            log_probs=array((), np.float32),
            rewards=array((), np.float64),
        )

    def _grow(self) -> None:
        bigger = self._allocate(2 * self.buffer_size)
        for name, old in self._steps.items():
            if isinstance(old, dict):
                for key in old:
                    bigger[name][key][: self.buffer_size] = old[key]
            else:
                bigger[name][: self.buffer_size] = old
        self._steps = bigger
        self.buffer_size *= 2

    def reset(self) -> None:
        self.groups: list[list[Episode]] = []
        self.episode_returns = np.zeros((0, 0))
        self.branch_returns = np.zeros((0, 0))
        self.episode_lengths = np.zeros(0, dtype=int)
        self.n_samples = 0
        super().reset()

    def add(self, obs: Any, actions: np.ndarray, log_probs: np.ndarray, rewards: np.ndarray) -> None:  # type: ignore[override]
        """One VecEnv step of every slot: the observations acted on, the actions, their log-probabilities, raw rewards."""
        if self.pos == self.buffer_size:
            self._grow()
        steps = self._steps
        if isinstance(obs, dict):
            for key, value in obs.items():
                steps["observations"][key][self.pos] = value
        else:
            steps["observations"][self.pos] = np.reshape(obs, (self.n_envs, *self.obs_shape))  # Discrete: (n_envs,)
        steps["actions"][self.pos] = actions.reshape(self.n_envs, self.action_dim)  # Discrete: (n_envs,)
        steps["log_probs"][self.pos] = log_probs
        steps["rewards"][self.pos] = rewards
        self.pos += 1

    def add_episode(self, episode: Episode) -> None:
        """A member episode has finished: its steps are rows ``start`` to ``stop - 1`` of its slot."""
        while len(self.groups) <= episode.group:
            self.groups.append([])
        self.groups[episode.group].append(episode)

    def has_signal(self, group: int) -> bool:
        """Whether the group's advantages under the estimator in use are not all zero (it carries a gradient)."""
        rewards = [self._steps["rewards"][ep.start : ep.stop, ep.slot] for ep in self.groups[group]]
        return self.advantage_estimator.has_signal(rewards)

    def discard_group(self, group: int) -> None:
        """Drop a group's episodes from the rollout (their steps stay counted by the algorithm)."""
        self.groups[group] = []

    # -- the rollout, flat --------------------------------------------------------------------------------------

    def _rows(self, episodes: list[Episode]) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) index arrays of the episodes' steps, episode after episode."""
        lengths = np.array([ep.length for ep in episodes])
        offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.arange(lengths.sum()) - offsets + np.repeat([ep.start for ep in episodes], lengths)
        return rows, np.repeat([ep.slot for ep in episodes], lengths)

    def compute_advantages(self) -> None:
        """
        Flatten the episodes (the groups of whole episodes, then the branch groups; each group's members in the
        order they finished) and compute each step's group advantage and loss weight.
        """
        groups = [group for group in self.groups if group]  # discarded groups are empty
        trunks = [group for group in groups if group[0].credit is None]
        branches = [group for group in groups if group[0].credit is not None]
        self.groups = trunks + branches
        episodes = [ep for group in self.groups for ep in group]
        rows, slots = self._rows(episodes)
        steps = self._steps
        rewards = steps["rewards"][rows, slots]
        lengths = np.array([ep.length for ep in episodes])
        per_member = np.split(rewards, np.cumsum(lengths)[:-1])
        trunk_rewards, branch_rewards, first = [], [], 0
        for group in self.groups:
            (branch_rewards if group[0].credit is not None else trunk_rewards).append(per_member[first : first + len(group)])
            first += len(group)
        parts = []
        if trunk_rewards:
            parts.append(self.advantage_estimator.estimate(trunk_rewards))
            self.episode_returns = self.advantage_estimator.returns(trunk_rewards)
        if branch_rewards:
            parts.append(self.branch_estimator.estimate(branch_rewards))
            self.branch_returns = self.branch_estimator.returns(branch_rewards)
        advantages = np.concatenate(parts)

        # a branch is trained on its first `credit` steps only
        kept = np.array([ep.length if ep.credit is None else min(ep.credit, ep.length) for ep in episodes])
        if (kept < lengths).any():
            keep = np.concatenate([np.arange(n) < k for n, k in zip(lengths, kept, strict=True)])
            rows, slots, rewards, advantages, lengths = rows[keep], slots[keep], rewards[keep], advantages[keep], kept

        # loss weights: "step" averages over all steps; "episode" over each episode then over episodes
        # (the paper's 1/G sum_i 1/|o_i| sum_t); "dr_grpo" divides the sum by a constant (Dr. GRPO)
        n_steps, n_episodes = int(lengths.sum()), len(episodes)
        if self.loss_type == "step":
            weights = np.full(n_steps, 1.0 / n_steps)
        elif self.loss_type == "episode":
            weights = np.repeat(1.0 / (n_episodes * lengths), lengths)
        else:
            assert self.loss_normalizer is not None, "loss_type='dr_grpo' needs loss_normalizer"
            weights = np.full(n_steps, 1.0 / (n_episodes * self.loss_normalizer))

        if isinstance(steps["observations"], dict):
            self.observations = {key: value[rows, slots] for key, value in steps["observations"].items()}
        else:
            self.observations = steps["observations"][rows, slots]
        self.actions = steps["actions"][rows, slots]
        self.log_probs = steps["log_probs"][rows, slots]
        self.rewards = rewards.astype(np.float32)
        self.advantages = advantages.astype(np.float32)
        self.weights = weights.astype(np.float32)
        self.episode_lengths = lengths
        self.n_samples = n_steps
        self.full = True

    def start_observations(self) -> np.ndarray | dict[str, np.ndarray]:
        """The first observation of every member episode of the groups of whole episodes (not the branches),
        ``(n_groups, G, *obs_shape)`` (a dict of such for Dict spaces)."""
        n_groups = len(self.episode_returns)
        firsts = np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]])[: sum(len(g) for g in self.groups[:n_groups])]
        shape = (n_groups, -1)
        if isinstance(self.observations, dict):
            return {key: value[firsts].reshape(*shape, *value.shape[1:]) for key, value in self.observations.items()}
        return self.observations[firsts].reshape(*shape, *self.observations.shape[1:])

    def get(  # type: ignore[override]
        self, n_minibatches: int = 1
    ) -> Generator[GroupRolloutBufferSamples, None, None]:
        """The rollout in ``n_minibatches`` random minibatches of (nearly) equal size."""
        assert self.full, "compute_advantages() first"
        for batch_indices in minibatch_indices(self.n_samples, n_minibatches=min(n_minibatches, self.n_samples)):
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
