from collections import deque
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import is_wrapped, make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecNormalize,
    VecTransposeImage,
    VecVideoRecorder,
)

from sb3_po.common.algorithm import SB3POAlgorithmMixin
from sb3_po.common.checks import check_finite_loss
from sb3_po.common.env_state import MODES, EnvStateError, RestorableEnv
from sb3_po.common.kl import KL_ESTIMATORS, index_distribution, policy_kl, snapshot
from sb3_po.grpo.advantages import ADVANTAGES, SCALE_REWARDS
from sb3_po.grpo.buffers import LOSS_TYPES, SUPERVISIONS, GroupRolloutBuffer
from sb3_po.grpo.policies import CnnPolicy, GRPOPolicy, MlpPolicy, MultiInputPolicy

SelfGRPO = TypeVar("SelfGRPO", bound="GRPO")

START_STATES = ("reset", "visited")
# VecEnv wrappers GRPO can see through: they either leave observations alone or transform them statelessly
_TRANSPARENT_VEC_WRAPPERS = (VecNormalize, VecTransposeImage, VecCheckNan, VecVideoRecorder)


class GRPO(SB3POAlgorithmMixin, OnPolicyAlgorithm):
    """
    Group Relative Policy Optimization (DeepSeekMath, Shao et al. 2024, https://arxiv.org/abs/2402.03300)
    for Gymnasium environments whose state can be restored.

    Each rollout opens ``n_groups`` groups. The members of a group are ``group_size`` (G) whole episodes
    that all start from the same state (drawn from the env's reset distribution, or with
    ``start_states="visited"`` from states visited in earlier rollouts) and then differ by their sampled
    actions and the env's own randomness. Each member is scored by its return R_i, and the **group
    advantage** ``A_i = (R_i - mean(R)) / std(R)`` goes to every step of its episode (outcome
    supervision). There is no critic. The policy maximises PPO's clipped **surrogate** with the
    **ratio** ``r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)``, minus ``beta`` times the **KL to a reference
    policy**, estimated per step by ``k3 = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1``.

    Environments: an env id, a ``gym.Env`` or a VecEnv (Dummy or Subproc, any ``n_envs``) whose envs are
    wrapped in :class:`sb3_po.common.env_state.RestorableEnv` (``make_vec_env(..., wrapper_class=RestorableEnv)``).
    ``num_timesteps`` counts every env step taken, including those of env slots that idle while the
    last members of a group finish.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy): actor only, no critic
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param group_size: G, the number of episodes per group (>= 2)
    :param n_groups: Number of groups per rollout (>= 1)
    :param n_epochs: Number of passes over the rollout per update
    :param n_minibatches: Number of minibatches the rollout's steps are split into in every epoch
    :param gamma: Discount of the returns that score the episodes (1: the episode return)
    :param clip_range: epsilon of the clipped surrogate, float or schedule
    :param clip_range_upper: upper epsilon (DAPO's clip-higher); ``None`` uses ``clip_range``
    :param supervision: ``"outcome"`` (episode return, the default) or ``"process"`` (per-step rewards
        normalised over the group, advantage = sum of the normalised rewards to go)
    :param advantage: ``"mean_std"`` (default), ``"mean"`` (Dr. GRPO) or ``"softmax"``
        (``exp(b R_i) / sum_j exp(b R_j) - 1/G``)
    :param scale_rewards: With ``"mean_std"``: the std of the ``"group"``, of the ``"batch"``, or ``"none"``
    :param softmax_temperature: b of the softmax-relative advantage
    :param loss_type: ``"step"`` (mean over all steps), ``"episode"`` (the paper's per-episode mean, then mean
        over episodes) or ``"dr_grpo"`` (sum over steps divided by a constant: episodes x ``loss_normalizer``)
    :param loss_normalizer: Dr. GRPO's constant episode length; default: the env's ``max_episode_steps``
    :param beta: Coefficient of the KL penalty to the reference policy (0: no reference policy is kept)
    :param kl_estimator: ``"k3"`` (default), ``"k1"`` or ``"exact"``
    :param ref_update_interval: 0 keeps the initial policy as reference; k copies the current policy into the
        reference every k rollouts (iterative GRPO)
    :param ent_coef: Entropy coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param start_states: ``"reset"`` (start states from the reset distribution) or ``"visited"`` (also states
        visited in earlier rollouts, so that groups branch mid-episode)
    :param visited_fraction: With ``"visited"``: the fraction of groups that start from a visited state
    :param visited_capture_prob: With ``"visited"``: the probability that a step's state joins the pool
    :param visited_pool_size: With ``"visited"``: how many visited states are kept
    :param state_mode: How an env given by id is made restorable (see ``RestorableEnv``):
        ``"auto"``, ``"state"``, ``"copy"`` or ``"seed"``
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
    :param target_kl: Stop the epochs early when the approximate KL to pi_old exceeds ``1.5 * target_kl``
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: GRPOPolicy
    rollout_buffer: GroupRolloutBuffer

    def __init__(
        self,
        policy: str | type[GRPOPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        group_size: int = 16,
        n_groups: int = 2,
        n_epochs: int = 10,
        n_minibatches: int = 4,
        gamma: float = 1.0,
        clip_range: float | Schedule = 0.2,
        clip_range_upper: float | Schedule | None = None,
        supervision: str = "outcome",
        advantage: str = "mean_std",
        scale_rewards: str = "group",
        softmax_temperature: float = 1.0,
        loss_type: str = "step",
        loss_normalizer: int | None = None,
        beta: float = 0.0,
        kl_estimator: str = "k3",
        ref_update_interval: int = 0,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        start_states: str = "reset",
        visited_fraction: float = 0.5,
        visited_capture_prob: float = 0.02,
        visited_pool_size: int = 1000,
        state_mode: str = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        _check_choice("supervision", supervision, SUPERVISIONS)
        _check_choice("advantage", advantage, ADVANTAGES)
        _check_choice("scale_rewards", scale_rewards, SCALE_REWARDS)
        _check_choice("loss_type", loss_type, LOSS_TYPES)
        _check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
        _check_choice("start_states", start_states, START_STATES)
        _check_choice("state_mode", state_mode, MODES)
        _check_int("group_size", group_size, 2)
        _check_int("n_groups", n_groups, 1)
        _check_int("n_epochs", n_epochs, 1)
        _check_int("n_minibatches", n_minibatches, 1)
        _check_int("ref_update_interval", ref_update_interval, 0)
        if not (np.isfinite(beta) and beta >= 0):
            raise ValueError(f"GRPO: beta must be a finite number >= 0, got {beta!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"GRPO: gamma must be in (0, 1], got {gamma!r}")
        # the clipping interval [1 - clip_range, 1 + clip_range_upper] must be in order and keep ratios positive
        if isinstance(clip_range, (int, float)) and not 0 < clip_range < 1:
            raise ValueError(f"GRPO: clip_range must be in (0, 1) so that 0 < 1 - clip_range < 1, got {clip_range!r}")
        if isinstance(clip_range_upper, (int, float)) and not clip_range_upper > 0:
            raise ValueError(
                f"GRPO: clip_range_upper must be > 0 (the interval's upper end is 1 + it), got {clip_range_upper!r}"
            )
        if not 0 <= visited_fraction <= 1 or not 0 <= visited_capture_prob <= 1:
            raise ValueError("GRPO: visited_fraction and visited_capture_prob must lie in [0, 1]")
        if softmax_temperature <= 0:
            raise ValueError(f"GRPO: softmax_temperature must be > 0, got {softmax_temperature!r}")

        env = self._restorable_env(env, state_mode, seed)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            # SB3's n_steps sizes a fixed rollout; GRPO's rollouts are whole episodes, so it holds the
            # number of member episodes per rollout (only for display: collect_rollouts ignores it)
            n_steps=group_size * n_groups,
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=0.0,  # no critic
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.group_size = group_size
        self.n_groups = n_groups
        self.n_epochs = n_epochs
        self.n_minibatches = n_minibatches
        self.clip_range = clip_range
        self.clip_range_upper = clip_range_upper
        self.supervision = supervision
        self.advantage = advantage
        self.scale_rewards = scale_rewards
        self.softmax_temperature = softmax_temperature
        self.loss_type = loss_type
        self.loss_normalizer = loss_normalizer
        self.beta = beta
        self.kl_estimator = kl_estimator
        self.ref_update_interval = ref_update_interval
        self.start_states = start_states
        self.visited_fraction = visited_fraction
        self.visited_capture_prob = visited_capture_prob
        self.visited_pool_size = visited_pool_size
        self.state_mode = state_mode
        self.target_kl = target_kl
        self._n_rollouts = 0  # rollouts trained on, for ref_update_interval
        self._n_ref_updates = 0
        if _init_setup_model:
            if self.env is not None:
                self._check_env(self.env)  # at construction; a loaded model is checked when it learns
            self._setup_model()

    # -- environments --------------------------------------------------------------------------------------

    @staticmethod
    def _restorable_env(env: GymEnv | str | None, state_mode: str, seed: int | None) -> GymEnv | None:
        """An env id or a gym.Env becomes a DummyVecEnv of RestorableEnv(Monitor(env)); a VecEnv is checked later."""
        wrapper_kwargs = dict(mode=state_mode, seed=seed)
        if isinstance(env, str):
            return make_vec_env(env, n_envs=1, seed=seed, wrapper_class=RestorableEnv, wrapper_kwargs=wrapper_kwargs)
        if isinstance(env, gym.Env):
            if not is_wrapped(env, RestorableEnv):
                env = RestorableEnv(env if is_wrapped(env, Monitor) else Monitor(env), **wrapper_kwargs)  # type: ignore[arg-type]
            return DummyVecEnv([lambda: env])  # type: ignore[list-item,return-value]
        return env

    def _check_env(self, env: VecEnv) -> None:
        if not all(env.env_is_wrapped(RestorableEnv)):
            raise EnvStateError(
                "GRPO needs envs whose state can be restored: wrap each env in sb3_po.common.env_state.RestorableEnv, "
                "e.g. make_vec_env(env_id, n_envs, wrapper_class=RestorableEnv, vec_env_cls=SubprocVecEnv), "
                "or pass the env id and let GRPO build it."
            )
        layer: VecEnv = env
        while isinstance(layer, VecEnvWrapper):
            if not isinstance(layer, _TRANSPARENT_VEC_WRAPPERS):
                raise EnvStateError(
                    f"GRPO cannot restore states through {type(layer).__name__}: a VecEnv wrapper with its own state "
                    "would not be restored with the env. Use the equivalent gymnasium wrapper inside each env instead."
                )
            if isinstance(layer, VecNormalize) and layer.norm_reward:
                raise ValueError("GRPO scores whole episodes by their raw returns: use VecNormalize(norm_reward=False)")
            layer = layer.venv
        if self.start_states == "visited" and not all(env.get_attr("can_restore_mid_episode")):
            raise EnvStateError(
                "start_states='visited' needs envs whose state can be restored mid-episode; in seed mode only reset "
                "states can be shared. Use start_states='reset' or state_mode='auto'/'state'/'copy'."
            )
        if self.loss_type == "dr_grpo" and self.loss_normalizer is None:
            spec = env.get_attr("spec", indices=[0])[0]
            if spec is None or spec.max_episode_steps is None:
                raise ValueError("loss_type='dr_grpo' needs loss_normalizer (the env has no max_episode_steps)")
            self.loss_normalizer = int(spec.max_episode_steps)

    def _vec_obs(self, obs: Any) -> Any:
        """What the VecEnv's wrappers would make of a batch of raw observations from the envs."""
        wrappers = []
        layer = self.env
        while isinstance(layer, VecEnvWrapper):
            wrappers.append(layer)
            layer = layer.venv
        for wrapper in reversed(wrappers):  # innermost first
            if isinstance(wrapper, VecNormalize):
                obs = wrapper.normalize_obs(obs)
            elif isinstance(wrapper, VecTransposeImage):
                obs = wrapper.transpose_observations(obs)
        return obs

    # -- model ---------------------------------------------------------------------------------------------

    def _setup_model(self) -> None:
        # OnPolicyAlgorithm._setup_model, with GRPO's buffer of whole episodes and a reference policy
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if not issubclass(self.policy_class, GRPOPolicy):
            raise TypeError(
                f"GRPO needs a critic-free policy (sb3_po.grpo.policies.GRPOPolicy), got {self.policy_class.__name__}. "
                "Use 'MlpPolicy', 'CnnPolicy' or 'MultiInputPolicy'."
            )
        self.rollout_buffer = GroupRolloutBuffer(
            self.observation_space, self.action_space, device=self.device, gamma=self.gamma, n_envs=self.n_envs
        )
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        ).to(self.device)
        self.ref_policy: GRPOPolicy | None = None
        if self.beta > 0:
            self.ref_policy = self.policy_class(  # type: ignore[assignment]
                self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
            ).to(self.device)
            self.ref_policy.load_state_dict(self.policy.state_dict())  # type: ignore[union-attr]
            self.ref_policy.set_training_mode(False)  # type: ignore[union-attr]
            self.ref_policy.requires_grad_(False)  # type: ignore[union-attr]
        self.clip_range = FloatSchedule(self.clip_range)
        self.clip_range_upper = None if self.clip_range_upper is None else FloatSchedule(self.clip_range_upper)
        # the pool of visited start states is saved with the model (a loaded model continues with it)
        self._visited_states: deque = deque(getattr(self, "_visited_states", ()), maxlen=self.visited_pool_size)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "policy.optimizer"]
        if self.beta > 0:
            state_dicts.append("ref_policy")
        return state_dicts, []

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, *args: Any, **kwargs: Any):  # type: ignore[override]
        # a model loaded for prediction may hold any env; learning needs restorable ones
        if self.env is not None:
            self._check_env(self.env)
        return super()._setup_learn(total_timesteps, callback, *args, **kwargs)

    # -- rollouts ------------------------------------------------------------------------------------------

    def _start_member(self, env: VecEnv, slot: int, start: dict[str, Any]) -> None:
        """Put env slot ``slot`` into the group's start state (drawing it if the group has none yet)."""
        if start["state"] is None:
            start["state"], obs = env.env_method("new_start_state", indices=[slot])[0]
        else:
            obs = env.env_method("set_state", start["state"], indices=[slot])[0]
        obs = self._vec_obs(_batch_of_one(obs))
        if isinstance(self._last_obs, dict):
            for key in self._last_obs:
                self._last_obs[key][slot] = obs[key][0]
        else:
            self._last_obs[slot] = obs[0]  # type: ignore[index]

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: GroupRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect ``n_groups`` complete groups of ``group_size`` episodes and compute their group advantages.

        Replaces ``OnPolicyAlgorithm.collect_rollouts`` whole: env slots take member episodes from a queue
        (each starts by restoring its group's start state), every slot steps with the policy until all
        groups are complete, and each finished episode is stored with its group. Slots with no member left
        keep stepping (a VecEnv steps all its envs), and those steps count in ``num_timesteps``.
        ``n_rollout_steps`` is ignored: the rollout's length is whatever the episodes take.
        """
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        starts = [{"state": None} for _ in range(self.n_groups)]
        if self.start_states == "visited":
            for start in starts:
                if self._visited_states and np.random.random() < self.visited_fraction:
                    start["state"] = self._visited_states[np.random.randint(len(self._visited_states))]
        members: list[list[dict[str, Any]]] = [[] for _ in range(self.n_groups)]
        queue = deque(group for group in range(self.n_groups) for _ in range(self.group_size))
        slots: list[dict[str, Any] | None] = [None] * env.num_envs
        is_dict_obs = isinstance(self._last_obs, dict)

        def assign(slot: int) -> None:
            group = queue.popleft()
            self._start_member(env, slot, starts[group])
            if self.use_sde:
                # gSDE's noise is a function of the state: without a new draw, members run one after another in
                # this slot would replay the same episode from the shared start
                self.policy.reset_noise(env.num_envs)
            slots[slot] = {"group": group, "observations": [], "actions": [], "log_probs": [], "rewards": []}

        for slot in range(env.num_envs):
            if queue:
                assign(slot)
        n_steps, idle_steps = 0, 0
        while any(member is not None for member in slots):
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = self.policy(obs_tensor)  # values: zeros, kept for callbacks' locals
            actions = actions.cpu().numpy()
            log_probs_np = log_probs.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            if self._vec_normalize_env is not None:
                rewards = self._vec_normalize_env.get_original_reward()  # episodes are scored by their raw return
            self.num_timesteps += env.num_envs
            idle_steps += sum(member is None for member in slots)
            n_steps += 1

            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)

            for slot, member in enumerate(slots):
                if member is None:
                    continue
                member["observations"].append(
                    {k: v[slot] for k, v in self._last_obs.items()} if is_dict_obs else self._last_obs[slot]  # type: ignore[union-attr,index]
                )
                member["actions"].append(actions[slot])
                member["log_probs"].append(log_probs_np[slot])
                member["rewards"].append(rewards[slot])
                if dones[slot]:
                    members[member["group"]].append(_episode_arrays(member, is_dict_obs))
                    slots[slot] = None
                elif self.start_states == "visited" and np.random.random() < self.visited_capture_prob:
                    self._visited_states.append(env.env_method("get_state", indices=[slot])[0])
            self._last_obs = new_obs  # type: ignore[assignment]
            for slot in range(env.num_envs):
                if slots[slot] is None and queue:
                    assign(slot)

        for group in members:
            rollout_buffer.add_group(group)
        rollout_buffer.finalize(
            self.supervision,
            self.advantage,
            self.scale_rewards,
            self.softmax_temperature,
            self.loss_type,
            self.loss_normalizer,
        )
        self._rollout_steps, self._rollout_idle_steps = n_steps * env.num_envs, idle_steps
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    # -- training ------------------------------------------------------------------------------------------

    def train(self) -> None:
        """
        ``n_epochs`` passes of minibatch gradient steps on the GRPO objective

            J(theta) = sum_t w_t [ surrogate_t - beta * KL_t(pi_theta || pi_ref) ]
            surrogate_t = min(ratio_t A_t, clip(ratio_t, 1 - eps_low, 1 + eps_high) A_t)

        where A_t is the group advantage of step t's episode and w_t its weight for ``loss_type``.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        progress = self._current_progress_remaining
        clip_low = self.clip_range(progress)  # type: ignore[operator]
        clip_high = clip_low if self.clip_range_upper is None else self.clip_range_upper(progress)  # type: ignore[operator]
        buffer = self.rollout_buffer

        # pi_ref on every step of the rollout, once (its parameters do not change during the update)
        ref_log_prob = pi_ref = None
        if self.ref_policy is not None:
            everything = buffer.all_samples()
            with th.no_grad():
                ref_distribution = self.ref_policy.get_distribution(everything.observations)
                ref_log_prob = ref_distribution.log_prob(self._actions(everything.actions))
                pi_ref = snapshot(ref_distribution) if self.kl_estimator == "exact" else None

        pg_losses, kl_refs, entropies, clip_fractions, approx_kls = [], [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            for batch in buffer.get(self.n_minibatches):
                actions = self._actions(batch.actions)
                distribution = self.policy.get_distribution(batch.observations)
                log_prob = distribution.log_prob(actions)
                entropy = distribution.entropy()

                # ratio r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t) and the clipped surrogate with the group advantage
                ratio = th.exp(log_prob - batch.old_log_prob)
                surrogate = th.min(ratio * batch.advantages, th.clamp(ratio, 1 - clip_low, 1 + clip_high) * batch.advantages)
                per_step_loss = -surrogate
                # kl_penalty: beta * KL(pi_theta || pi_ref), k3 by default
                if self.ref_policy is not None:
                    kl_ref = policy_kl(
                        self.kl_estimator,
                        distribution.distribution,
                        None if pi_ref is None else index_distribution(pi_ref, batch.indices),
                        log_prob,
                        ref_log_prob[batch.indices],  # type: ignore[index]
                    )
                    per_step_loss = per_step_loss + self.beta * kl_ref
                    kl_refs.append((batch.weights * kl_ref).sum().detach() / batch.weights.sum())
                entropy_term = -log_prob if entropy is None else entropy
                per_step_loss = per_step_loss - self.ent_coef * entropy_term
                # sum_t w_t loss_t over the minibatch, scaled to estimate the sum over the whole rollout
                loss = (batch.weights * per_step_loss).sum() * (buffer.n_samples / len(batch.indices))

                with th.no_grad():
                    log_ratio = log_prob - batch.old_log_prob
                    approx_kl = th.mean(th.exp(log_ratio) - 1 - log_ratio).item()
                approx_kls.append(approx_kl)
                pg_losses.append(-(batch.weights * surrogate).sum().detach() / batch.weights.sum())
                entropies.append(entropy_term.mean().detach())
                clip_fractions.append(((ratio < 1 - clip_low) | (ratio > 1 + clip_high)).float().mean().detach())
                if self.target_kl is not None and approx_kl > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl:.2f}")
                    break

                check_finite_loss("GRPO", loss, ratio_max=ratio.max())
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break

        # iterative GRPO: the reference follows the policy every ref_update_interval rollouts
        self._n_rollouts += 1
        if self.ref_policy is not None and self.ref_update_interval > 0 and self._n_rollouts % self.ref_update_interval == 0:
            self.ref_policy.load_state_dict(self.policy.state_dict())
            self._n_ref_updates += 1

        returns = buffer.episode_returns
        self.logger.record("train/group_return_mean", float(returns.mean()))
        self.logger.record("train/group_return_std", float(returns.std(axis=1).mean()))
        self.logger.record("train/zero_spread_groups", float((np.ptp(returns, axis=1) == 0).mean()))
        self.logger.record("train/episodes", int(returns.size))
        self.logger.record("train/steps", buffer.n_samples)
        self.logger.record("rollout/idle_fraction", self._rollout_idle_steps / max(self._rollout_steps, 1))
        self.logger.record("train/policy_gradient_loss", th.stack(pg_losses).mean().item())
        self.logger.record("train/entropy_loss", -th.stack(entropies).mean().item())
        self.logger.record("train/approx_kl", float(np.mean(approx_kls)))
        self.logger.record("train/clip_fraction", th.stack(clip_fractions).mean().item())
        self.logger.record("train/clip_range", clip_low)
        if kl_refs:
            self.logger.record("train/kl_ref", th.stack(kl_refs).mean().item())
            self.logger.record("train/ref_updates", self._n_ref_updates)
        self.logger.record("train/loss", loss.item())
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _actions(self, actions: th.Tensor) -> th.Tensor:
        return actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else actions

    def learn(
        self: SelfGRPO,
        total_timesteps: int | None = None,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "GRPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGRPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GRPO: {name} must be one of {choices}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"GRPO: {name} must be an integer >= {minimum}, got {value!r}")


def _batch_of_one(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def _episode_arrays(member: dict[str, Any], is_dict_obs: bool) -> dict[str, Any]:
    observations = member["observations"]
    return dict(
        observations={k: np.stack([o[k] for o in observations]) for k in observations[0]}
        if is_dict_obs
        else np.stack(observations),
        actions=np.stack(member["actions"]),
        log_probs=np.asarray(member["log_probs"], dtype=np.float32),
        rewards=np.asarray(member["rewards"], dtype=np.float64),
    )
