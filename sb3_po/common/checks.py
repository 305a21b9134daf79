"""Early, clear failures for what would otherwise poison a policy silently."""

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

VEC_CHECK_NAN_HINT = (
    "Wrap the env in stable_baselines3.common.vec_env.VecCheckNan(env, raise_exception=True) to stop at the step "
    "that produced it, or fix the env."
)


# -- hyperparameters --------------------------------------------------------------------------------------------


def check_choice(algo: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    """
    Raise ``ValueError`` ("``<algo>: <name> must be one of (...), got <value>``") unless ``value`` is one of ``choices``.

    :param algo: the algorithm's (or class's) name, for the message
    :param name: the hyperparameter's keyword
    :param value: its value
    :param choices: the accepted values
    """
    if value not in choices:
        raise ValueError(f"{algo}: {name} must be one of {tuple(choices)}, got {value!r}")


def check_int(algo: str, name: str, value: Any, minimum: int, hint: str = "") -> None:
    """
    Raise ``ValueError`` unless ``value`` is an integer (a Python or NumPy one, not a bool) ``>= minimum``.

    :param algo: the algorithm's (or class's) name, for the message
    :param name: the hyperparameter's keyword
    :param value: its value
    :param minimum: the smallest accepted value
    :param hint: a sentence appended to the message (the way out)
    """
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{algo}: {name} must be an integer >= {minimum}, got {value!r}" + (f". {hint}" if hint else ""))


def check_number(algo: str, name: str, value: Any, minimum: float, strict: bool = False) -> None:
    """
    Raise ``ValueError`` unless ``value`` is a finite real number ``>= minimum`` (``> minimum`` with ``strict``).

    :param algo: the algorithm's (or class's) name, for the message
    :param name: the hyperparameter's keyword
    :param value: its value
    :param minimum: the bound
    :param strict: whether the bound itself is refused
    """
    ok = isinstance(value, (Real, np.floating, np.integer)) and not isinstance(value, bool) and np.isfinite(float(value))
    if not ok or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{algo}: {name} must be a finite number {'>' if strict else '>='} {minimum}, got {value!r}")


# -- env steps and losses -----------------------------------------------------------------------------------------


def check_finite_step(algo: str, rewards: np.ndarray, observations: Any, num_timesteps: int) -> None:
    """
    Raise ``ValueError`` naming the env whose reward or observation of this step is NaN or inf.

    :param algo: the algorithm's name, for the message
    :param rewards: shape (n_envs,)
    :param observations: shape (n_envs, ...), or a dict of such arrays
    :param num_timesteps: the model's step count, for the message
    """
    named = {"reward": np.asarray(rewards)}
    if isinstance(observations, dict):
        named.update({f"observation[{key!r}]": np.asarray(value) for key, value in observations.items()})
    else:
        named["observation"] = np.asarray(observations)
    for name, array in named.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue
        finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():
            env = int(np.argmin(finite))
            raise ValueError(
                f"{algo}: env {env} returned a non-finite {name} ({array[env]}) at the step that took the model to "
                f"num_timesteps={num_timesteps}. Training stopped before the policy saw it. {VEC_CHECK_NAN_HINT}"
            )


class FiniteCheckCallback(BaseCallback):
    """Checks every env step's rewards and new observations (``collect_rollouts``' locals) before the policy sees them."""

    def _on_step(self) -> bool:
        check_finite_step(type(self.model).__name__, self.locals["rewards"], self.locals["new_obs"], self.model.num_timesteps)
        return True


def check_finite_loss(algo: str, loss: th.Tensor | float, **context: Any) -> None:
    """
    Raise ``FloatingPointError`` before a non-finite loss reaches the optimiser (the parameters stay as they are).

    :param loss: the loss, or a float an algorithm already has (the sum of the loss terms it logs: no extra tensor
        operation per minibatch)
    :param context: values named in the message, read only when it is raised; a tensor of several elements
        is reported by its maximum (``ratio=ratio`` reads ``ratio max=...``)
    """
    value = loss if isinstance(loss, float) else float(loss.detach())
    if not math.isfinite(value):
        details = ", ".join(_describe(k, v) for k, v in context.items())
        raise FloatingPointError(
            f"{algo}: the loss is {value} ({details}); the optimiser step was not taken, so the parameters are "
            "those of the last finite step. Lower the learning rate or check the rewards' scale."
        )


def _describe(name: str, value: Any) -> str:
    if isinstance(value, th.Tensor) and value.numel() > 1:
        return f"{name} max={float(value.max()):.4g}"
    return f"{name}={float(value):.4g}"
