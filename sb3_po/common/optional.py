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
