"""Optuna samplers of the sb3-po algorithms, in rl_zoo3's ``HYPERPARAMS_SAMPLER`` form (registered by the bridge)."""

from typing import TYPE_CHECKING, Any

from torch import nn

from sb3_po.common.optional import require

if TYPE_CHECKING:
    import optuna
else:
    optuna = require("optuna", feature="Hyperparameter tuning (sb3-po train -optimize)")
convert_onpolicy_params = require("rl_zoo3.hyperparams_opt", feature="Hyperparameter tuning").convert_onpolicy_params

NET_ARCHS = {"tiny": [64], "small": [64, 64], "medium": [256, 256]}
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _policy_kwargs(trial: optuna.Trial, critic: bool = True) -> dict[str, Any]:
    layers = NET_ARCHS[trial.suggest_categorical("net_arch", list(NET_ARCHS))]
    net_arch = dict(pi=layers, vf=layers) if critic else dict(pi=layers, vf=[])
    return dict(net_arch=net_arch, activation_fn=ACTIVATIONS[trial.suggest_categorical("activation_fn", list(ACTIVATIONS))])


def sample_vpg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for VPG: batch size, both learning rates, the baseline's fit, gamma and GAE's lambda."""
    gamma = 1 - trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True)
    trial.set_user_attr("gamma", gamma)
    return dict(
        n_steps=2 ** trial.suggest_int("n_steps_pow", 7, 12),
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        critic_learning_rate=trial.suggest_float("critic_learning_rate", 1e-4, 1e-2, log=True),
        n_critic_updates=trial.suggest_categorical("n_critic_updates", [10, 40, 80]),
        gamma=gamma,
        gae_lambda=1 - trial.suggest_float("one_minus_gae_lambda", 0.001, 0.2, log=True),
        ent_coef=trial.suggest_float("ent_coef", 1e-8, 0.01, log=True),
        policy_kwargs=_policy_kwargs(trial),
    )


def sample_kl_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for KLPPO: the ranges of the zoo's PPO sampler without clipping, plus the KL target and the initial beta."""
    sampled = dict(
        n_steps_pow=trial.suggest_int("n_steps_pow", 5, 12),
        batch_size_pow=trial.suggest_int("batch_size_pow", 5, 10),
        one_minus_gamma=trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        one_minus_gae_lambda=trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True),
        learning_rate=trial.suggest_float("learning_rate", 1e-5, 0.002, log=True),
        ent_coef=trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        n_epochs=trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        max_grad_norm=trial.suggest_float("max_grad_norm", 0.3, 2),
        net_arch=trial.suggest_categorical("net_arch", ["tiny", "small", "medium"]),
        activation_fn=trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    )
    params = convert_onpolicy_params(sampled)
    params["clip_range"] = None  # the paper's adaptive-KL objective: penalty, no clipping
    params["kl_target"] = trial.suggest_float("kl_target", 0.003, 0.03, log=True)
    params["beta"] = trial.suggest_float("beta", 0.1, 10.0, log=True)
    return params


def sample_grpo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for GRPO: group size and count, learning rate, epochs, clipping, loss aggregation and advantage form."""
    return dict(
        group_size=trial.suggest_categorical("group_size", [4, 8, 16, 32]),
        n_groups=trial.suggest_categorical("n_groups", [1, 2, 4]),
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        n_epochs=trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        n_minibatches=trial.suggest_categorical("n_minibatches", [1, 4, 8]),
        clip_range=trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        loss_type=trial.suggest_categorical("loss_type", ["step", "episode"]),
        advantage=trial.suggest_categorical("advantage", ["mean_std", "mean"]),
        policy_kwargs=_policy_kwargs(trial, critic=False),
    )


def sample_npg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for NPG: the ranges of the zoo's TRPO sampler (rollout size, critic's minibatch and learning rate, gamma,
    GAE's lambda, CG steps, critic updates), with the step's delta (``target_kl``) and a wider CG damping, as NPG has
    no line search to correct a step that a poorly conditioned Fisher matrix makes too long.
    """
    sampled = dict(
        n_steps_pow=trial.suggest_int("n_steps_pow", 8, 12),
        batch_size_pow=trial.suggest_int("batch_size_pow", 5, 9),
        one_minus_gamma=trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        one_minus_gae_lambda=trial.suggest_float("one_minus_gae_lambda", 0.001, 0.2, log=True),
        learning_rate=trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        net_arch=trial.suggest_categorical("net_arch", ["small", "medium"]),
        activation_fn=trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    )
    params = convert_onpolicy_params(sampled)
    params["cg_max_steps"] = trial.suggest_categorical("cg_max_steps", [5, 10, 20, 30])
    params["cg_damping"] = trial.suggest_float("cg_damping", 0.01, 1.0, log=True)
    params["n_critic_updates"] = trial.suggest_categorical("n_critic_updates", [5, 10, 20, 30])
    params["target_kl"] = trial.suggest_float("target_kl", 0.001, 0.05, log=True)
    return params


SAMPLERS = {"vpg": sample_vpg_params, "kl_ppo": sample_kl_ppo_params, "grpo": sample_grpo_params, "npg": sample_npg_params}
