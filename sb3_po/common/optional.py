"""
Optional dependencies: imported where a feature uses them, and one message naming the extra that installs them.

A base install (``pip install sb3-po``) trains, saves and loads every algorithm on classic-control envs. The rest
comes with an extra; :func:`require` imports a module of one and turns its absence into one clear error::

    optuna = require("optuna", feature="hyperparameter tuning")
    # ImportError: hyperparameter tuning needs optuna, which a base install of sb3-po does not include:
    #     pip install 'sb3-po[zoo]'
"""

import importlib
from types import ModuleType

# top-level module -> the sb3-po extra that installs it
EXTRAS: dict[str, str] = {
    "rl_zoo3": "zoo",
    "optuna": "zoo",
    "pandas": "zoo",
    "plotly": "zoo",
    "seaborn": "zoo",
    "sklearn": "zoo",
    "huggingface_sb3": "zoo",
    "matplotlib": "plots",
    "mujoco": "mujoco",
    "Box2D": "box2d",
    "ray": "cluster",
    "ale_py": "pixels",
    "minatar": "pixels",
    "cv2": "pixels",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def install_hint(module: str, extra: str | None = None) -> str:
    """``pip install 'sb3-po[<extra>]'`` for the extra that installs ``module``."""
    extra = extra or EXTRAS.get(module.split(".")[0], "zoo")
    return f"pip install 'sb3-po[{extra}]'"


def missing_extra_message(module: str, feature: str, extra: str | None = None) -> str:
    return (
        f"{feature} needs {module.split('.')[0]}, which a base install of sb3-po does not include: "
        f"{install_hint(module, extra)}"
    )


def require(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """
    Import ``module`` for ``feature``, or raise :class:`MissingExtraError` naming the extra to install.

    :param module: the dotted module name (``"rl_zoo3.train"``)
    :param feature: what the user asked for, for the message (``"sb3-po train"``)
    :param extra: the sb3-po extra that installs it (default: looked up in :data:`EXTRAS` by top-level name)
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        # only the absence of an optional package itself; an ImportError inside an installed package is its own bug
        missing = getattr(error, "name", None) or ""
        if missing.split(".")[0] not in EXTRAS and missing.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtraError(missing_extra_message(missing or module, feature, extra)) from error


# Gymnasium's env families that need an extra: the module of the env's entry point -> (the module it needs, extra)
ENV_FAMILIES: dict[str, tuple[str, str]] = {
    "gymnasium.envs.box2d": ("Box2D", "box2d"),
    "gymnasium.envs.mujoco": ("mujoco", "mujoco"),
}


def require_env(env_id: str) -> None:
    """
    Raise :class:`MissingExtraError` (one line naming the extra) when ``env_id`` is one of Gymnasium's Box2D or
    MuJoCo envs and the package it needs is not installed. Nothing is imported: only the env's registration is read.
    Unknown ids and other families pass (``gym.make`` reports those).
    """
    import importlib.util

    import gymnasium as gym

    spec = gym.registry.get(env_id)
    entry_point = spec.entry_point if spec is not None and isinstance(spec.entry_point, str) else ""
    for prefix, (module, extra) in ENV_FAMILIES.items():
        if entry_point.startswith(prefix) and importlib.util.find_spec(module) is None:
            raise MissingExtraError(f"{env_id} needs {module}, which is not installed: {install_hint(module, extra)}")
