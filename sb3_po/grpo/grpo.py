from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize

from sb3_po.common.algorithm import SB3POAlgorithmMixin
from sb3_po.common.checks import check_finite_loss, check_int
from sb3_po.common.kl import approx_kl, index_distribution, policy_kl, snapshot
from sb3_po.common.policies import policy_actions
from sb3_po.common.vec_env_state import check_restorable, restorable_vec_env
from sb3_po.grpo.advantages import (
    GroupAdvantage,
    OutcomeAdvantage,
    make_group_advantage,
)
from sb3_po.grpo.branching import make_branching
from sb3_po.grpo.buffers import GroupRolloutBuffer
from sb3_po.grpo.collector import GroupRolloutCollector, Rollout
from sb3_po.grpo.kl_penalty import KLPenalty
from sb3_po.grpo.policies import CnnPolicy, GRPOPolicy, MlpPolicy, MultiInputPolicy
from sb3_po.grpo.start_states import StartStates, default_scale_rewards, default_setting, make_start_states

SelfGRPO = TypeVar("SelfGRPO", bound="GRPO")


class GRPO(SB3POAlgorithmMixin, OnPolicyAlgorithm):
    """
    Group Relative Policy Optimization (DeepSeekMath, Shao et al. 2024, https://arxiv.org/abs/2402.03300)
    for Gymnasium environments whose state can be restored.

    Each rollout opens ``n_groups`` groups. The members of a group are ``group_size`` (G) whole episodes
    that all start from the same state (drawn from the env's reset distribution, or with
    ``start_states="visited"`` from states visited in earlier rollouts) and then differ by their sampled
    actions and the env's own randomness. With DeepSeekMath's outcome supervision (``supervision="outcome"``) each
    member is scored by its return R_i, and the **group advantage** ``A_i = (R_i - mean(R)) / std(R)`` goes to
    every step of its episode. The default is a per-step group baseline (``supervision="step_mean"``, Group Policy
    Gradient): step t of member i gets its discounted reward-to-go ``G_t^i`` minus the mean ``G_t`` of the group's
    members still running at step t, divided by the group's std. With ``gamma=0.99``, 16 minibatches per epoch and
    4 groups of 16 per rollout this was the best setting across the benchmark's control envs (CartPole-v1 500 on 5
    of 5 seeds against 434 for outcome supervision with 2 groups, InvertedPendulum-v5 1000 on 3 of 3 against 222,
    Acrobot-v1 -83.4 against -89.2; see the README's ablation).

    What each estimator's expected gradient is (tested by enumeration): with ``gamma=1`` the policy gradient; with
    ``gamma < 1``, ``sum_t E[grad log pi(a_t|s_t) G_t]`` for the per-step estimators (the reward-to-go discounted
    from t, step t not weighted by ``gamma^t``, as in PPO and A2C) and the gradient of the discounted return for
    outcome supervision and branch scoring. ``step_mean``: ``E[1 - 1/n_t]`` times it (n_t: the members running at
    step t, the member included; ``1 - 1/G`` where the whole group runs). ``step_rloo``: unbiased, a positive multiple
    of it with every ``scale_rewards`` (the scale is taken from the other members). ``outcome`` with
    ``advantage="mean"`` (or ``scale_rewards="none"``): ``1 - 1/G`` times it; divided by the group's std (the
    default) it is DeepSeekMath's estimator, not a multiple of the gradient. ``process``: biased (the group's mean
    reward includes the member's own; ``1 - (T - t)/(G T)`` at step t for episodes of one length T, ``gamma=1``).

    Truncation: there is no critic, so a member cut by the env's time limit is scored by the rewards it collected,
    as if it had terminated (nothing is bootstrapped past the cut). Members of a group share the time budget (from a
    reset, or from a saved state with its elapsed steps, or all with a fresh one), so the comparisons inside a group
    stay like for like.

    No option is a silent no-op: a setting that the chosen configuration would ignore (``advantage`` with a per-step
    supervision, ``visited_*`` with ``start_states="reset"``, ``branch_*`` without branching, ``kl_estimator``
    without ``beta``...) is refused with an error naming the settings that use it.

    There is no critic. The policy maximises PPO's clipped **surrogate** with the
    **ratio** ``r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)``, minus ``beta`` times the **KL to a reference
    policy**, estimated per step by DeepSeekMath's ``k3 = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1`` (its value
    estimates KL(pi_theta || pi_ref); its expected gradient at pi_theta = pi_old is that of the forward
    KL(pi_ref || pi_theta)), or by ``ratio * (log pi_theta - log pi_ref)`` (``"k1"``: value and gradient of
    KL(pi_theta || pi_ref)), or exactly (see :func:`sb3_po.common.kl.policy_kl`).

    Environments: an env id (GRPO builds ``n_envs`` envs, by default one per member of a group, so that a
    whole group runs at once: one batched policy forward per step), a ``gym.Env``, a ``DummyVecEnv`` (its envs
    are made restorable in place) or any VecEnv whose envs are wrapped in
    :class:`sb3_po.common.env_state.RestorableEnv` (``make_vec_env(..., wrapper_class=RestorableEnv,
    vec_env_cls=SubprocVecEnv)``). An env that implements ``get_state``/``set_state`` is restored through them.
    ``num_timesteps`` counts every env step taken, including those of env slots that idle while the
    last members of a group finish.

    Budget: groups are never cut, so the last rollout may end past ``total_timesteps``. A rollout opens only as
    many groups as fit in the remaining budget at the previous rollout's env steps per group (at least one, at
    most ``n_groups``), so a learn() call ends at most about one group's env steps past its budget.

    Components, each owning and checking its settings: the group advantage estimators (:mod:`sb3_po.grpo.advantages`),
    the start-state strategies (:mod:`sb3_po.grpo.start_states`), branching (:mod:`sb3_po.grpo.branching`), the KL
    penalty (:mod:`sb3_po.grpo.kl_penalty`), the collector (:class:`~sb3_po.grpo.collector.GroupRolloutCollector`,
    whose record of the last rollout is ``model.last_rollout``) and the buffer
    (:class:`~sb3_po.grpo.buffers.GroupRolloutBuffer`).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy): actor only, no critic
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_envs: Number of envs GRPO builds when ``env`` is an env id (default: ``group_size``); refused with a
        VecEnv or a gym.Env (a VecEnv has its own)
    :param group_size: G, the number of episodes per group (>= 2)
    :param n_groups: Number of groups per rollout (>= 1)
    :param n_epochs: Number of passes over the rollout per update. None (default): 20 with ``start_states="frontier"``
        (few of a sparse task's groups have spread, and more passes take more from them), 10 otherwise
        (:func:`~sb3_po.grpo.start_states.default_setting`); stored as the value used
    :param n_minibatches: Number of minibatches the rollout's steps are split into in every epoch
    :param gamma: Discount of the returns and rewards-to-go that score the episodes' steps and the branches
        (1: the episode return)
    :param clip_range: epsilon of the clipped surrogate, float or schedule
    :param clip_range_upper: upper epsilon (DAPO's clip-higher); ``None`` uses ``clip_range``
    :param supervision: The group advantage estimator (:mod:`sb3_po.grpo.advantages`), by name or class:
        ``"step_mean"`` (the default; per-step group baselines, Group Policy Gradient: the member's reward-to-go
        minus the mean reward-to-go of the group's members running at the same step, the member included, so that
        step t's expected gradient is ``E[1 - 1/n_t]`` times the exact one), ``"step_rloo"`` (the same with the other
        members' mean, leave-one-out, and 0 where no other member runs: unbiased, also as scaled by
        ``scale_rewards``), ``"outcome"`` (the episode's return for all its steps),
        ``"process"`` (per-step rewards normalised over the group, advantage = sum of the normalised rewards to go;
        zero advantages where every step's reward is the same, as on CartPole or MountainCar), or a
        :class:`~sb3_po.grpo.advantages.GroupAdvantage` subclass
    :param supervision_kwargs: Further keyword arguments of the estimator's constructor (a key it does not take is
        refused; ``gamma``, ``scale_rewards``, ``advantage`` and ``softmax_temperature`` are GRPO's own keywords, passed
        to the estimators that take them)
    :param advantage: The group advantage of a return, for ``supervision="outcome"`` and branch scoring
        (refused otherwise): ``"mean_std"`` (default), ``"mean"`` (Dr. GRPO) or ``"softmax"``
        (``exp(b R_i) / sum_j exp(b R_j) - 1/G``)
    :param scale_rewards: What the advantages are divided by: the std of the ``"group"``, of the ``"batch"`` (the
        rollout's groups together: refused with ``n_groups=1`` and no branching, where it is the group), or
        ``"none"`` (outcome: with ``advantage="mean_std"`` only; ``step_rloo``: the std of the *other* members' /
        groups' advantages, which keeps it unbiased; ``process``: the std of the rewards). None (default):
        ``"group"``, except ``"none"`` with ``start_states="frontier"`` where the estimator scales (the built-in
        per-step estimators and ``process``; ``outcome`` with ``advantage="mean_std"``): a group whose members all
        miss a sparse reward differs only by small costs, which its std would blow up to the size of the reward
        (:func:`default_scale_rewards`)
    :param softmax_temperature: b of the softmax-relative advantage (``advantage="softmax"`` only)
    :param loss_type: ``"step"`` (mean over all steps), ``"episode"`` (the paper's per-episode mean, then mean
        over episodes) or ``"dr_grpo"`` (sum over steps divided by a constant: episodes x ``loss_normalizer``)
    :param loss_normalizer: Dr. GRPO's constant episode length (``loss_type="dr_grpo"`` only); default: the env's
        ``max_episode_steps``
    :param beta: Coefficient of the KL penalty to the reference policy (0: no reference policy is kept)
    :param kl_estimator: ``"k3"`` (default), ``"k1"`` or ``"exact"`` (with ``beta > 0`` only)
    :param ref_update_interval: 0 keeps the initial policy as reference; k copies the current policy into the
        reference every k rollouts (iterative GRPO; with ``beta > 0`` only)
    :param ent_coef: Entropy coefficient for the loss calculation. None (default): 0.01 with ``start_states="frontier"``
        (while a sparse task's groups all miss the reward they give no gradient toward it, and the bonus keeps the
        policy exploring until the archive gets there), 0 otherwise (:func:`~sb3_po.grpo.start_states.default_setting`);
        stored as the value used
    :param max_grad_norm: The maximum value for the gradient clipping
    :param start_states: ``"reset"`` (start states from the reset distribution), ``"visited"`` (also states
        visited in earlier rollouts, sampled uniformly, so that groups branch mid-episode) or ``"frontier"`` (also
        states from Go-Explore's archive, Ecoffet et al. 2021, for sparse rewards: the best state of each cell of a
        grid of ``frontier_cells`` cells per observation dimension over the range the observations were seen in,
        rarely seen and rarely chosen cells preferred)
    :param visited_fraction: With ``"visited"`` or ``"frontier"``: the fraction of groups that start from a saved state
    :param visited_capture_prob: With ``"visited"``: the probability that a step's state joins the pool
    :param visited_pool_size: With ``"visited"``: how many visited states are kept
    :param frontier_cells: With ``"frontier"``: cells per observation dimension (halved while the archive holds more
        than 10,000 cells)
    :param frontier_explore_steps: With ``"frontier"``: a group drawn from the archive first takes this many uniformly
        random actions from the archive's state in one env (Go-Explore's explore step: the archive sees the states
        they reach, and the group starts from the last one); they count as env steps and are not trained on. 0: the
        members start from the archive's state and explore with the policy
    :param frontier_backward: With ``"frontier"``: the share of the draws from the archive that take the backward
        step of Salimans and Chen (2018): a cell one step before the cells the best episodes passed through (each cell
        keeps the best return, from a reset, of an episode through it; "best": in the upper half between the cells'
        median and the best), so that the start moves back from the reward a step at a time as the policy learns
        to follow the path from there (:meth:`~sb3_po.grpo.start_states.FrontierArchive.backward_step`). The other
        draws use Go-Explore's count weights over every cell. 0: count weights only. The default, 0.5, with the
        frontier defaults of ``scale_rewards`` (``"none"``), ``ent_coef`` (0.01) and ``n_epochs`` (20) is the frontier
        configuration issue 32's sparse tasks chose
    :param fresh_time_limit: With ``"visited"``, ``"frontier"`` or branching: a group started from a saved state gets
        a fresh time budget (the Go-Explore setting;
        Monitor's episode statistics then count those episodes from the saved state); otherwise the state's elapsed
        steps come with it, and a state saved late in an episode leaves little time. None (default): True with
        ``"frontier"``, False otherwise
    :param branch_states: Branching rollouts (TRPO's vine, Schulman et al. 2015): states per rollout, chosen
        uniformly along the episodes, from which ``branch_count`` branches of at most ``branch_horizon`` steps start;
        a branch's return relative to the other branches of its state is the advantage of its first
        ``branch_credit`` actions (0: no branching). Branches are scored by outcome supervision with this model's
        ``gamma``, ``advantage``, ``scale_rewards``
        and ``softmax_temperature`` (:mod:`sb3_po.grpo.branching`: with ``advantage="mean"``, ``1 - 1/K`` times the
        gradient of the discounted return over the H steps)
    :param branch_count: K, branches per state (>= 2; with ``branch_states > 0`` only, as the next three)
    :param branch_horizon: H, the steps a branch runs at most
    :param branch_credit: How many of a branch's first actions get its advantage
    :param common_random_numbers: The branches of one state see the same env random numbers (the env's generator is
        seeded alike after the restore), so that they differ only by the policy's actions
    :param resample_groups: DAPO's dynamic sampling: up to this many extra groups per rollout replace groups whose
        advantages under the estimator in use are all zero (no gradient: for outcome supervision, equal returns;
        for the per-step estimators, equal rewards-to-go at every step); the replaced groups' env steps still count
    :param state_mode: How GRPO makes the envs it wraps restorable (an env id, a gym.Env, a DummyVecEnv's unwrapped
        envs; see :class:`~sb3_po.common.env_state.RestorableEnv`): ``"auto"`` (the env's own ``get_state`` /
        ``set_state``, else the built-in classic-control or MuJoCo state, else a deep copy verified at construction),
        ``"state"`` (the first two only), ``"copy"`` (a verified deep copy) or ``"seed"`` (a start state is a
        ``reset(seed=s)``; reset states only)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (``use_sde=True`` only)
    :param target_kl: Stop the epochs early when the approximate KL to pi_old exceeds ``1.5 * target_kl``
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    zoo_name: ClassVar[str | None] = "grpo"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: GRPOPolicy
    rollout_buffer: GroupRolloutBuffer  # type: ignore[assignment]  # whole episodes: not an SB3 RolloutBuffer

    def __init__(
        self,
        policy: str | type[GRPOPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_envs: int | None = None,
        group_size: int = 16,
        n_groups: int = 4,
        n_epochs: int | None = None,
        n_minibatches: int = 16,
        gamma: float = 0.99,
        clip_range: float | Schedule = 0.2,
        clip_range_upper: float | Schedule | None = None,
        supervision: str | type[GroupAdvantage] = "step_mean",
        supervision_kwargs: dict[str, Any] | None = None,
        advantage: str = "mean_std",
        scale_rewards: str | None = None,
        softmax_temperature: float = 1.0,
        loss_type: str = "step",
        loss_normalizer: int | None = None,
        beta: float = 0.0,
        kl_estimator: str = "k3",
        ref_update_interval: int = 0,
        ent_coef: float | None = None,
        max_grad_norm: float = 0.5,
        start_states: str = "reset",
        visited_fraction: float = 0.5,
        visited_capture_prob: float = 0.02,
        visited_pool_size: int = 1000,
        frontier_cells: int = 12,
        frontier_explore_steps: int = 0,
        frontier_backward: float = 0.5,
        fresh_time_limit: bool | None = None,
        resample_groups: int = 0,
        branch_states: int = 0,
        branch_count: int = 4,
        branch_horizon: int = 50,
        branch_credit: int = 1,
        common_random_numbers: bool = False,
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
        # an env id, a gym.Env or a DummyVecEnv's envs made restorable (n_envs and state_mode refused where unused);
        # by default one env per member of a group
        check_int("GRPO", "group_size", group_size, 2)
        env = restorable_vec_env(env, n_envs, state_mode, seed, default_n_envs=group_size, refuse_unused=True)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            # SB3's n_steps sizes a fixed rollout; GRPO's rollouts are whole episodes, so it holds the
            # number of member episodes per rollout (only for display: collect_rollouts ignores it)
            n_steps=group_size * n_groups,
            gamma=gamma,
            gae_lambda=1.0,
            # None: the frontier's bonus with start_states="frontier", else none (stored resolved, as SB3's float)
            ent_coef=default_setting("ent_coef", start_states) if ent_coef is None else ent_coef,
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
        self.n_epochs: int = default_setting("n_epochs", start_states) if n_epochs is None else n_epochs
        self.n_minibatches = n_minibatches
        self.clip_range = clip_range
        self.clip_range_upper = clip_range_upper
        self.supervision = supervision
        self.supervision_kwargs = {} if supervision_kwargs is None else dict(supervision_kwargs)
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
        self.frontier_cells = frontier_cells
        self.frontier_explore_steps = frontier_explore_steps
        self.frontier_backward = frontier_backward
        self.fresh_time_limit = fresh_time_limit
        self.resample_groups = resample_groups
        self.branch_states = branch_states
        self.branch_count = branch_count
        self.branch_horizon = branch_horizon
        self.branch_credit = branch_credit
        self.common_random_numbers = common_random_numbers
        self.state_mode = state_mode
        self.target_kl = target_kl
        self._n_rollouts = 0  # rollouts trained on, for ref_update_interval
        self._n_ref_updates = 0
        self._steps_per_group: float | None = None  # env steps per group in the last rollout, to size the last one
        self.last_rollout: Rollout | None = None  # what the last rollout did (GroupRolloutCollector.collect)
        if _init_setup_model:
            if self.env is not None:
                self._check_env(self.env)  # at construction; a loaded model is checked when it learns
            self._setup_model()

    # -- environments --------------------------------------------------------------------------------------

    def _check_env(self, env: VecEnv) -> None:
        check_restorable(env, mid_episode=self.start_states != "reset" or self.branch_states > 0)
        normalize = unwrap_vec_normalize(env)
        if normalize is not None and normalize.norm_reward:
            raise ValueError("GRPO scores whole episodes by their raw returns: use VecNormalize(norm_reward=False)")
        if self.loss_type == "dr_grpo" and self.loss_normalizer is None:
            spec = env.get_attr("spec", indices=[0])[0]
            if spec is None or spec.max_episode_steps is None:
                raise ValueError("loss_type='dr_grpo' needs loss_normalizer (the env has no max_episode_steps)")
            self.loss_normalizer = int(spec.max_episode_steps)
            if hasattr(self, "rollout_buffer"):
                self.rollout_buffer.loss_normalizer = self.loss_normalizer

    # -- model ---------------------------------------------------------------------------------------------

    def _setup_model(self) -> None:
        # OnPolicyAlgorithm._setup_model, with GRPO's buffer of whole episodes and a reference policy
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._check_training_settings()
        self.kl_penalty = KLPenalty(self.beta, self.kl_estimator, self.ref_update_interval)
        if not issubclass(self.policy_class, GRPOPolicy):
            raise TypeError(
                f"GRPO needs a critic-free policy (sb3_po.grpo.policies.GRPOPolicy), got {self.policy_class.__name__}. "
                "Use 'MlpPolicy', 'CnnPolicy' or 'MultiInputPolicy'."
            )
        branching = self.branch_states > 0
        advantage_estimator = make_group_advantage(
            self.supervision,
            self.supervision_kwargs,
            # branch scoring is outcome supervision with the model's settings: it uses advantage and the temperature
            used_elsewhere=("advantage", "temperature") if branching else (),
            gamma=self.gamma,
            scale_rewards=self.resolved_scale_rewards,
            advantage=self.advantage,
            temperature=self.softmax_temperature,
        )
        branch_estimator = None
        if branching:
            branch_estimator = OutcomeAdvantage(
                self.gamma, self.resolved_scale_rewards, self.advantage, self.softmax_temperature
            )
        self.rollout_buffer = GroupRolloutBuffer(
            self.observation_space,
            self.action_space,
            advantage_estimator,
            branch_estimator,
            loss_type=self.loss_type,
            loss_normalizer=self.loss_normalizer,
            device=self.device,
            n_envs=self.n_envs,
        )
        self.policy = self.policy_class(
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        ).to(self.device)
        self.ref_policy: GRPOPolicy | None = None
        if self.kl_penalty.active:
            self.ref_policy = self.policy_class(
                self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
            ).to(self.device)
            self.ref_policy.load_state_dict(self.policy.state_dict())
            self.ref_policy.set_training_mode(False)
            self.ref_policy.requires_grad_(False)
        self.clip_range = FloatSchedule(self.clip_range)
        self.clip_range_upper = None if self.clip_range_upper is None else FloatSchedule(self.clip_range_upper)
        # the pool of visited start states and the frontier archive are saved with the model (a loaded model goes on
        # with them)
        self.start_state_strategy: StartStates = make_start_states(
            self.start_states,
            self.observation_space,
            self.visited_fraction,
            self.visited_capture_prob,
            self.visited_pool_size,
            self.frontier_cells,
            self.frontier_explore_steps,
            self.frontier_backward,
            pool=getattr(self, "_visited_states", ()),
            archive=getattr(self, "_frontier_archive", None),
        )
        self._visited_states = getattr(self.start_state_strategy, "pool", None)
        self._frontier_archive = getattr(self.start_state_strategy, "archive", None)
        self.collector = GroupRolloutCollector(
            self.group_size,
            self.start_state_strategy,
            fresh_time_limit=self.start_states == "frontier" if self.fresh_time_limit is None else self.fresh_time_limit,
            resample_groups=self.resample_groups,
            branching=make_branching(
                self.branch_states, self.branch_count, self.branch_horizon, self.branch_credit, self.common_random_numbers
            ),
        )

    def _check_training_settings(self) -> None:
        """The update's own settings (each component checks its own: estimators, start states, branching, buffer)."""
        for name, minimum in (("n_groups", 1), ("n_epochs", 1), ("n_minibatches", 1)):
            check_int("GRPO", name, getattr(self, name), minimum)
        if not 0 < self.gamma <= 1:
            raise ValueError(f"GRPO: gamma must be in (0, 1], got {self.gamma!r}")
        # the clipping interval [1 - clip_range, 1 + clip_range_upper] must be in order and keep ratios positive
        clip_range, clip_range_upper = self.clip_range, self.clip_range_upper
        if isinstance(clip_range, (int, float)) and not 0 < clip_range < 1:
            raise ValueError(f"GRPO: clip_range must be in (0, 1) so that 0 < 1 - clip_range < 1, got {clip_range!r}")
        if isinstance(clip_range_upper, (int, float)) and not clip_range_upper > 0:
            raise ValueError(
                f"GRPO: clip_range_upper must be > 0 (the interval's upper end is 1 + it), got {clip_range_upper!r}"
            )
        if (
            self.resolved_scale_rewards == "batch"
            and self.n_groups == 1
            and self.branch_states == 0
            and isinstance(self.supervision, str)
        ):
            # the built-in estimators' batch is the rollout's groups together: with one group it is that group
            raise ValueError(
                "GRPO: scale_rewards='batch' is used by rollouts of several groups (n_groups > 1, or branch groups: "
                "branch_states > 0); with n_groups=1 the batch is the one group, which scale_rewards='group' scales by "
                "(step_rloo: no other group to take a scale from, as 'none')"
            )
        if not self.use_sde and self.sde_sample_freq != -1:
            raise ValueError(
                f"GRPO: sde_sample_freq={self.sde_sample_freq!r} is used by gSDE (use_sde=True); use_sde=False would ignore it"
            )

    @property
    def resolved_scale_rewards(self) -> str:
        """``scale_rewards`` as used: the value given, or where None the default for the start states and estimator."""
        if self.scale_rewards is not None:
            return self.scale_rewards
        return default_scale_rewards(self.start_states, self.supervision, self.advantage)

    def _excluded_save_params(self) -> list[str]:
        # rebuilt by _setup_model; the last rollout's record holds observations of envs that are not saved
        return [*super()._excluded_save_params(), "collector", "start_state_strategy", "last_rollout", "kl_penalty"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "policy.optimizer"]
        if self.beta > 0:
            state_dicts.append("ref_policy")
        return state_dicts, []

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, *args: Any, **kwargs: Any):
        # a model loaded for prediction may hold any env, or none; learning needs restorable ones
        if self.env is None:
            raise ValueError(
                "GRPO has no env to learn on (a model loaded without one): pass it to load, "
                "GRPO.load(path, env=env_id_or_env), or call model.set_env(env) before learn()"
            )
        self._check_env(self.env)
        return super()._setup_learn(total_timesteps, callback, *args, **kwargs)

    def set_env(self, env: GymEnv | str, force_reset: bool = True) -> None:
        """
        SB3's ``set_env``, with the env made restorable as the constructor makes it: an env id (``n_envs`` envs), a
        ``gym.Env`` or a ``DummyVecEnv`` has its envs wrapped in ``RestorableEnv`` (with this model's ``state_mode``).
        """
        super().set_env(restorable_vec_env(env, self.n_envs, self.state_mode, self.seed), force_reset=force_reset)

    @classmethod
    def load(
        cls: type[SelfGRPO],
        path: Any,
        env: GymEnv | str | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfGRPO:
        """
        SB3's ``load``; ``env`` may be anything the constructor takes: an env id (built with the saved ``n_envs``
        and ``state_mode``), a ``gym.Env``, a ``DummyVecEnv`` (its envs made restorable) or a restorable VecEnv.
        """
        if env is not None:
            data = _saved_data(path)
            env = restorable_vec_env(env, data.get("n_envs") or 1, data.get("state_mode", "auto"), data.get("seed"))
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    # -- rollouts ------------------------------------------------------------------------------------------

    def _groups_for_rollout(self) -> int:
        """``n_groups``, or fewer for the last rollout: as many as the remaining budget needs (at least one)."""
        remaining = self._total_timesteps - self.num_timesteps
        if self._steps_per_group is None or remaining <= 0:
            return self.n_groups
        # rounded down: episodes lengthen as the policy learns, so the last rollout's steps per group underestimate
        return int(np.clip(remaining // self._steps_per_group, 1, self.n_groups))

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: GroupRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect complete groups of ``group_size`` episodes with :class:`~sb3_po.grpo.collector.GroupRolloutCollector`
        and compute their group advantages. Replaces ``OnPolicyAlgorithm.collect_rollouts`` whole: a rollout's
        length is whatever its episodes take (``n_rollout_steps`` is ignored), and it holds ``n_groups`` groups
        (fewer for the last rollout of ``learn``, see the class docstring).
        """
        assert self._last_obs is not None, "No previous observation was provided"
        n_groups = self._groups_for_rollout()
        rollout = self.collector.collect(self, env, callback, rollout_buffer, n_groups, self._last_obs)
        self._last_obs = rollout.last_obs
        if not rollout.completed:
            return False
        self.last_rollout = rollout
        self._steps_per_group = rollout.env_steps / n_groups
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
                ref_log_prob = ref_distribution.log_prob(policy_actions(everything.actions, self.action_space))
                pi_ref = snapshot(ref_distribution) if self.kl_estimator == "exact" else None

        pg_losses, kl_refs, entropies, clip_fractions, approx_kls = [], [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            for batch in buffer.get(self.n_minibatches):
                actions = policy_actions(batch.actions, self.action_space)
                distribution = self.policy.get_distribution(batch.observations)
                log_prob = distribution.log_prob(actions)
                with th.set_grad_enabled(self.ent_coef != 0):  # without an entropy bonus, entropy is only logged
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
                        ratio=ratio,  # the steps were drawn from pi_old, not pi_theta (k1 is weighted by it)
                    )
                    per_step_loss = per_step_loss + self.beta * kl_ref
                    kl_refs.append((batch.weights * kl_ref).sum().detach() / batch.weights.sum())
                entropy_term = -log_prob if entropy is None else entropy
                if self.ent_coef != 0:
                    per_step_loss = per_step_loss - self.ent_coef * entropy_term
                # sum_t w_t loss_t over the minibatch, scaled to estimate the sum over the whole rollout
                loss = (batch.weights * per_step_loss).sum() * (buffer.n_samples / len(batch.indices))

                with th.no_grad():
                    batch_kl = approx_kl(log_prob - batch.old_log_prob).item()
                approx_kls.append(batch_kl)
                pg_losses.append(-(batch.weights * surrogate).sum().detach() / batch.weights.sum())
                entropies.append(entropy_term.mean().detach())
                clip_fractions.append(((ratio < 1 - clip_low) | (ratio > 1 + clip_high)).float().mean().detach())
                if self.target_kl is not None and batch_kl > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {batch_kl:.2f}")
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
        if returns.size:
            self.logger.record("train/group_return_mean", float(returns.mean()))
            self.logger.record("train/group_return_std", float(returns.std(axis=1).mean()))
            self.logger.record("train/zero_spread_groups", float((np.ptp(returns, axis=1) == 0).mean()))
        self.logger.record("train/episodes", int(returns.size))
        self.logger.record("train/steps", buffer.n_samples)
        rollout = self.last_rollout
        if rollout is not None:
            self.logger.record("rollout/idle_fraction", rollout.idle_steps / max(rollout.env_steps, 1))
            if self.frontier_explore_steps:
                self.logger.record("rollout/explore_steps", rollout.explore_steps)
            self.logger.record("rollout/env_steps", rollout.env_steps)  # per update, idle and discarded steps included
            if self.resample_groups > 0:
                self.logger.record("rollout/discarded_groups", rollout.discarded_groups)
        self.start_state_strategy.record(self.logger)
        if self.branch_states > 0:
            branch_returns = buffer.branch_returns
            self.logger.record("rollout/branch_groups", len(branch_returns))
            if len(branch_returns):
                self.logger.record("train/branch_zero_spread_groups", float((np.ptp(branch_returns, axis=1) == 0).mean()))
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


def _saved_data(path: Any) -> dict[str, Any]:
    """The hyperparameters a saved model's file holds (a stream is read and put back where it was)."""
    position = path.tell() if hasattr(path, "tell") else None
    data, _, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
    if position is not None:
        path.seek(position)
    return data or {}
