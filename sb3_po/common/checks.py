"""Early, clear failures for what would otherwise poison a policy silently."""

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

VEC_CHECK_NAN_HINT = (
    "Wrap the env in stable_baselines3.common.vec_env.VecCheckNan(env, raise_exception=True) to stop at the step "
    "that produced it, or fix the env."
)


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


def check_finite_loss(algo: str, loss: th.Tensor, **context: Any) -> None:
    """Raise ``FloatingPointError`` before a non-finite loss reaches the optimiser (the parameters stay as they are)."""
    if not bool(th.isfinite(loss)):
        details = ", ".join(f"{k}={float(v):.4g}" for k, v in context.items())
        raise FloatingPointError(
            f"{algo}: the loss is {float(loss)} ({details}); the optimiser step was not taken, so the parameters are "
            "those of the last finite step. Lower the learning rate or check the rewards' scale."
        )
