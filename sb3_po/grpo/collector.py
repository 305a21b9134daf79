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
from sb3_po.grpo.buffers import Episode, GroupRolloutBuffer

START_STATES = ("reset", "visited")


class VisitedStates:
    """
    Where groups start with ``start_states="visited"``: a pool of states visited in earlier rollouts.

    :param fraction: The probability that a group starts from a visited state (else from a reset)
    :param capture_prob: The probability that a running member's state joins the pool at a step
    :param pool: The pool (a bounded deque, saved with the model)
    """

    def __init__(self, fraction: float, capture_prob: float, pool: deque):
        self.fraction, self.capture_prob, self.pool = fraction, capture_prob, pool

    def draw(self) -> Any:
        """A start state from the pool, or None (a new reset state)."""
        if self.pool and np.random.random() < self.fraction:
            return self.pool[np.random.randint(len(self.pool))]
        return None

    def capture(self, states: VecEnvStates, running: np.ndarray) -> None:
        """Each slot of ``running`` joins the pool with probability ``capture_prob``."""
        chosen = running[np.random.random(len(running)) < self.capture_prob]
        for slot in chosen:
            self.pool.append(states.get_state(int(slot)))


class GroupRolloutCollector:
    """
    Collects ``n_groups`` groups of ``group_size`` whole episodes into a :class:`GroupRolloutBuffer`.

    :param group_size: G, the members of a group
    :param visited: Where groups also start from visited states (``start_states="visited"``), else None
    """

    def __init__(self, group_size: int, visited: VisitedStates | None = None):
        self.group_size = group_size
        self.visited = visited

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
        starts = [self.visited.draw() if self.visited is not None else None for _ in range(n_groups)]
        queue = deque(group for group in range(n_groups) for _ in range(self.group_size))
        slot_group = np.full(env.num_envs, -1)  # the group of the member running in each slot; -1: idle
        slot_start = np.zeros(env.num_envs, dtype=int)  # the buffer row where that member's episode began
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
                    set_rows(model._last_obs, slots, states.restore(slots, starts[group]))
            n_taken = len(taken)
            slot_group[free[:n_taken]] = taken
            slot_start[free[:n_taken]] = buffer.pos
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
                return False
            model._update_info_buffer(infos, dones)

            buffer.add(model._last_obs, actions, log_probs.cpu().numpy(), rewards)
            if self.visited is not None:
                self.visited.capture(states, np.flatnonzero((slot_group >= 0) & ~dones))
            model._last_obs = new_obs
            if dones.any():
                for slot in np.flatnonzero((slot_group >= 0) & dones):
                    buffer.add_episode(Episode(int(slot_group[slot]), int(slot), int(slot_start[slot]), buffer.pos))
                    n_running -= 1
                slot_group[dones] = -1
                if queue:
                    n_running += assign(np.flatnonzero(slot_group < 0))

        buffer.compute_advantages()
        model._rollout_steps, model._rollout_idle_steps = n_steps * env.num_envs, idle_steps
        callback.update_locals(dict(self=model, env=env, callback=callback, rollout_buffer=buffer, n_steps=n_steps))
        callback.on_rollout_end()
        return True
