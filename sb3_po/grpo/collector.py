"""
GRPO's rollout collector: runs the member episodes of a rollout's groups on a VecEnv's slots.

Members wait in a queue, group after group. A free slot takes the next member: it is put into its group's
start state (the first member of a group draws that state, the others restore it), and from then on every
VecEnv step is one batched policy forward for all slots. A finished member becomes an
:class:`~sb3_po.grpo.buffers.Episode` record in the buffer; its slot takes the next member, or idles (keeps
stepping, as a VecEnv steps all its envs) when the queue is empty. The rollout ends when every member has
finished. Per step, the Python work is a constant number of numpy calls on all slots at once; per-slot work
happens only when an episode starts or ends.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_po.common.checks import check_int
from sb3_po.common.vec_env_state import VecEnvStates, set_rows
from sb3_po.grpo.branching import Branching
from sb3_po.grpo.buffers import Episode, GroupRolloutBuffer
from sb3_po.grpo.start_states import NO_CELL, ResetStates, Start, StartStates


class GroupRolloutCollector:
    """
    Collects ``n_groups`` groups of ``group_size`` whole episodes into a :class:`GroupRolloutBuffer`.

    :param group_size: G, the members of a group
    :param start_states: Where groups start (:class:`StartStates`: reset states only)
    :param fresh_time_limit: A group started from a saved state gets a fresh time budget (and Monitor counts its
        members' episodes from there); otherwise the state's elapsed steps are restored with it
    :param resample_groups: DAPO's dynamic sampling: up to this many extra groups per rollout replace groups whose
        advantages under the estimator in use are all zero (no gradient); the replaced groups' steps still count
    :param branching: Branch groups from states along the episodes (:class:`Branching`), or None
    """

    def __init__(
        self,
        group_size: int,
        start_states: StartStates | None = None,
        fresh_time_limit: bool = False,
        resample_groups: int = 0,
        branching: Branching | None = None,
    ):
        check_int("GRPO", "group_size", group_size, 2)
        check_int("GRPO", "resample_groups", resample_groups, 0)
        start_states = ResetStates() if start_states is None else start_states
        if fresh_time_limit and isinstance(start_states, ResetStates) and branching is None:
            raise ValueError(
                "GRPO: fresh_time_limit=True is used by start_states='visited'/'frontier' and branch_states > 0 (groups "
                "restored from mid-episode states); from reset states it would do nothing"
            )
        self.group_size = group_size
        self.start_states = start_states
        self.fresh_time_limit = fresh_time_limit
        self.resample_groups = resample_groups
        self.branching = branching
        self._trunk_steps: int | None = None  # member steps of whole episodes in the last rollout

    def collect(
        self, model: Any, env: VecEnv, callback: BaseCallback, buffer: GroupRolloutBuffer, n_groups: int, last_obs: Any
    ) -> "Rollout":
        """
        Run one rollout of ``model`` (a GRPO) on ``env`` from the observations ``last_obs``; the returned record says
        whether a callback stopped training (``completed=False``).

        What a step does is SB3's ``OnPolicyAlgorithm.collect_rollouts``: policy forward, clipped actions,
        ``env.step``, ``model.num_timesteps``, the callbacks (with PPO's locals) and the episode-info buffer.
        """
        policy = model.policy
        policy.set_training_mode(False)
        buffer.reset()
        if model.use_sde:
            policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        run = _Run(self, model, env, buffer, last_obs, n_groups)
        n_steps = 0
        while run.n_running > 0:
            if model.use_sde and model.sde_sample_freq > 0 and n_steps % model.sde_sample_freq == 0:
                policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(run.obs, model.device)
                actions, values, log_probs = policy(obs_tensor)  # values: zeros, kept for callbacks' locals
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(model.action_space, spaces.Box):
                if run.clip_box:
                    clipped_actions = np.clip(actions, model.action_space.low, model.action_space.high)
                else:
                    clipped_actions = policy.unscale_action(clipped_actions)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            if model._vec_normalize_env is not None:
                rewards = model._vec_normalize_env.get_original_reward()  # episodes are scored by their raw return
            model.num_timesteps += env.num_envs
            run.idle_steps += env.num_envs - run.n_running
            n_steps += 1

            # a PPO callback's locals, with this rollout's objects
            callback.update_locals(
                dict(
                    self=model,
                    env=env,
                    callback=callback,
                    rollout_buffer=buffer,
                    n_rollout_steps=n_groups * self.group_size,
                    n_steps=n_steps,
                    obs_tensor=obs_tensor,
                    actions=actions,
                    values=values,
                    log_probs=log_probs,
                    clipped_actions=clipped_actions,
                    new_obs=new_obs,
                    rewards=rewards,
                    dones=dones,
                    infos=infos,
                )
            )
            if not callback.on_step():
                return run.record(n_steps, completed=False)
            model._update_info_buffer(infos, dones)

            buffer.add(run.obs, actions, log_probs.cpu().numpy(), rewards)
            if self.start_states.observes:
                raw = new_obs if model._vec_normalize_env is None else model._vec_normalize_env.get_original_obs()
                running = np.flatnonzero((run.slot_group >= 0) & ~dones)
                raw_rewards = np.asarray(rewards, dtype=np.float64)
                self.start_states.observe(run.states, raw, running, raw_rewards)
                self.start_states.finish(np.flatnonzero((run.slot_group >= 0) & dones), raw_rewards)
            run.obs = new_obs
            if self.branching is not None:
                dones = run.branch(dones)
            if dones.any():
                run.finish(dones)

        buffer.compute_advantages()
        self._trunk_steps = run.trunk_steps or None
        callback.update_locals(dict(self=model, env=env, callback=callback, rollout_buffer=buffer, n_steps=n_steps))
        callback.on_rollout_end()
        return run.record(n_steps, completed=True)


@dataclass
class Group:
    """One group of a rollout: its shared start state, its members, and how many have finished."""

    start: Any  # a saved state, or None until its first member draws a reset state
    size: int
    finished: int = 0
    seed: int | None = None  # common random numbers of a branch group
    branch: bool = False
    score: float = 0.0  # the return from a reset to the start state (where the start-state strategy knows it)
    length: int = 0  # the env steps from that reset
    explore_steps: int = 0  # random actions from the drawn state before the members start (then 0)
    cell: int = NO_CELL  # the start-state strategy's cell of the start state (NO_CELL: none known)

    @classmethod
    def drawn(cls, start: Start | None, size: int) -> "Group":
        """A group of ``size`` members from a drawn start state (None: a new reset state)."""
        if start is None:
            return cls(None, size)
        return cls(
            start.state, size, score=start.score, length=start.length, explore_steps=start.explore_steps, cell=start.cell
        )

    @property
    def full(self) -> bool:
        return self.finished == self.size


@dataclass(frozen=True)
class Rollout:
    """
    What a rollout did (:meth:`GroupRolloutCollector.collect`), for GRPO to log and to size the next rollout.

    :param completed: False when a callback stopped training during the rollout
    :param env_steps: Env steps taken (every slot's, idle and discarded groups' and the frontier's explore steps
        included)
    :param idle_steps: Env steps of slots without a member
    :param discarded_groups: Groups replaced by dynamic sampling
    :param n_groups: Groups of whole episodes asked for
    :param last_obs: The VecEnv's observations after the rollout's last step
    :param explore_steps: Env steps of the frontier's random explore steps (``frontier_explore_steps``)
    """

    completed: bool
    env_steps: int
    idle_steps: int
    discarded_groups: int
    n_groups: int
    last_obs: Any
    explore_steps: int = 0


class _Run:
    """One rollout in progress: the groups, the queue of members waiting for a slot, and what each slot runs."""

    def __init__(
        self, collector: GroupRolloutCollector, model: Any, env: VecEnv, buffer: GroupRolloutBuffer, obs: Any, n_groups: int
    ):
        self.collector, self.model, self.env, self.buffer = collector, model, env, buffer
        self.obs: Any = {k: v.copy() for k, v in obs.items()} if isinstance(obs, dict) else np.copy(obs)
        self.n_groups = n_groups
        self.states = VecEnvStates(env)
        group_size = collector.group_size
        self.groups = [Group.drawn(collector.start_states.draw(), group_size) for _ in range(n_groups)]
        self.queue = deque(group for group in range(n_groups) for _ in range(group_size))
        self.resamples_left, self.discarded = collector.resample_groups, 0
        self.slot_group = np.full(env.num_envs, -1)  # the group of the member running in each slot; -1: idle
        self.slot_start = np.zeros(env.num_envs, dtype=int)  # the buffer row where that member's episode began
        self.is_branch = np.zeros(env.num_envs, dtype=bool)  # whether the member in each slot is a branch
        self.n_branch_groups, self.trunk_steps, self.idle_steps, self.explore_steps = 0, 0, 0, 0
        branching = collector.branching
        if branching is not None:
            # the probability that a step of a whole episode is branched from: n_states per rollout on average
            expected = collector._trunk_steps or n_groups * group_size * 100
            self.branch_prob = min(1.0, branching.n_states / expected)
        self.clip_box = isinstance(model.action_space, spaces.Box) and not model.policy.squash_output
        self.n_running = self.assign(np.arange(env.num_envs))  # slots with a member; the others idle

    def assign(self, free: np.ndarray) -> int:
        """Start the next members of the queue in the free slots; how many started."""
        taken = [self.queue.popleft() for _ in range(min(len(free), len(self.queue)))]
        for g in dict.fromkeys(taken):  # each group once, in queue order
            group = self.groups[g]
            slots = [int(s) for s, t in zip(free, taken, strict=False) if t == g]
            if group.explore_steps:
                self.explore(slots[0], group)
            self.collector.start_states.begin(slots, group.score, group.length, group.cell)
            if group.start is None:
                group.start, obs = self.states.new_start(slots[0])
                set_rows(self.obs, slots[:1], obs)
                slots = slots[1:]
            if slots:
                observations = self.states.restore(slots, group.start, self.collector.fresh_time_limit, group.seed)
                set_rows(self.obs, slots, observations)
        n_taken = len(taken)
        self.slot_group[free[:n_taken]] = taken
        self.slot_start[free[:n_taken]] = self.buffer.pos
        if self.collector.branching is not None:
            self.is_branch[free[:n_taken]] = [self.groups[g].branch for g in taken]
        if self.model.use_sde:
            # gSDE's noise is a function of the state: without a new draw, members run one after another in a
            # slot would replay the same episode from the shared start (one draw per member, as members start)
            for _ in range(n_taken):
                self.model.policy.reset_noise(self.env.num_envs)
        return n_taken

    def explore(self, slot: int, group: Group) -> None:
        """
        Go-Explore's explore step: from the group's drawn state, ``group.explore_steps`` uniformly random actions in
        ``slot`` (through the env's own ``step``: the other slots do not move); the start-state strategy sees the
        states they reach, and the group starts from the last one (from the drawn state if the episode ended). The
        steps count in ``num_timesteps``; no member is trained on them.
        """
        strategy, states = self.collector.start_states, self.states
        states.restore([slot], group.start, self.collector.fresh_time_limit)
        strategy.begin([slot], group.score, group.length, group.cell)
        rewards = np.zeros(self.env.num_envs)
        ended = False
        for _ in range(group.explore_steps):
            action = self.env.action_space.sample()
            obs, reward, terminated, truncated, _ = self.env.env_method("step", action, indices=[slot])[0]
            self.model.num_timesteps += 1
            self.explore_steps += 1
            rewards[slot] = reward
            if terminated or truncated:
                ended = True
                strategy.finish(np.array([slot]), rewards)
                break
            strategy.observe(states, np.asarray(obs)[None].repeat(self.env.num_envs, axis=0), np.array([slot]), rewards)
        if not ended:
            group.start = states.get_state(slot)
            group.score, group.length = strategy.origin(slot)
            group.cell = strategy.cell(slot)
        group.explore_steps = 0

    def add_group(self, group: Group) -> None:
        self.groups.append(group)
        self.queue.extend([len(self.groups) - 1] * group.size)

    def branch(self, dones: np.ndarray) -> np.ndarray:
        """Open branch groups at states of running trunks; a branch that ran its H steps is done."""
        branching = self.collector.branching
        assert branching is not None
        running = self.slot_group >= 0
        trunks = np.flatnonzero(running & ~self.is_branch & ~dones)
        self.trunk_steps += int((running & ~self.is_branch).sum())
        if self.n_branch_groups < branching.n_states and len(trunks):
            chosen = trunks[np.random.random(len(trunks)) < self.branch_prob][: branching.n_states - self.n_branch_groups]
            for slot in chosen:
                # a branch group: K members from this state, each for at most H steps
                start = self.states.get_state(int(slot))
                seed = int(np.random.randint(2**31 - 1)) if branching.common_random_numbers else None
                score, length = self.collector.start_states.origin(int(slot))
                cell = self.collector.start_states.cell(int(slot))
                self.add_group(
                    Group(start, branching.n_branches, seed=seed, branch=True, score=score, length=length, cell=cell)
                )
                self.n_branch_groups += 1
        # a branch ends after H steps: the member is done (its env goes on until the slot is restored)
        return dones | (self.is_branch & running & (self.buffer.pos - self.slot_start >= branching.horizon))

    def finish(self, dones: np.ndarray) -> None:
        """Record the members that finished as episodes, resample groups without signal, and refill the slots."""
        collector, buffer = self.collector, self.buffer
        for slot in np.flatnonzero((self.slot_group >= 0) & dones):
            g = int(self.slot_group[slot])
            group = self.groups[g]
            credit = collector.branching.credit if collector.branching is not None and self.is_branch[slot] else None
            buffer.add_episode(Episode(g, int(slot), int(self.slot_start[slot]), buffer.pos, credit))
            self.n_running -= 1
            group.finished += 1
            if group.full and not group.branch and self.resamples_left > 0 and not buffer.has_signal(g):
                # dynamic sampling: the group has nothing to teach; a new one takes its place
                buffer.discard_group(g)
                self.resamples_left, self.discarded = self.resamples_left - 1, self.discarded + 1
                self.add_group(Group.drawn(collector.start_states.draw(), collector.group_size))
        self.slot_group[dones] = -1
        if self.queue:
            self.n_running += self.assign(np.flatnonzero(self.slot_group < 0))

    def record(self, n_steps: int, completed: bool) -> Rollout:
        env_steps = n_steps * self.env.num_envs + self.explore_steps  # the explore steps are env steps too
        return Rollout(completed, env_steps, self.idle_steps, self.discarded, self.n_groups, self.obs, self.explore_steps)
