"""
The algorithms by name, above them all: what the RL Zoo bridge (``sb3_po.zoo``), ``scripts/benchmark.py`` and
``scripts/throughput.py`` share. The shipped entries, hyperparameter resolution and env construction live in
:mod:`sb3_po.common.zoo_entries` (re-exported here), which knows no algorithm.
"""

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from sb3_po.common.zoo_entries import (
    CLASS_KEYS,
    CONFIG_DIR,
    KWARGS_KEYS,
    RESTORABLE_ENV,
    config_path,
    default_timesteps,
    make_env,
    parse_value,
    resolve_class,
    resolve_hyperparams,
    schedule,
    with_restorable_env,
    zoo_entries,
)

__all__ = [
    "CLASS_KEYS",
    "CONFIG_DIR",
    "KWARGS_KEYS",
    "RESTORABLE_ENV",
    "algorithm_class",
    "algorithm_name",
    "algorithms",
    "build_model",
    "config_path",
    "default_timesteps",
    "make_env",
    "parse_value",
    "reference_algorithms",
    "resolve_class",
    "resolve_hyperparams",
    "schedule",
    "with_restorable_env",
    "zoo_entries",
]


def algorithms() -> dict[str, type[BaseAlgorithm]]:
    """The sb3-po algorithms by their RL Zoo name (``vpg``, ``kl_ppo``, ``grpo``, ``npg``)."""
    from sb3_po.grpo import GRPO
    from sb3_po.kl_ppo import KLPPO
    from sb3_po.npg import NPG
    from sb3_po.vpg import VPG

    return {"vpg": VPG, "kl_ppo": KLPPO, "grpo": GRPO, "npg": NPG}


def reference_algorithms() -> dict[str, type[BaseAlgorithm]]:
    """SB3's and sb3-contrib's algorithms the benchmarks compare with (``ppo_lstm``: sb3-contrib's RecurrentPPO
    through :class:`sb3_po.ppo_recurrent.RecurrentPPO`, which also takes an estimator's ``rollout_buffer_class``)."""
    from sb3_contrib import TRPO
    from stable_baselines3 import A2C, PPO

    from sb3_po.ppo_recurrent import RecurrentPPO

    return {"ppo": PPO, "a2c": A2C, "trpo": TRPO, "ppo_lstm": RecurrentPPO}


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """An sb3-po or reference algorithm by its RL Zoo name."""
    classes = {**reference_algorithms(), **algorithms()}
    if name not in classes:
        raise ValueError(f"Unknown algorithm {name!r}: one of {sorted(classes)}")
    return classes[name]


def algorithm_name(algorithm: type) -> str | None:
    """The RL Zoo name of an sb3-po algorithm class or of a subclass of one (None for others): its ``zoo_name``."""
    return getattr(algorithm, "zoo_name", None)


def build_model(algo: str, env_id: str, seed: int, hyperparams: dict[str, Any], device: str = "cpu") -> BaseAlgorithm:
    """
    A model from an RL Zoo style entry, outside the zoo: the env (``n_envs``, ``normalize``), the policy and every
    hyperparameter resolved (strings parsed, ``lin_<x>`` schedules); ``n_timesteps`` is ignored.
    """
    hp = resolve_hyperparams(hyperparams)
    hp.pop("n_timesteps", None)
    n_envs = hp.pop("n_envs", 1)
    normalize = hp.pop("normalize", False)
    policy = hp.pop("policy", "MlpPolicy")
    if isinstance(hp.get("policy_kwargs"), str):
        hp["policy_kwargs"] = parse_value(hp["policy_kwargs"])
    for key in ("learning_rate", "clip_range", "critic_learning_rate"):
        if key in hp:
            hp[key] = schedule(hp[key])
    env = make_env(algo, env_id, n_envs=n_envs, seed=seed, state_mode=hp.get("state_mode", "auto"))
    if normalize:
        norm_kwargs = parse_value(normalize) if isinstance(normalize, str) else normalize
        env = VecNormalize(env, gamma=hp.get("gamma", 0.99), **(norm_kwargs if isinstance(norm_kwargs, dict) else {}))
    return algorithm_class(algo)(policy, env, seed=seed, device=device, **hp)
