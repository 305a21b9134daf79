"""
The bridge to RL Zoo (rl_zoo3): rl_zoo3 has no plugin mechanism, so :func:`register` does four small, visible things:

- adds ``vpg``, ``kl_ppo``, ``grpo`` and ``npg`` to ``rl_zoo3.utils.ALGOS`` and their Optuna samplers to
  ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` (the zoo's argparse choices are built from ALGOS when
  ``train()`` runs, so they appear on the command line);
- replaces ``rl_zoo3.train.ExperimentManager`` by :class:`ExperimentManager`, a subclass that resolves
  class-valued hyperparameters given as dotted strings (``rollout_buffer_class``) and their keyword
  strings (``rollout_buffer_kwargs: dict(n_step=5)``), and wraps GRPO's envs in ``RestorableEnv``;
- makes ``ppo_lstm`` :class:`sb3_po.ppo_recurrent.RecurrentPPO`, sb3-contrib's RecurrentPPO that also takes
  ``rollout_buffer_class`` (an sb3-po estimator; without one it is sb3-contrib's RecurrentPPO);
- nothing else: SB3's and sb3-contrib's algorithms stay as they are.
"""

from typing import Any

from sb3_po.common.optional import require
from sb3_po.common.zoo_entries import resolve_hyperparams, with_restorable_env
from sb3_po.registry import algorithms

require("rl_zoo3", feature="The RL Zoo bridge (sb3-po train / enjoy)")
import rl_zoo3.exp_manager  # noqa: E402
import rl_zoo3.train  # noqa: E402
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER  # noqa: E402
from rl_zoo3.utils import ALGOS  # noqa: E402

from sb3_po.ppo_recurrent import RecurrentPPO  # noqa: E402
from sb3_po.zoo.samplers import SAMPLERS  # noqa: E402

# the zoo's algorithms that take no rollout_buffer_class, replaced by a subclass that does
WITH_BUFFER_CLASS = {"ppo_lstm": RecurrentPPO}


class ExperimentManager(rl_zoo3.exp_manager.ExperimentManager):
    """
    rl_zoo3's ExperimentManager; what differs: class-valued hyperparameters given as dotted strings are
    resolved, ``clip_range: null`` is accepted (KLPPO without clipping), and GRPO's envs are wrapped in
    ``RestorableEnv``.
    """

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):
        hyperparams = resolve_hyperparams(hyperparams)
        if self.algo == "grpo":
            hyperparams["env_wrapper"] = with_restorable_env(
                hyperparams.get("env_wrapper"), hyperparams.get("state_mode", "auto")
            )
        return super()._preprocess_hyperparams(hyperparams)

    @staticmethod
    def _preprocess_schedules(hyperparams: dict[str, Any]) -> dict[str, Any]:
        # the zoo rejects None for a schedule; KLPPO's clip_range=None means "no clipping"
        unset: dict[str, Any] = {
            key: None for key in ("clip_range", "clip_range_vf") if key in hyperparams and hyperparams[key] is None
        }
        hyperparams = rl_zoo3.exp_manager.ExperimentManager._preprocess_schedules(
            {k: v for k, v in hyperparams.items() if k not in unset}
        )
        return {**hyperparams, **unset}


def register() -> None:
    """Make rl_zoo3 know the sb3-po algorithms (idempotent)."""
    ALGOS.update(algorithms())
    ALGOS.update(WITH_BUFFER_CLASS)
    HYPERPARAMS_SAMPLER.update(SAMPLERS)
    rl_zoo3.train.ExperimentManager = ExperimentManager  # type: ignore[misc]  # rl_zoo3.train builds its class by name
