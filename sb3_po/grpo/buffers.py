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
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.utils import get_device

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


class StepStorage:
    """
    The steps of all env slots as SB3 stores them, one row per VecEnv step (observations acted on, actions, their
    log-probabilities, raw rewards), in arrays that double when a rollout needs more rows.

    :param observation_space: Observation space
    :param action_space: Action space
    :param n_envs: Number of env slots
    :param initial_rows: Rows allocated at first
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, n_envs: int, initial_rows: int = 256):
        self.observation_space, self.action_space, self.n_envs = observation_space, action_space, n_envs
        self.obs_shape = get_obs_shape(observation_space)
        self.action_dim = get_action_dim(action_space)
        self.rows = initial_rows
        self.pos = 0
        self.arrays = self._allocate(initial_rows)

    def _allocate(self, rows: int) -> dict[str, Any]:
        def array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.zeros((rows, self.n_envs, *shape), dtype=dtype)

        observations: Any
        if isinstance(self.observation_space, spaces.Dict) and isinstance(self.obs_shape, dict):
            observations = {key: array(shape, self.observation_space[key].dtype) for key, shape in self.obs_shape.items()}
        else:
            assert isinstance(self.obs_shape, tuple)
            observations = array(self.obs_shape, self.observation_space.dtype)
        return dict(
            observations=observations,
            actions=array((self.action_dim,), self.action_space.dtype),
            log_probs=array((), np.float32),
            rewards=array((), np.float64),
        )

    def _grow(self) -> None:
        bigger = self._allocate(2 * self.rows)
        for name, old in self.arrays.items():
            if isinstance(old, dict):
                for key in old:
                    bigger[name][key][: self.rows] = old[key]
            else:
                bigger[name][: self.rows] = old
        self.arrays = bigger
        self.rows *= 2

    def add(self, obs: Any, actions: np.ndarray, log_probs: np.ndarray, rewards: np.ndarray) -> None:
        """One VecEnv step of every slot."""
        if self.pos == self.rows:
            self._grow()
        steps = self.arrays
        if isinstance(obs, dict):
            for key, value in obs.items():
                steps["observations"][key][self.pos] = value
        else:
            assert isinstance(self.obs_shape, tuple)
            steps["observations"][self.pos] = np.reshape(obs, (self.n_envs, *self.obs_shape))  # Discrete: (n_envs,)
        steps["actions"][self.pos] = actions.reshape(self.n_envs, self.action_dim)  # Discrete: (n_envs,)
        steps["log_probs"][self.pos] = log_probs
        steps["rewards"][self.pos] = rewards
        self.pos += 1

    def rewards(self, episode: Episode) -> np.ndarray:
        """The rewards of one episode's steps."""
        return self.arrays["rewards"][episode.start : episode.stop, episode.slot]


class GroupRolloutBuffer:
    """
    Rollout buffer of GRPO: whole episodes, in groups that share a start state.

    Steps are added for all env slots at once (:meth:`add`, one row per VecEnv step, into a :class:`StepStorage`);
    :meth:`add_episode` records which rows of which slot form a member episode of which group;
    :meth:`compute_advantages` flattens the episodes, group by group, and computes each step's group advantage (with
    the ``advantage_estimator``) and its weight in the loss (``loss_type``). It is not an SB3 ``BaseBuffer``: its
    rollouts are whole episodes of any length, not ``buffer_size`` steps per env.

    :param observation_space: Observation space
    :param action_space: Action space
    :param advantage_estimator: The group advantage estimator (:mod:`sb3_po.grpo.advantages`)
    :param branch_estimator: The estimator of branch groups (episodes with ``credit``): the vine's advantage of a
        branch's return relative to the other branches from the same state (GRPO builds it from its own ``gamma``,
        ``advantage``, ``scale_rewards`` and ``softmax_temperature``); default: outcome supervision with the
        ``advantage_estimator``'s gamma and scale_rewards
    :param loss_type: ``"step"`` (mean over all steps), ``"episode"`` (the paper's per-episode mean, then mean
        over episodes) or ``"dr_grpo"`` (sum over steps divided by episodes x ``loss_normalizer``)
    :param loss_normalizer: Dr. GRPO's constant episode length (with ``loss_type="dr_grpo"`` only)
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
        check_choice("GRPO", "loss_type", loss_type, LOSS_TYPES)
        if loss_normalizer is not None and loss_type != "dr_grpo":
            raise ValueError(
                f"GRPO: loss_normalizer={loss_normalizer!r} is used by loss_type='dr_grpo'; loss_type={loss_type!r} "
                "would ignore it"
            )
        self.observation_space, self.action_space = observation_space, action_space
        self.device = get_device(device)
        self.n_envs = n_envs
        self.advantage_estimator = advantage_estimator
        if branch_estimator is None:
            branch_estimator = OutcomeAdvantage(advantage_estimator.gamma, advantage_estimator.scale_rewards)
        self.branch_estimator = branch_estimator
        self.loss_type = loss_type
        self.loss_normalizer = loss_normalizer
        self.storage = StepStorage(observation_space, action_space, n_envs, initial_rows)
        self.reset()

    @property
    def pos(self) -> int:
        """Rows (VecEnv steps) stored in this rollout."""
        return self.storage.pos

    def reset(self) -> None:
        self.storage.pos = 0
        self.groups: list[list[Episode]] = []
        self.episode_returns = np.zeros((0, 0))
        self.branch_returns = np.zeros((0, 0))
        self.episode_lengths = np.zeros(0, dtype=int)
        self.n_samples = 0
        self.full = False

    def add(self, obs: Any, actions: np.ndarray, log_probs: np.ndarray, rewards: np.ndarray) -> None:
        """One VecEnv step of every slot: the observations acted on, the actions, their log-probabilities, raw rewards."""
        self.storage.add(obs, actions, log_probs, rewards)

    def add_episode(self, episode: Episode) -> None:
        """A member episode has finished: its steps are rows ``start`` to ``stop - 1`` of its slot."""
        while len(self.groups) <= episode.group:
            self.groups.append([])
        self.groups[episode.group].append(episode)

    def has_signal(self, group: int) -> bool:
        """Whether the group's advantages under the estimator in use are not all zero (it carries a gradient)."""
        return self.advantage_estimator.has_signal([self.storage.rewards(ep) for ep in self.groups[group]])

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
        steps = self.storage.arrays
        rewards = steps["rewards"][rows, slots]
        lengths = np.array([ep.length for ep in episodes])
        per_member = np.split(rewards, np.cumsum(lengths)[:-1])
        trunk_rewards: list[list[np.ndarray]] = []
        branch_rewards: list[list[np.ndarray]] = []
        first = 0
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

    def get(self, n_minibatches: int = 1) -> Generator[GroupRolloutBufferSamples, None, None]:
        """The rollout in ``n_minibatches`` random minibatches of (nearly) equal size."""
        assert self.full, "compute_advantages() first"
        for batch_indices in minibatch_indices(self.n_samples, n_minibatches=min(n_minibatches, self.n_samples)):
            yield self._get_samples(batch_indices)

    def all_samples(self) -> GroupRolloutBufferSamples:
        """The whole rollout as one batch, in buffer order."""
        return self._get_samples(np.arange(self.n_samples))

    def to_torch(self, array: np.ndarray) -> th.Tensor:
        return th.tensor(array, device=self.device)  # a copy, as SB3's BaseBuffer.to_torch

    def _get_samples(self, batch_inds: np.ndarray) -> GroupRolloutBufferSamples:
        observations: th.Tensor | TensorDict
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
