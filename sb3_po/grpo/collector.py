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
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_po.common.vec_env_state import VecEnvStates, set_rows
from sb3_po.grpo.branching import Branching
from sb3_po.grpo.buffers import Episode, GroupRolloutBuffer
from sb3_po.grpo.start_states import ResetStates, StartStates


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
        self.group_size = group_size
        self.start_states = ResetStates() if start_states is None else start_states
        self.fresh_time_limit = fresh_time_limit
        self.resample_groups = resample_groups
        self.branching = branching
        self._trunk_steps: int | None = None  # member steps of whole episodes in the last rollout

    def collect(self, model: Any, env: VecEnv, callback: BaseCallback, buffer: GroupRolloutBuffer, n_groups: int) -> bool:
        """
        Run one rollout of ``model`` (a GRPO) on ``env``; False when a callback stopped training.

        What a step does is SB3's ``OnPolicyAlgorithm.collect_rollouts``: policy forward, clipped actions,
        ``env.step``, ``num_timesteps``, the callbacks (with PPO's locals) and the episode-info buffer.
        """
        assert model._last_obs is not None, "No previous observation was provided"
        policy = model.policy
        policy.set_training_mode(False)
        buffer.reset()
        if model.use_sde:
            policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        states = VecEnvStates(env)
        starts = [self.start_states.draw() for _ in range(n_groups)]
        queue = deque(group for group in range(n_groups) for _ in range(self.group_size))
        finished = [0] * n_groups  # members of each group that have finished
        size = [self.group_size] * n_groups  # members of each group
        seeds: list[int | None] = [None] * n_groups  # common random numbers of a branch group
        branch_of = [False] * n_groups  # whether a group is a branch group
        resamples_left, discarded = self.resample_groups, 0
        slot_group = np.full(env.num_envs, -1)  # the group of the member running in each slot; -1: idle
        slot_start = np.zeros(env.num_envs, dtype=int)  # the buffer row where that member's episode began
        branching, n_branch_groups, trunk_steps = self.branching, 0, 0
        is_branch = np.zeros(env.num_envs, dtype=bool)  # whether the member in each slot is a branch
        if branching is not None:
            # the probability that a step of a whole episode is branched from: n_states per rollout on average
            expected = self._trunk_steps or n_groups * self.group_size * 100
            branch_prob = min(1.0, branching.n_states / expected)
        clip_box = isinstance(model.action_space, spaces.Box) and not policy.squash_output

        def assign(free: np.ndarray) -> int:
            """Start the next members of the queue in the free slots; how many started."""
            taken = [queue.popleft() for _ in range(min(len(free), len(queue)))]
            for group in dict.fromkeys(taken):  # each group once, in queue order
                slots = [int(s) for s, g in zip(free, taken, strict=False) if g == group]
                if starts[group] is None:
                    starts[group], obs = states.new_start(slots[0])
                    set_rows(model._last_obs, slots[:1], obs)
                    slots = slots[1:]
                if slots:
                    observations = states.restore(slots, starts[group], self.fresh_time_limit, seeds[group])
                    set_rows(model._last_obs, slots, observations)
            n_taken = len(taken)
            slot_group[free[:n_taken]] = taken
            slot_start[free[:n_taken]] = buffer.pos
            if branching is not None:
                is_branch[free[:n_taken]] = [branch_of[group] for group in taken]
            if model.use_sde:
                # gSDE's noise is a function of the state: without a new draw, members run one after another in a
                # slot would replay the same episode from the shared start (one draw per member, as members start)
                for _ in range(n_taken):
                    policy.reset_noise(env.num_envs)
            return n_taken

        n_running = assign(np.arange(env.num_envs))  # slots with a member; the others idle
        n_steps, idle_steps = 0, 0
        while n_running > 0:
            if model.use_sde and model.sde_sample_freq > 0 and n_steps % model.sde_sample_freq == 0:
                policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(model._last_obs, model.device)
                actions, values, log_probs = policy(obs_tensor)  # values: zeros, kept for callbacks' locals
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(model.action_space, spaces.Box):
                if clip_box:
                    clipped_actions = np.clip(actions, model.action_space.low, model.action_space.high)
                else:
                    clipped_actions = policy.unscale_action(clipped_actions)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            if model._vec_normalize_env is not None:
                rewards = model._vec_normalize_env.get_original_reward()  # episodes are scored by their raw return
            model.num_timesteps += env.num_envs
            idle_steps += env.num_envs - n_running
            n_steps += 1

            # a PPO callback's locals, with this rollout's objects
            callback.update_locals(
                dict(
                    self=model,
                    env=env,
                    callback=callback,
                    rollout_buffer=buffer,
                    n_rollout_steps=len(starts) * self.group_size,
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
                return False
            model._update_info_buffer(infos, dones)

            buffer.add(model._last_obs, actions, log_probs.cpu().numpy(), rewards)
            if self.start_states.observes:
                raw = new_obs if model._vec_normalize_env is None else model._vec_normalize_env.get_original_obs()
                self.start_states.observe(states, raw, np.flatnonzero((slot_group >= 0) & ~dones))
            model._last_obs = new_obs
            if branching is not None:
                trunks = np.flatnonzero((slot_group >= 0) & ~is_branch & ~dones)
                trunk_steps += int(((slot_group >= 0) & ~is_branch).sum())
                if n_branch_groups < branching.n_states and len(trunks):
                    for slot in trunks[np.random.random(len(trunks)) < branch_prob][: branching.n_states - n_branch_groups]:
                        # a branch group: K members from this state, each for at most H steps
                        starts.append(states.get_state(int(slot)))
                        size.append(branching.n_branches)
                        finished.append(0)
                        seeds.append(int(np.random.randint(2**31 - 1)) if branching.common_random_numbers else None)
                        branch_of.append(True)
                        queue.extend([len(starts) - 1] * branching.n_branches)
                        n_branch_groups += 1
                # a branch ends after H steps: the member is done (its env goes on until the slot is restored)
                dones = dones | (is_branch & (slot_group >= 0) & (buffer.pos - slot_start >= branching.horizon))
            if dones.any():
                for slot in np.flatnonzero((slot_group >= 0) & dones):
                    group = int(slot_group[slot])
                    credit = branching.credit if branching is not None and is_branch[slot] else None
                    buffer.add_episode(Episode(group, int(slot), int(slot_start[slot]), buffer.pos, credit))
                    n_running -= 1
                    finished[group] += 1
                    full = finished[group] == size[group] and not branch_of[group]
                    if full and resamples_left > 0 and not buffer.has_signal(group):
                        # dynamic sampling: the group has nothing to teach; a new one takes its place
                        buffer.discard_group(group)
                        resamples_left, discarded = resamples_left - 1, discarded + 1
                        starts.append(self.start_states.draw())
                        finished.append(0)
                        size.append(self.group_size)
                        seeds.append(None)
                        branch_of.append(False)
                        queue.extend([len(starts) - 1] * self.group_size)
                slot_group[dones] = -1
                if queue:
                    n_running += assign(np.flatnonzero(slot_group < 0))

        buffer.compute_advantages()
        self._trunk_steps = trunk_steps or None
        model._rollout_steps, model._rollout_idle_steps = n_steps * env.num_envs, idle_steps
        model._rollout_discarded_groups = discarded
        callback.update_locals(dict(self=model, env=env, callback=callback, rollout_buffer=buffer, n_steps=n_steps))
        callback.on_rollout_end()
        return True
