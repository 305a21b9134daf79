import copy
from functools import partial
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from sb3_contrib import TRPO
from sb3_contrib.common.utils import conjugate_gradient_solver
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import kl_divergence
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutBufferSamples, Schedule
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from sb3_po.common.algorithm import SB3POAlgorithmMixin
from sb3_po.common.checks import check_int, check_number
from sb3_po.common.policies import policy_actions
from sb3_po.npg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfNPG = TypeVar("SelfNPG", bound="NPG")


class NPG(SB3POAlgorithmMixin, TRPO):
    """
    Natural Policy Gradient (Kakade 2001, "A Natural Policy Gradient"; the step of Spinning Up's and rllab's NPG/TNPG
    and of Tianshou's ``NPGPolicy``), on sb3-contrib's TRPO machinery.

    Each iteration collects ``n_steps * n_envs`` transitions, estimates advantages with the rollout buffer's
    estimator (GAE(lambda) by default; any :mod:`sb3_po.common.buffers` class through ``rollout_buffer_class``), then

    1. takes ONE natural-gradient step on the policy: with g the gradient of the surrogate
       ``mean_t[ratio_t A_t]`` and F the Fisher matrix (the Hessian of the mean KL between the policy and the one that
       collected the rollout, plus ``cg_damping * I``), the direction ``x = F^-1 g`` is found by ``cg_max_steps``
       conjugate-gradient iterations with Fisher-vector products, and the parameters move by ``alpha * x`` with
       ``alpha = sqrt(2 * target_kl / x^T F x)`` (the step whose quadratic model of the KL is ``target_kl``), or by
       ``step_size * x`` when ``step_size`` is set (Tianshou's ``actor_step_size``). Unlike TRPO there is no line
       search and no check of the KL or of the surrogate after the step: the measured KL is only logged;
    2. fits the critic as TRPO does: ``n_critic_updates`` epochs of minibatch regression on the returns with the
       policy's optimiser (``learning_rate``), the actor's gradients removed.

    The conjugate gradient (``sb3_contrib.common.utils.conjugate_gradient_solver``), the Fisher-vector product
    (``TRPO.hessian_vector_product``) and the split of the parameters into actor and critic
    (``TRPO._compute_actor_grad``, which takes as the critic's every parameter with ``value`` in its name, as SB3's
    policies name them) are TRPO's own.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate of the critic's optimiser, it can be a function of the current progress
        remaining (from 1 to 0); the policy's step is set by ``target_kl`` or ``step_size``
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel)
    :param batch_size: Minibatch size for the value function
    :param gamma: Discount factor
    :param cg_max_steps: maximum number of steps in the Conjugate Gradient algorithm for computing F^-1 g
    :param cg_damping: damping added to the Fisher matrix (F + cg_damping * I) in the Fisher-vector products
    :param n_critic_updates: number of critic updates per policy update
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use, i.e. the advantage estimator. If ``None``, SB3's GAE
        buffer is used.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: delta, the KL of the step's quadratic model: ``alpha = sqrt(2 * target_kl / x^T F x)``
        (ignored when ``step_size`` is set)
    :param step_size: A fixed step ``theta += step_size * F^-1 g`` instead of the KL-scaled one (None: KL-scaled)
    :param sub_sampling_factor: Sub-sample the batch to make computation faster (for the natural-gradient step)
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

    zoo_name: ClassVar[str | None] = "npg"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        target_kl: float = 0.01,
        step_size: float | None = None,
        sub_sampling_factor: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_int("NPG", "n_steps", n_steps, 1)
        check_int("NPG", "batch_size", batch_size, 1)
        check_int("NPG", "cg_max_steps", cg_max_steps, 1)
        check_number("NPG", "cg_damping", cg_damping, 0)
        check_int("NPG", "n_critic_updates", n_critic_updates, 0)
        check_int("NPG", "sub_sampling_factor", sub_sampling_factor, 1)
        check_number("NPG", "target_kl", target_kl, 0, strict=True)
        if step_size is not None:
            check_number("NPG", "step_size", step_size, 0, strict=True)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            cg_max_steps=cg_max_steps,
            cg_damping=cg_damping,
            n_critic_updates=n_critic_updates,
            gae_lambda=gae_lambda,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            target_kl=target_kl,
            sub_sampling_factor=sub_sampling_factor,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        # TRPO's line search: NPG has none
        del self.line_search_shrinking_factor, self.line_search_max_iter
        self.step_size = step_size
        if _init_setup_model:
            self._setup_model()

    def natural_gradient_step(self, rollout_data: RolloutBufferSamples) -> tuple[list[th.nn.Parameter], dict[str, float]]:
        """
        The policy's update on one batch: ``theta += alpha * F^-1 g`` (see the class docstring).

        :param rollout_data: the batch (the whole rollout, possibly sub-sampled)
        :return: the actor's parameters (those the step moved) and the step's statistics: ``step_size`` (alpha),
            ``quadratic_kl`` (the KL the quadratic model predicts, ``alpha^2 x^T F x / 2``), ``kl`` (the mean
            KL(pi_new || pi_old) measured after the step), ``policy_objective`` (the surrogate after the step),
            ``policy_objective_before`` and ``natural_gradient_norm`` (``|x|``)
        """
        actions = policy_actions(rollout_data.actions, self.action_space)
        with th.no_grad():
            # a shallow copy holds the torch distribution of this call (as in TRPO.train, also with gSDE)
            old_distribution = copy.copy(self.policy.get_distribution(rollout_data.observations))

        distribution = self.policy.get_distribution(rollout_data.observations)
        log_prob = distribution.log_prob(actions)
        advantages = rollout_data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (rollout_data.advantages.std() + 1e-8)
        # surrogate mean_t[ratio_t A_t], whose gradient at theta_old is the policy gradient g
        policy_objective = (advantages * th.exp(log_prob - rollout_data.old_log_prob)).mean()
        # the mean KL, whose Hessian at theta_old is the Fisher matrix F
        kl_div = kl_divergence(distribution, old_distribution).mean()

        self.policy.optimizer.zero_grad()
        actor_params, policy_gradient, grad_kl, grad_shape = self._compute_actor_grad(kl_div, policy_objective)
        fisher_vector_product = partial(self.hessian_vector_product, actor_params, grad_kl)  # (F + damping I) v
        # x = F^-1 g
        direction = conjugate_gradient_solver(fisher_vector_product, policy_gradient, max_iter=self.cg_max_steps)
        quadratic = float(th.dot(direction, fisher_vector_product(direction, retain_graph=False)))  # x^T F x
        if not np.isfinite(quadratic):
            raise FloatingPointError(
                f"NPG: x^T F x is {quadratic} for the natural gradient x = F^-1 g; the parameters were not changed. "
                "Raise cg_damping, or check the rewards' scale (VecNormalize) and the policy's outputs."
            )
        if self.step_size is not None:
            alpha = float(self.step_size)
        else:
            # x = 0 (a zero policy gradient) has x^T F x = 0: no step
            alpha = float(np.sqrt(2 * self.target_kl / quadratic)) if quadratic > 0 else 0.0

        with th.no_grad():
            start = 0
            for param, shape in zip(actor_params, grad_shape, strict=True):
                n_params = param.numel()
                param.add_(alpha * direction[start : start + n_params].view(shape))
                start += n_params
            distribution = self.policy.get_distribution(rollout_data.observations)
            log_prob = distribution.log_prob(actions)
            new_policy_objective = (advantages * th.exp(log_prob - rollout_data.old_log_prob)).mean()
            kl = kl_divergence(distribution, old_distribution).mean()
        stats = dict(
            step_size=alpha,
            quadratic_kl=0.5 * alpha**2 * quadratic,
            kl=kl.item(),
            policy_objective=new_policy_objective.item(),
            policy_objective_before=policy_objective.item(),
            natural_gradient_norm=direction.norm().item(),
        )
        return actor_params, stats

    def train(self) -> None:
        """
        One natural-gradient step on the policy (:meth:`natural_gradient_step`), then the critic's regression.

        This is sb3-contrib's ``TRPO.train`` overridden whole. What differs: the step is ``alpha * F^-1 g`` applied
        once, where TRPO backtracks from ``sqrt(2 * target_kl / x^T F x) * x`` until the KL is below ``target_kl`` and
        the surrogate has improved (and reverts the step when no candidate passes); and the logged keys (``train/kl``,
        ``train/step_size``, ...). The batch, its sub-sampling, the surrogate, the Fisher-vector product, the
        conjugate gradient and the critic's regression are TRPO's.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        # the whole rollout as one batch (SB3's get(None) yields a single batch), optionally sub-sampled as in TRPO
        rollout_data = next(self.rollout_buffer.get(batch_size=None))
        if self.sub_sampling_factor > 1:
            rollout_data = RolloutBufferSamples(
                rollout_data.observations[:: self.sub_sampling_factor],
                rollout_data.actions[:: self.sub_sampling_factor],
                None,  # type: ignore[arg-type]  # old values, not used here
                rollout_data.old_log_prob[:: self.sub_sampling_factor],
                rollout_data.advantages[:: self.sub_sampling_factor],
                None,  # type: ignore[arg-type]  # returns, not used here
            )
        actor_params, stats = self.natural_gradient_step(rollout_data)

        # the critic, as in TRPO.train (inline there): minibatch regression on the returns with the policy's
        # optimiser, the actor's gradients removed so that parameters shared with the actor move only with its step
        value_losses = []
        for _ in range(self.n_critic_updates):
            for batch in self.rollout_buffer.get(self.batch_size):
                values_pred = self.policy.predict_values(batch.observations)
                value_loss = F.mse_loss(batch.returns, values_pred.flatten())
                value_losses.append(value_loss.item())
                self.policy.optimizer.zero_grad()
                value_loss.backward()
                for param in actor_params:
                    param.grad = None
                self.policy.optimizer.step()

        self._n_updates += 1
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        self.logger.record("train/policy_objective", stats["policy_objective"])
        self.logger.record("train/policy_objective_gain", stats["policy_objective"] - stats["policy_objective_before"])
        self.logger.record("train/kl", stats["kl"])
        self.logger.record("train/kl_divergence_loss", stats["kl"])  # TRPO's name for the same measurement
        self.logger.record("train/quadratic_kl", stats["quadratic_kl"])
        self.logger.record("train/step_size", stats["step_size"])
        self.logger.record("train/natural_gradient_norm", stats["natural_gradient_norm"])
        if value_losses:
            self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(
        self: SelfNPG,
        total_timesteps: int | None = None,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "NPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfNPG:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
