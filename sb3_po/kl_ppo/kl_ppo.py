import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutBufferSamples, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from torch.nn import functional as F

from sb3_po.common.algorithm import SB3POAlgorithmMixin
from sb3_po.common.checks import check_choice, check_finite_loss, check_number
from sb3_po.common.kl import KL_ESTIMATORS, AnyDistribution, approx_kl, index_distribution, policy_kl, snapshot
from sb3_po.common.minibatches import flatten_rollout, indexed_minibatches
from sb3_po.common.policies import policy_actions
from sb3_po.kl_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfKLPPO = TypeVar("SelfKLPPO", bound="KLPPO")

BETA_UPDATES = ("rollout", "minibatch")


def _pair(value: Any) -> tuple[float, float]:
    """A pair (a saved model's JSON gives a list) as a tuple."""
    low, high = value
    return low, high


def _as_pair(value: float | tuple[float, float], name: str) -> tuple[float, float]:
    """``x`` -> ``(1/x, x)``; a pair is taken as ``(low, high)``."""
    low, high = (
        (1.0 / value, float(value)) if isinstance(value, (int, float, np.number)) else (float(value[0]), float(value[1]))
    )
    if not (0 < low <= 1 <= high) or not np.isfinite(high):
        raise ValueError(f"KLPPO: {name} must be a number > 1 or a pair (low, high) with 0 < low <= 1 <= high, got {value!r}")
    return low, high


def adapt_beta(
    beta: float,
    kl: float,
    kl_target: float,
    kl_tolerance: tuple[float, float] = (1 / 1.5, 1.5),
    beta_factor: tuple[float, float] = (1 / 2.0, 2.0),
    beta_bounds: tuple[float, float] = (1e-3, 1e3),
) -> float:
    """
    The PPO paper's adaptive KL coefficient (Schulman et al. 2017, section 4), for a measured mean KL ``d``:

    - if ``d < d_targ * low_tol``: ``beta <- beta * low_factor``  (paper: d < d_targ / 1.5 -> beta / 2)
    - if ``d > d_targ * high_tol``: ``beta <- beta * high_factor`` (paper: d > d_targ * 1.5 -> beta * 2)

    then clipped to ``beta_bounds``. A non-finite KL counts as too large.
    Other libraries' rules are other parameters: RLlib ``kl_tolerance=(0.5, 2.0), beta_factor=(0.5, 1.5)``;
    TF-Agents ``kl_tolerance=(0.7, 1.3), beta_factor=(1 / 1.5, 1.5)``.

    :return: the new beta
    """
    if not np.isfinite(kl) or kl > kl_target * kl_tolerance[1]:
        beta = beta * beta_factor[1]
    elif kl < kl_target * kl_tolerance[0]:
        beta = beta * beta_factor[0]
    return float(np.clip(beta, beta_bounds[0], beta_bounds[1]))


class KLPPO(SB3POAlgorithmMixin, PPO):
    """
    PPO with a KL penalty and an adaptive coefficient beta: the PPO paper's adaptive-KL variant
    (Schulman et al. 2017, section 4, https://arxiv.org/abs/1707.06347). The policy maximises

        L(theta) = E_t[ surrogate_t - beta * KL(pi_old(.|s_t) || pi_theta(.|s_t)) ]

    where ``surrogate_t = ratio_t * A_t`` with ``ratio_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)``
    (``clip_range=None``, the default, as in the paper's adaptive-KL rows), or PPO's clipped surrogate
    ``min(ratio_t A_t, clip(ratio_t, 1 - eps, 1 + eps) A_t)`` when ``clip_range`` is set (clip + penalty).
    After each policy update the mean KL ``d`` between the policy that collected the rollout and the
    updated one adapts beta (see :func:`adapt_beta`).

    Everything else is SB3's ``PPO``, so every RL Zoo ``ppo.yml`` entry is valid for KLPPO unchanged;
    ``target_kl`` keeps its SB3 meaning (early stopping) and is independent of ``kl_target``.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
    :param batch_size: Minibatch size
    :param n_epochs: Number of epoch when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: ``None`` (default) for the pure KL-penalty objective; a float or schedule adds PPO's clipping
    :param clip_range_vf: Clipping parameter for the value function (as in PPO)
    :param normalize_advantage: Whether to normalize or not the advantage
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param kl_target: d_targ, the KL per update the adaptive beta aims at (> 0)
    :param beta: Initial KL coefficient (>= 0); the paper starts at 1
    :param adaptive_beta: Whether to adapt beta (``False`` gives a fixed penalty)
    :param kl_tolerance: The band around ``kl_target`` inside which beta is left alone: a number ``x > 1``
        for ``[d_targ / x, d_targ * x]`` (paper: 1.5) or a pair of multipliers ``(low, high)``
    :param beta_factor: How beta changes outside the band: ``x`` for ``/x`` below and ``*x`` above (paper: 2),
        or a pair of multipliers ``(below, above)``
    :param beta_bounds: ``(min, max)`` for beta, so it can neither vanish nor overflow
    :param beta_update: ``"rollout"`` (once per ``train()`` call from the KL over the whole batch, as in the paper)
        or ``"minibatch"`` (after every gradient step from that minibatch's KL, as TorchRL does)
    :param kl_estimator: ``"exact"`` (closed form, for every SB3 distribution), or the sampled ``"k1"`` / ``"k3"``
    :param kl_cutoff_factor: TF-Agents' cutoff: with ``kl_cutoff_coef > 0`` the loss adds
        ``kl_cutoff_coef * max(0, KL - kl_cutoff_factor * kl_target)^2``
    :param kl_cutoff_coef: Coefficient of the cutoff term (0 disables it)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
    :param rollout_buffer_class: Rollout buffer class to use (e.g. an sb3-po advantage estimator)
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param target_kl: SB3's early stopping: stop the epochs when the approximate KL exceeds ``1.5 * target_kl``
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    zoo_name: ClassVar[str | None] = "kl_ppo"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule | None = None,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        kl_target: float = 0.01,
        beta: float = 1.0,
        adaptive_beta: bool = True,
        kl_tolerance: float | tuple[float, float] = 1.5,
        beta_factor: float | tuple[float, float] = 2.0,
        beta_bounds: tuple[float, float] = (1e-3, 1e3),
        beta_update: str = "rollout",
        kl_estimator: str = "exact",
        kl_cutoff_factor: float = 2.0,
        kl_cutoff_coef: float = 0.0,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_number("KLPPO", "kl_target", kl_target, 0, strict=True)
        check_number("KLPPO", "beta", beta, 0)
        if len(beta_bounds) != 2 or not (0 <= beta_bounds[0] <= beta_bounds[1] < np.inf):
            raise ValueError(f"KLPPO: beta_bounds must be (min, max) with 0 <= min <= max < inf, got {beta_bounds!r}")
        if adaptive_beta and not beta_bounds[0] <= beta <= beta_bounds[1]:
            raise ValueError(f"KLPPO: beta={beta} lies outside beta_bounds={beta_bounds}; widen the bounds or change beta")
        check_choice("KLPPO", "beta_update", beta_update, BETA_UPDATES)
        check_choice("KLPPO", "kl_estimator", kl_estimator, KL_ESTIMATORS)
        if kl_cutoff_coef < 0 or kl_cutoff_factor <= 0:
            raise ValueError("KLPPO: kl_cutoff_coef must be >= 0 and kl_cutoff_factor > 0")
        if isinstance(clip_range, (int, float)) and not 0 < clip_range < 1:
            raise ValueError(f"KLPPO: clip_range must be in (0, 1), or None for no clipping, got {clip_range!r}")
        self.kl_tolerance = _as_pair(kl_tolerance, "kl_tolerance")
        self.beta_factor = _as_pair(beta_factor, "beta_factor")
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,  # type: ignore[arg-type]
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if self.env is not None:
            buffer_size = self.n_steps * self.env.num_envs
            if batch_size < buffer_size and buffer_size % batch_size:
                # PPO only warns; a batch_size >= the rollout (one full-batch minibatch, as some RL Zoo entries use)
                # stays valid
                divisor = max(d for d in range(1, batch_size + 1) if buffer_size % d == 0)
                raise ValueError(
                    f"KLPPO: batch_size={batch_size} does not divide n_steps * n_envs = {buffer_size}, so every epoch "
                    f"would end with a truncated minibatch. Use a divisor of {buffer_size} (e.g. {divisor}), or "
                    f"batch_size >= {buffer_size} for full-batch updates."
                )
        self.kl_target = kl_target
        self.beta = float(beta)  # the current coefficient: adapted in train(), saved and restored with the model
        self.adaptive_beta = adaptive_beta
        self.beta_bounds = (float(beta_bounds[0]), float(beta_bounds[1]))
        self.beta_update = beta_update
        self.kl_estimator = kl_estimator
        self.kl_cutoff_factor = kl_cutoff_factor
        self.kl_cutoff_coef = kl_cutoff_coef
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        # PPO._setup_model, except that clip_range may be None (no clipping)
        OnPolicyAlgorithm._setup_model(self)
        # pairs come back from a saved model's JSON as lists
        self.kl_tolerance, self.beta_factor = _pair(self.kl_tolerance), _pair(self.beta_factor)
        self.beta_bounds = _pair(self.beta_bounds)
        if self.clip_range is not None:
            self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            if isinstance(self.clip_range_vf, (float, int)):
                assert self.clip_range_vf > 0, "`clip_range_vf` must be positive, pass `None` to deactivate vf clipping"
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def _all_samples(self) -> RolloutBufferSamples:
        """The whole (flattened) rollout as one batch, in buffer order."""
        return self.rollout_buffer._get_samples(np.arange(self.rollout_buffer.buffer_size * self.rollout_buffer.n_envs))

    def _mean_kl(self, pi_old: AnyDistribution, batch: RolloutBufferSamples, actions: th.Tensor) -> float:
        """d = mean over the batch of KL(pi_old || pi_theta), measured with the current parameters."""
        with th.no_grad():
            distribution = self.policy.get_distribution(batch.observations)
            log_prob = distribution.log_prob(actions)
            return policy_kl(self.kl_estimator, pi_old, distribution.distribution, batch.old_log_prob, log_prob).mean().item()

    def _adapt_beta(self, kl: float) -> None:
        self.beta = adapt_beta(self.beta, kl, self.kl_target, self.kl_tolerance, self.beta_factor, self.beta_bounds)

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer.

        This is SB3's ``PPO.train`` overridden whole. What differs: pi_old is snapshotted once at the start
        (the exact KL needs its parameters, not just log pi_old(a_t|s_t)); the policy loss is
        ``-(surrogate - beta * KL)`` with the surrogate clipped only when ``clip_range`` is set; an optional
        cutoff term; and beta is adapted from the measured KL after the epochs (or after every minibatch).
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = None if self.clip_range is None else self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]

        # pi_old: the policy that collected the rollout, for every sample of the (flattened) buffer; flattened
        # without consuming NumPy's generator, so that the minibatch permutations below are exactly PPO's
        flatten_rollout(self.rollout_buffer)
        all_samples = self._all_samples()
        pi_old = None
        if self.kl_estimator == "exact":
            with th.no_grad():
                pi_old = snapshot(self.policy.get_distribution(all_samples.observations))

        entropy_losses, pg_losses, value_losses, clip_fractions = [], [], [], []
        surrogates, kls, kl_penalties, kl_cutoffs, betas = [], [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            # PPO's minibatches (RolloutBuffer.get(batch_size)) with their positions, to look up their pi_old
            for batch_indices, rollout_data in indexed_minibatches(self.rollout_buffer, self.batch_size):
                actions = policy_actions(rollout_data.actions, self.action_space)
                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
                values = values.flatten()
                # pi_theta(.|s) itself: evaluate_actions has just set it in the policy's distribution object
                pi_theta = self.policy.action_dist.distribution

                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                # ratio r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t)
                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                # surrogate: r_t A_t, or PPO's min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)
                if clip_range is None:
                    surrogate = ratio * advantages
                else:
                    surrogate = th.min(ratio * advantages, th.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages)
                    clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                # KL(pi_old || pi_theta) per sample and the penalty beta * KL
                pi_old_batch = None if pi_old is None else index_distribution(pi_old, batch_indices)
                kl = policy_kl(self.kl_estimator, pi_old_batch, pi_theta, rollout_data.old_log_prob, log_prob)
                kl_mean = kl.mean()
                kl_penalty = self.beta * kl_mean
                surrogate_mean = surrogate.mean()
                policy_loss = -surrogate_mean + kl_penalty
                if self.kl_cutoff_coef > 0:
                    kl_cutoff = self.kl_cutoff_coef * F.relu(kl_mean - self.kl_cutoff_factor * self.kl_target) ** 2
                    policy_loss = policy_loss + kl_cutoff
                    kl_cutoffs.append(kl_cutoff.detach())

                # logged values stay tensors until the end of train(): no extra synchronisation per minibatch
                surrogates.append(surrogate_mean.detach())
                kls.append(kl_mean.detach())
                kl_penalties.append(kl_penalty.detach())
                pg_losses.append(policy_loss.item())  # the floats logged below also check the loss (no extra op)

                if self.clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())

                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())

                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                # SB3's approximate KL (k3 on the sampled actions), for logging and target_kl early stopping
                with th.no_grad():
                    approx_kl_div = approx_kl(log_prob - rollout_data.old_log_prob).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)

                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                loss_value = pg_losses[-1] + self.ent_coef * entropy_losses[-1] + self.vf_coef * value_losses[-1]
                check_finite_loss("KLPPO", loss_value, kl=kl_mean, beta=self.beta, ratio=ratio)
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

                if self.adaptive_beta and self.beta_update == "minibatch":
                    self._adapt_beta(kl_mean.item())
                    betas.append(self.beta)

            self._n_updates += 1
            if not continue_training:
                break

        # d: mean KL(pi_old || pi_new) over the whole batch, after the update
        measured_kl = self._mean_kl(pi_old, all_samples, policy_actions(all_samples.actions, self.action_space))  # type: ignore[arg-type]
        if not np.isfinite(measured_kl):
            warnings.warn(
                f"KLPPO: the KL measured after the update is {measured_kl}; beta is multiplied by its increase factor "
                f"(bounded by beta_bounds={self.beta_bounds}). Lower the learning rate or raise beta."
            )
        if self.adaptive_beta and self.beta_update == "rollout":
            self._adapt_beta(measured_kl)

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/surrogate", th.stack(surrogates).mean().item())
        self.logger.record("train/kl", measured_kl)
        self.logger.record("train/kl_minibatch_mean", th.stack(kls).mean().item())
        self.logger.record("train/kl_penalty", th.stack(kl_penalties).mean().item())
        self.logger.record("train/beta", self.beta)
        if betas:
            self.logger.record("train/beta_min", min(betas))
            self.logger.record("train/beta_max", max(betas))
        if kl_cutoffs:
            self.logger.record("train/kl_cutoff", th.stack(kl_cutoffs).mean().item())
        if clip_fractions:
            self.logger.record("train/clip_fraction", np.mean(clip_fractions))
            self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def learn(
        self: SelfKLPPO,
        total_timesteps: int | None = None,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "KLPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfKLPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
