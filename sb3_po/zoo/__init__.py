"""
The bridge to RL Zoo (rl_zoo3): train, enjoy, tune and plot the sb3-po algorithms with the zoo's own code.

rl_zoo3 has no plugin mechanism, so :func:`register` does four small, visible things:

- adds ``vpg``, ``kl_ppo`` and ``grpo`` to ``rl_zoo3.utils.ALGOS`` and their Optuna samplers to
  ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` (the zoo's argparse choices are built from ALGOS when
  ``train()`` runs, so they appear on the command line);
- replaces ``rl_zoo3.train.ExperimentManager`` by :class:`ExperimentManager`, a subclass that resolves
  class-valued hyperparameters given as dotted strings (``rollout_buffer_class``) and their keyword
  strings (``rollout_buffer_kwargs: dict(n_step=5)``), and wraps GRPO's envs in ``RestorableEnv``;
- makes ``ppo_lstm`` :class:`sb3_po.ppo_recurrent.RecurrentPPO`, sb3-contrib's RecurrentPPO that also takes
  ``rollout_buffer_class`` (an sb3-po estimator; without one it is sb3-contrib's RecurrentPPO);
- nothing else: SB3's and sb3-contrib's algorithms stay as they are.

:func:`main` is the command line (``sb3-po`` or ``python -m sb3_po.zoo``): ``train``, ``enjoy``,
``plot_train``, ``plot_from_file`` and ``all_plots`` with the zoo's flags. Without ``--conf-file`` our
algorithms read the YAML shipped in the package (``sb3_po/zoo_configs/<algo>.yml``); with ``-optimize`` and
no ``--storage`` the study goes to a local journal file, so that several workers on one machine share it.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import optuna
import rl_zoo3.exp_manager
import rl_zoo3.train
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER, convert_onpolicy_params
from rl_zoo3.utils import ALGOS, get_class_by_name
from torch import nn

from sb3_po.grpo import GRPO
from sb3_po.kl_ppo import KLPPO
from sb3_po.ppo_recurrent import RecurrentPPO
from sb3_po.vpg import VPG

OUR_ALGOS = {"vpg": VPG, "kl_ppo": KLPPO, "grpo": GRPO}
# the zoo's algorithms that take no rollout_buffer_class, replaced by a subclass that does
WITH_BUFFER_CLASS = {"ppo_lstm": RecurrentPPO}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "zoo_configs"
RESTORABLE_ENV = "sb3_po.common.env_state.RestorableEnv"
# hyperparameters whose value may be a dotted class name, and their keyword arguments given as a string
CLASS_KEYS = ("rollout_buffer_class",)
KWARGS_KEYS = ("rollout_buffer_kwargs",)


def config_path(algo: str) -> Path:
    """The RL Zoo YAML of one of our algorithms, as shipped in the package."""
    return CONFIG_DIR / f"{algo}.yml"


def resolve_hyperparams(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Dotted class names and keyword strings (which rl_zoo3 leaves as strings) become objects."""
    hyperparams = dict(hyperparams)
    for key in CLASS_KEYS:
        if isinstance(hyperparams.get(key), str):
            hyperparams[key] = get_class_by_name(hyperparams[key])
    for key in KWARGS_KEYS:
        if isinstance(hyperparams.get(key), str):
            hyperparams[key] = eval(hyperparams[key], {"dict": dict})
    return hyperparams


def with_restorable_env(env_wrapper: Any, state_mode: str = "auto") -> list[Any]:
    """
    The zoo's ``env_wrapper`` entry with ``RestorableEnv`` appended (outermost, above Monitor) if absent,
    restoring states the way GRPO's ``state_mode`` hyperparameter asks (e.g. ``seed`` for LunarLander).
    """
    wrappers = [] if env_wrapper is None else (list(env_wrapper) if isinstance(env_wrapper, list) else [env_wrapper])
    names = [w if isinstance(w, str) else next(iter(w)) for w in wrappers]
    if RESTORABLE_ENV in names:
        return wrappers
    return [*wrappers, RESTORABLE_ENV if state_mode == "auto" else {RESTORABLE_ENV: {"mode": state_mode}}]


class ExperimentManager(rl_zoo3.exp_manager.ExperimentManager):
    """
    rl_zoo3's ExperimentManager; what differs: class-valued hyperparameters given as dotted strings are
    resolved, ``clip_range: null`` is accepted (KLPPO without clipping), and GRPO's envs are wrapped in
    ``RestorableEnv``.
    """

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):  # type: ignore[override]
        hyperparams = resolve_hyperparams(hyperparams)
        if self.algo == "grpo":
            hyperparams["env_wrapper"] = with_restorable_env(
                hyperparams.get("env_wrapper"), hyperparams.get("state_mode", "auto")
            )
        return super()._preprocess_hyperparams(hyperparams)

    def _preprocess_schedules(self, hyperparams: dict[str, Any]) -> dict[str, Any]:
        # the zoo rejects None for a schedule; KLPPO's clip_range=None means "no clipping"
        unset = {key: None for key in ("clip_range", "clip_range_vf") if key in hyperparams and hyperparams[key] is None}
        hyperparams = super()._preprocess_schedules({k: v for k, v in hyperparams.items() if k not in unset})
        return {**hyperparams, **unset}


# -- Optuna samplers ---------------------------------------------------------------------------------------

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


SAMPLERS = {"vpg": sample_vpg_params, "kl_ppo": sample_kl_ppo_params, "grpo": sample_grpo_params}


def register() -> None:
    """Make rl_zoo3 know the sb3-po algorithms (idempotent)."""
    ALGOS.update(OUR_ALGOS)
    ALGOS.update(WITH_BUFFER_CLASS)
    HYPERPARAMS_SAMPLER.update(SAMPLERS)
    rl_zoo3.train.ExperimentManager = ExperimentManager  # type: ignore[attr-defined,misc]


# -- command line ------------------------------------------------------------------------------------------


def default_arguments(argv: list[str]) -> list[str]:
    """
    Fill in what our algorithms need and the zoo cannot know: the shipped YAML when no ``--conf-file``
    is given, or when the given YAML is not found here but one of that name is shipped (so the README's
    ``--conf-file zoo_configs/...`` works from any directory), and for ``-optimize`` without ``--storage``
    a local journal file and a study name shared by every worker started with the same command.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--log-folder", default="logs")
    parser.add_argument("-conf", "--conf-file", default=None)
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--study-name", default=None)
    known, _ = parser.parse_known_args(argv)
    argv = list(argv)
    if known.algo in OUR_ALGOS and known.conf_file is None:
        argv += ["--conf-file", str(config_path(known.algo))]
    shipped = CONFIG_DIR / Path(str(known.conf_file)).name
    if known.conf_file in argv and not Path(known.conf_file).exists() and shipped.suffix == ".yml" and shipped.exists():
        # `--conf-file zoo_configs/ppo_estimators.yml` from outside the repository: the copy shipped in the package
        argv[argv.index(known.conf_file)] = str(shipped)
    if known.optimize_hyperparameters and known.storage is None:
        storage = Path(known.log_folder) / "optuna" / f"{known.algo}_{known.env}.log"
        argv += ["--storage", str(storage)]
        if known.study_name is None:
            argv += ["--study-name", f"{known.algo}_{known.env}"]
    return argv


def main(argv: list[str] | None = None) -> None:
    """``sb3-po {train,enjoy,plot_train,plot_from_file,all_plots} [the zoo's flags]``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("train", "enjoy", "plot_train", "plot_from_file", "all_plots")
    if not argv or argv[0] not in commands:
        print(f"usage: sb3-po {{{','.join(commands)}}} [RL Zoo flags]   (e.g. sb3-po train --algo grpo --env CartPole-v1)")
        raise SystemExit(2)
    register()
    command, args = argv[0], argv[1:]
    if command == "train":
        args = default_arguments(args)
    if command == "enjoy":
        from rl_zoo3.enjoy import enjoy as entry
    elif command == "train":
        entry = rl_zoo3.train.train
    else:
        from rl_zoo3 import plots

        entry = getattr(plots, command)
    sys.argv = [f"sb3-po {command}", *args]
    entry()
