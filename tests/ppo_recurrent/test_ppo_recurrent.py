"""sb3_po.ppo_recurrent.RecurrentPPO: sb3-contrib's RecurrentPPO with a rollout_buffer_class (estimators: test_buffers.py)."""

import pytest
import sb3_contrib

from sb3_po.common.buffers import NStepRolloutBuffer, RecurrentNStepRolloutBuffer
from sb3_po.ppo_recurrent import RecurrentPPO

TINY = dict(n_steps=16, batch_size=16, n_epochs=1, policy_kwargs=dict(lstm_hidden_size=8, net_arch=[8]), device="cpu")


def test_a_buffer_without_lstm_states_is_refused_with_the_class_to_use():
    with pytest.raises(TypeError, match=r"use sb3_po\.common\.buffers\.RecurrentNStepRolloutBuffer"):
        RecurrentPPO("MlpLstmPolicy", "CartPole-v1", rollout_buffer_class=NStepRolloutBuffer, **TINY)


def test_without_a_buffer_class_it_is_sb3_contribs_recurrent_ppo(tmp_path):
    model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", **TINY)
    assert isinstance(model, sb3_contrib.RecurrentPPO)
    assert type(model.rollout_buffer) is sb3_contrib.common.recurrent.buffers.RecurrentRolloutBuffer


def test_the_estimator_is_saved_and_sb3_contrib_still_loads_the_model(tmp_path):
    model = RecurrentPPO(
        "MlpLstmPolicy",
        "CartPole-v1",
        rollout_buffer_class=RecurrentNStepRolloutBuffer,
        rollout_buffer_kwargs={"n_step": 2},
        **TINY,
    )
    model.learn(16)
    model.save(tmp_path / "model")
    loaded = RecurrentPPO.load(tmp_path / "model", device="cpu")
    assert isinstance(loaded.rollout_buffer, RecurrentNStepRolloutBuffer) and loaded.rollout_buffer.n_step == 2
    plain = sb3_contrib.RecurrentPPO.load(tmp_path / "model", device="cpu")  # e.g. the zoo's enjoy without sb3-po
    assert plain.rollout_buffer_class is RecurrentNStepRolloutBuffer
