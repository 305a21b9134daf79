import warnings
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, update_learning_rate
from torch.nn import functional as F

from sb3_po.common.algorithm import SB3POAlgorithmMixin
from sb3_po.common.buffers import MonteCarloRolloutBuffer
from sb3_po.common.checks import check_choice, check_finite_loss, check_int
from sb3_po.common.kl import approx_kl
from sb3_po.common.policies import actor_critic_parameters, policy_actions
from sb3_po.vpg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, VPGPolicy

SelfVPG = TypeVar("SelfVPG", bound="VPG")

BASELINES = ("value", "none")


class VPG(SB3POAlgorithmMixin, OnPolicyAlgorithm):
    """
    Vanilla Policy Gradient (REINFORCE with a learned state-value baseline), as in OpenAI Spinning Up.

    Each iteration collects ``n_steps * n_envs`` transitions with the current policy, estimates
    advantages with the rollout buffer's estimator (GAE(lambda) by default; any
    :mod:`sb3_po.common.buffers` class through ``rollout_buffer_class``), then

    1. takes ONE gradient step on the whole batch for the policy-gradient loss
       ``-mean_t[ log pi(a_t|s_t) * A_t ]`` (minus the entropy bonus), and
    2. fits the baseline V(s) by regression on the returns ``A_t + V(s_t)`` for ``n_critic_updates``
       full-batch steps with its own optimiser and learning rate.

    With ``baseline="none"`` there is no critic: V = 0 and the advantage is the discounted reward-to-go
    (plain REINFORCE; the Monte Carlo estimator is used unless ``rollout_buffer_class`` says otherwise).

    Policies: VPG's own (:class:`~sb3_po.vpg.policies.VPGPolicy`: ``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``),
    or any SB3 ``ActorCriticPolicy`` subclass, as A2C and PPO take them (e.g. a custom ``mlp_extractor`` written as in
    SB3's "Custom Network Architecture"). For the latter VPG finds the baseline's parameters itself, by what
    ``predict_values`` depends on (:func:`sb3_po.common.policies.actor_critic_parameters`): the value head, the value
    branch of the extractor, the critic's own features extractor. Parameters the value shares with the action
    distribution (``share_features_extractor=True`` with a features extractor that has parameters, or a shared trunk)
    are in both optimisers: the baseline's regression moves the shared features too, between policy-gradient steps
    (a warning says so; ``share_features_extractor=False`` keeps them apart). VPGPolicy instead leaves a shared
    extractor to the actor's optimiser. ``baseline="none"`` needs a VPGPolicy (it removes the value head).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or an ``ActorCriticPolicy``
        subclass)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The policy's learning rate, it can be a function of the current progress
        remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. batch size is n_steps * n_env where n_env is number of environment copies running in parallel)
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator.
        Equivalent to classic advantage when set to 1.
    :param ent_coef: Entropy coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping (policy and critic alike)
    :param baseline: ``"value"`` (learned V(s)) or ``"none"`` (plain REINFORCE with reward-to-go)
    :param critic_learning_rate: The baseline's learning rate (float or schedule)
    :param n_critic_updates: Number of full-batch regression steps on the baseline per iteration
    :param normalize_advantage: Whether to normalize the advantage over the batch
    :param use_rms_prop: Whether to use RMSprop rather than Adam for both optimisers (as A2C's option)
    :param rms_prop_eps: RMSProp epsilon
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use, i.e. the advantage estimator.
        If ``None``, SB3's GAE buffer is used.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    zoo_name: ClassVar[str | None] = "vpg"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: ActorCriticPolicy

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-3,
        n_steps: int = 1024,
        gamma: float = 0.99,
        gae_lambda: float = 0.97,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        baseline: str = "value",
        critic_learning_rate: float | Schedule = 1e-3,
        n_critic_updates: int = 80,
        normalize_advantage: bool = True,
        use_rms_prop: bool = False,
        rms_prop_eps: float = 1e-5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_choice("VPG", "baseline", baseline, BASELINES)
        check_int("VPG", "n_critic_updates", n_critic_updates, 1 if baseline == "value" else 0)
        check_int("VPG", "n_steps", n_steps, 1)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=0.0,  # unused: the baseline is fitted by its own optimiser, not through a joint loss
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.baseline = baseline
        self.critic_learning_rate = critic_learning_rate
        self.n_critic_updates = n_critic_updates
        self.normalize_advantage = normalize_advantage
        if normalize_advantage and self.env is not None and self.n_steps * self.env.num_envs < 2:
            raise ValueError(
                "VPG: normalize_advantage needs n_steps * n_envs >= 2; raise n_steps or set normalize_advantage=False"
            )
        if use_rms_prop and "optimizer_class" not in self.policy_kwargs:
            self.policy_kwargs["optimizer_class"] = th.optim.RMSprop
            self.policy_kwargs["optimizer_kwargs"] = dict(alpha=0.99, eps=rms_prop_eps, weight_decay=0)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        own_policy = issubclass(self.policy_class, VPGPolicy)
        if not own_policy and not issubclass(self.policy_class, ActorCriticPolicy):
            raise TypeError(
                f"VPG needs an ActorCriticPolicy subclass (a value head for the baseline), got {self.policy_class.__name__}. "
                "Use 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or subclass SB3's ActorCriticPolicy."
            )
        if not own_policy and self.baseline == "none":
            raise TypeError(
                f"VPG: baseline='none' needs a VPGPolicy (it builds the policy without a value head), got "
                f"{self.policy_class.__name__}. Subclass sb3_po.vpg.policies.VPGPolicy instead of ActorCriticPolicy, or "
                "use baseline='value'."
            )
        if own_policy:
            self.policy_kwargs["use_baseline"] = self.baseline == "value"
        if self.baseline == "none" and self.rollout_buffer_class is None:
            # V = 0: GAE's lambda would only add discounting, so the advantage is the plain reward-to-go
            self.rollout_buffer_class = MonteCarloRolloutBuffer
        super()._setup_model()
        if own_policy:
            policy = self.policy
            assert isinstance(policy, VPGPolicy)
            self._actor_params, self._critic_params = policy.actor_parameters(), policy.critic_parameters()
        else:
            self._split_policy()
        self.critic_lr_schedule = FloatSchedule(self.critic_learning_rate)

    def _split_policy(self) -> None:
        """
        Any ``ActorCriticPolicy``: the actor's optimiser over the actor's parameters and a ``critic_optimizer`` over
        the baseline's (found by :func:`~sb3_po.common.policies.actor_critic_parameters`), as VPGPolicy builds them.
        """
        actor, critic, shared = actor_critic_parameters(self.policy)
        if not critic:
            raise TypeError(
                f"VPG: the value of {type(self.policy).__name__} (predict_values) depends on no parameter, so there is no "
                "baseline to fit. Give the policy a value head (SB3's ActorCriticPolicy has one), or use VPG's "
                "'MlpPolicy' with baseline='none'."
            )
        if shared:
            names = [name for name, p in self.policy.named_parameters() if any(p is q for q in shared)]
            warnings.warn(
                f"VPG: {len(names)} parameters of {type(self.policy).__name__} feed both the action distribution and the "
                f"value ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): the baseline's regression "
                "(critic_optimizer) moves these shared features too, between the policy-gradient steps. To keep the "
                "actor's features out of the baseline fit, build the policy with share_features_extractor=False and "
                "separate actor and critic layers.",
                stacklevel=4,
            )
        policy = self.policy
        lr = self.lr_schedule(1)
        policy.optimizer = policy.optimizer_class(actor, lr=lr, **policy.optimizer_kwargs)  # type: ignore[call-arg]
        policy.critic_optimizer = policy.optimizer_class(critic, lr=lr, **policy.optimizer_kwargs)  # type: ignore[call-arg,assignment]
        self._actor_params, self._critic_params = actor, critic

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_actor_params", "_critic_params"]  # found again by _setup_model

    def train(self) -> None:
        """
        One policy-gradient step on the whole rollout, then ``n_critic_updates`` regression steps on the baseline.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        # The whole batch at once (SB3's get(None) yields a single batch)
        rollout_data = next(self.rollout_buffer.get(batch_size=None))
        observations, returns = rollout_data.observations, rollout_data.returns
        actions = policy_actions(rollout_data.actions, self.action_space)

        advantages = rollout_data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        # 1. Policy gradient: g = E_t[ grad log pi(a_t|s_t) A_t ]
        distribution = self.policy.get_distribution(observations)
        log_prob = distribution.log_prob(actions)
        entropy = distribution.entropy()
        policy_loss = -(log_prob * advantages).mean()
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + self.ent_coef * entropy_loss

        check_finite_loss("VPG", loss, policy_loss=policy_loss)
        self.policy.optimizer.zero_grad()
        loss.backward()
        if self.max_grad_norm is not None:
            th.nn.utils.clip_grad_norm_(self._actor_params, self.max_grad_norm)
        self.policy.optimizer.step()

        with th.no_grad():
            # approx KL(pi_old || pi_new) on the batch, the k3 estimator as in SB3's PPO
            approx_kl_value = approx_kl(
                self.policy.get_distribution(observations).log_prob(actions) - rollout_data.old_log_prob
            )

        # 2. Baseline: regression of V(s_t) on the returns
        value_losses = []
        critic_optimizer: th.optim.Optimizer | None = getattr(self.policy, "critic_optimizer", None)  # set on any policy
        if critic_optimizer is not None:
            critic_lr = self.critic_lr_schedule(self._current_progress_remaining)
            update_learning_rate(critic_optimizer, critic_lr)
            self.logger.record("train/critic_learning_rate", critic_lr)
            critic_parameters = self._critic_params
            for _ in range(self.n_critic_updates):
                value_loss = F.mse_loss(returns, self.policy.predict_values(observations).flatten())
                check_finite_loss("VPG (baseline)", value_loss)
                critic_optimizer.zero_grad()
                value_loss.backward()
                if self.max_grad_norm is not None:
                    th.nn.utils.clip_grad_norm_(critic_parameters, self.max_grad_norm)
                critic_optimizer.step()
                value_losses.append(value_loss.item())

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/approx_kl", approx_kl_value.item())
        if value_losses:
            self.logger.record("train/value_loss", value_losses[0])
            self.logger.record("train/value_loss_final", value_losses[-1])
            explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
            self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def learn(
        self: SelfVPG,
        total_timesteps: int | None = None,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "VPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfVPG:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "policy.optimizer"]
        if self.baseline == "value":
            state_dicts.append("policy.critic_optimizer")
        return state_dicts, []
