"""
RL Zoo (rl_zoo3) for the sb3-po algorithms: train, enjoy, tune and plot them with the zoo's own code.

- :mod:`sb3_po.zoo.bridge`: ``register()`` and the zoo's ``ExperimentManager`` subclass (needs rl_zoo3);
- :mod:`sb3_po.zoo.samplers`: the Optuna samplers (needs optuna);
- :mod:`sb3_po.zoo.cli`: the ``sb3-po`` command line;
- :mod:`sb3_po.registry`: the algorithms by name, the shipped YAML, hyperparameter resolution and env
  construction, shared with the scripts (no rl_zoo3 needed).

Importing this package needs nothing beyond a base install; the names of the bridge and the samplers are loaded
when first used, and a missing ``zoo`` extra then says how to install it.
"""

import importlib
from typing import Any

from sb3_po.common.zoo_entries import CONFIG_DIR, RESTORABLE_ENV, config_path, resolve_hyperparams, with_restorable_env
from sb3_po.zoo.cli import default_arguments, main

_LAZY = {
    "ExperimentManager": "bridge",
    "register": "bridge",
    "SAMPLERS": "samplers",
    "NET_ARCHS": "samplers",
    "ACTIVATIONS": "samplers",
    "sample_vpg_params": "samplers",
    "sample_kl_ppo_params": "samplers",
    "sample_grpo_params": "samplers",
    "sample_npg_params": "samplers",
}

__all__ = [
    "CONFIG_DIR",
    "RESTORABLE_ENV",
    "config_path",
    "default_arguments",
    "main",
    "resolve_hyperparams",
    "with_restorable_env",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"sb3_po.zoo.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sb3_po.zoo' has no attribute {name!r}")
