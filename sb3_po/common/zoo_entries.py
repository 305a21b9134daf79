"""
The shipped RL Zoo entries (``sb3_po/zoo_configs/<algo>.yml``), the resolution of hyperparameters the YAML gives as
strings (dotted class names, ``dict(...)`` keyword strings: parsed, never ``eval``-ed), and env construction (GRPO's
envs wrapped in ``RestorableEnv``). It knows no algorithm: :mod:`sb3_po.registry`, above the algorithms, names them
and builds their models.

Nothing here needs rl_zoo3 or Optuna: a base install can read the shipped entries.
"""

import ast
import importlib
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv

CONFIG_DIR = Path(__file__).resolve().parent.parent / "zoo_configs"
RESTORABLE_ENV = "sb3_po.common.env_state.RestorableEnv"
# hyperparameters whose value may be a dotted class name, and their keyword arguments given as a string
CLASS_KEYS = ("rollout_buffer_class",)
KWARGS_KEYS = ("rollout_buffer_kwargs",)
# short names the RL Zoo's YAML uses in policy_kwargs (``activation_fn=nn.ReLU``), as rl_zoo3 imports them
_NAMESPACES = {"nn": "torch.nn", "th": "torch"}


# -- the shipped RL Zoo entries ------------------------------------------------------------------------------


def config_path(algo: str) -> Path:
    """The RL Zoo YAML of one of our algorithms, as shipped in the package."""
    return CONFIG_DIR / f"{algo}.yml"


def zoo_entries(algo: str) -> dict[str, dict[str, Any]]:
    """Every entry (env id -> hyperparameters) of the shipped YAML of ``algo``; empty if there is none."""
    path = config_path(algo)
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def default_timesteps(algo: str, env_id: str | None) -> int | None:
    """``n_timesteps`` of the shipped entry of ``algo`` for ``env_id`` (None without one)."""
    entry = zoo_entries(algo).get(env_id) if env_id is not None else None
    if not entry or "n_timesteps" not in entry:
        return None
    return int(float(entry["n_timesteps"]))


# -- hyperparameters given as strings ----------------------------------------------------------------------


def resolve_class(name: str) -> Any:
    """``"package.module.Name"`` -> the object (a class), imported; what rl_zoo3's ``get_class_by_name`` does."""
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise ValueError(f"{name!r} is not a dotted class name (package.module.ClassName)")
    head, _, rest = module_name.partition(".")
    module_name = ".".join(part for part in (_NAMESPACES.get(head, head), rest) if part)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Cannot resolve {name!r}: {error}") from error


def parse_value(text: str) -> Any:
    """
    A hyperparameter written as Python in the zoo's YAML, parsed without ``eval``: literals, lists, tuples, dicts,
    ``dict(key=value, ...)`` (nested), and dotted names of classes (``nn.ReLU``, ``th.nn.Tanh``,
    ``sb3_po.common.buffers.NStepRolloutBuffer``). Anything else (calls, operators, bare names) is refused.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"Cannot parse the hyperparameter {text!r}: {error.msg}") from None
    return _value(tree.body, text)


def _value(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant):
        return ast.literal_eval(node)
    if isinstance(node, ast.List):
        return [_value(e, text) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e, text) for e in node.elts)
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_value(k, text): _value(v, text) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    is_dict_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
    if isinstance(node, ast.Call) and is_dict_call and not node.args and all(k.arg is not None for k in node.keywords):
        return {k.arg: _value(k.value, text) for k in node.keywords}
    if isinstance(node, ast.Attribute):
        resolved = resolve_class(ast.unparse(node))
        if isinstance(resolved, type):
            return resolved
    raise ValueError(
        f"Cannot parse {ast.unparse(node)!r} in the hyperparameter {text!r}: only literals, dict(key=value, ...) and "
        "dotted class names (nn.ReLU, package.module.Class) are accepted"
    )


def resolve_hyperparams(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Dotted class names and keyword strings (which rl_zoo3 leaves as strings) become objects."""
    hyperparams = dict(hyperparams)
    for key in CLASS_KEYS:
        if isinstance(hyperparams.get(key), str):
            hyperparams[key] = resolve_class(hyperparams[key])
    for key in KWARGS_KEYS:
        if isinstance(hyperparams.get(key), str):
            hyperparams[key] = parse_value(hyperparams[key])
    return hyperparams


def schedule(value: Any) -> Any:
    """A ``lin_<x>`` string (the RL Zoo's linear schedule from x to 0) as SB3's ``LinearSchedule``; others unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


# -- envs and models ----------------------------------------------------------------------------------------


def with_restorable_env(env_wrapper: Any, state_mode: str = "auto") -> list[Any]:
    """
    The zoo's ``env_wrapper`` entry with ``RestorableEnv`` appended (outermost, above Monitor) if absent,
    restoring states the way GRPO's ``state_mode`` hyperparameter asks (e.g. ``seed`` for LunarLander).
    """
    wrappers = [] if env_wrapper is None else (list(env_wrapper) if isinstance(env_wrapper, list) else [env_wrapper])
    names = [w if isinstance(w, str) else next(iter(w)) for w in wrappers]
    if RESTORABLE_ENV in names:
        return wrappers
    return [*wrappers, RESTORABLE_ENV if state_mode == "auto" else {RESTORABLE_ENV: {"state_mode": state_mode}}]


def make_env(algo: str, env_id: str, n_envs: int = 1, seed: int | None = None, state_mode: str = "auto") -> VecEnv:
    """
    ``make_vec_env(env_id, n_envs, seed)``; for GRPO each env wrapped in ``RestorableEnv`` (GRPO restores env
    states). An env of a family that is not installed (MuJoCo, Box2D) names the sb3-po extra that installs it; the
    RL Zoo's own envs (``CartPoleNoVel-v1`` of its ``ppo_lstm`` entries) are found where rl_zoo3 is installed.
    """
    import importlib.util

    import gymnasium as gym

    if env_id not in gym.registry and importlib.util.find_spec("rl_zoo3") is not None:
        import rl_zoo3.import_envs  # noqa: F401  (registers the zoo's own envs: CartPoleNoVel-v1, ...)

    wrapper: dict[str, Any] = {}
    if algo == "grpo":
        from sb3_po.common.env_state import RestorableEnv

        wrapper = dict(wrapper_class=RestorableEnv, wrapper_kwargs=dict(state_mode=state_mode, seed=seed))
    try:
        return make_vec_env(env_id, n_envs=n_envs, seed=seed, **wrapper)
    except gym.error.DependencyNotInstalled as error:
        from sb3_po.common.optional import MissingExtraError

        family = "mujoco" if "mujoco" in str(error).lower() else "box2d" if "box2d" in str(error).lower() else None
        if family is None:
            raise
        raise MissingExtraError(f"{env_id} needs {family}: pip install 'sb3-po[{family}]' ({error})") from error
