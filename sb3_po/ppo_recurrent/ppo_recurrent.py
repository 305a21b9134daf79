from typing import Any

import sb3_contrib
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from stable_baselines3.common.buffers import RolloutBuffer

from sb3_po.common import buffers


class RecurrentPPO(sb3_contrib.RecurrentPPO):
    """
    sb3-contrib's RecurrentPPO (PPO with LSTM policies) that takes SB3's ``rollout_buffer_class`` and
    ``rollout_buffer_kwargs``, so that an sb3-po advantage estimator can be chosen::

        from sb3_po.common.buffers import RecurrentNStepRolloutBuffer
        from sb3_po.ppo_recurrent import RecurrentPPO

        RecurrentPPO("MlpLstmPolicy", "CartPole-v1", rollout_buffer_class=RecurrentNStepRolloutBuffer,
                     rollout_buffer_kwargs=dict(n_step=5))

    sb3-contrib's RecurrentPPO builds its ``RecurrentRolloutBuffer`` (or ``RecurrentDictRolloutBuffer``) inside
    ``_setup_model`` and accepts no buffer class. What differs here: ``__init__`` stores the two keywords as SB3's
    ``OnPolicyAlgorithm`` does (they are saved with the model), and ``_setup_model`` runs sb3-contrib's and then,
    if a class was given, replaces the buffer by that class built with the same arguments (LSTM state shape,
    gamma, gae_lambda, n_envs) plus ``rollout_buffer_kwargs``. Without a class it is sb3-contrib's RecurrentPPO.

    :param args: sb3-contrib's RecurrentPPO arguments (``policy``, ``env``, ...)
    :param rollout_buffer_class: A ``RecurrentRolloutBuffer`` subclass, e.g.
        ``sb3_po.common.buffers.RecurrentNStepRolloutBuffer`` (its Dict variant is chosen by itself); ``None``
        for sb3-contrib's own buffer (GAE)
    :param rollout_buffer_kwargs: Keyword arguments of the buffer class (``n_step`` for the n-step estimator)
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    :param kwargs: sb3-contrib's RecurrentPPO keyword arguments
    """

    def __init__(
        self,
        *args: Any,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        super().__init__(*args, _init_setup_model=False, **kwargs)  # type: ignore[misc]  # args hold no _init_setup_model
        self.rollout_buffer_class = rollout_buffer_class
        self.rollout_buffer_kwargs = rollout_buffer_kwargs or {}
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        buffer_class = self.rollout_buffer_class
        if buffer_class is not None and not issubclass(buffer_class, (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer)):
            guess = f"Recurrent{buffer_class.__name__}"
            hint = f"; use sb3_po.common.buffers.{guess}" if hasattr(buffers, guess) else ""
            raise TypeError(
                "RecurrentPPO keeps LSTM states in its rollout buffer, so rollout_buffer_class must be a "
                f"RecurrentRolloutBuffer subclass, got {buffer_class.__name__}{hint}."
            )
        super()._setup_model()
        recurrent = self.rollout_buffer
        assert isinstance(recurrent, (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer))
        if buffer_class is not None:
            self.rollout_buffer = buffer_class(
                self.n_steps,
                self.observation_space,
                self.action_space,
                recurrent.hidden_state_shape,
                self.device,
                gamma=self.gamma,
                gae_lambda=self.gae_lambda,
                n_envs=self.n_envs,
                **self.rollout_buffer_kwargs,
            )
