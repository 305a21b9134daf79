"""The estimator buffers inside SB3's own algorithms."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.envs import SimpleMultiObsEnv

from sb3_po.common.buffers import (
    GAERolloutBuffer,
    MonteCarloRolloutBuffer,
    NStepRolloutBuffer,
    TD0RolloutBuffer,
)
from sb3_po.common.estimators import gae_advantages, monte_carlo_advantages, n_step_advantages, td_residuals

BUFFERS = [
    (GAERolloutBuffer, {}),
    (MonteCarloRolloutBuffer, {}),
    (TD0RolloutBuffer, {}),
    (NStepRolloutBuffer, {"n_step": 3}),
]
ALGOS = [
    (PPO, dict(n_steps=32, batch_size=32, n_epochs=2)),
    (A2C, dict(n_steps=8)),
    (TRPO, dict(n_steps=32, batch_size=32, n_critic_updates=2)),
]


def fill(buffer, rng):
    for _ in range(buffer.buffer_size):
        obs = buffer.observation_space.sample()
        if isinstance(obs, dict):
            obs = {k: np.stack([v] * buffer.n_envs) for k, v in obs.items()}
        else:
            obs = np.stack([obs] * buffer.n_envs)
        buffer.add(
            obs,
            np.zeros((buffer.n_envs, 1)),
            rng.normal(size=buffer.n_envs).astype(np.float32),
            (rng.random(buffer.n_envs) < 0.2).astype(np.float32),
            th.as_tensor(rng.normal(size=buffer.n_envs), dtype=th.float32),
            th.zeros(buffer.n_envs),
        )


DICT_SPACE = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)})


@pytest.mark.parametrize("obs_space", [spaces.Box(-1, 1, (3,)), DICT_SPACE])
def test_buffers_fill_returns_and_dict_dispatch(obs_space):
    rng = np.random.default_rng(1)
    gamma, n_envs, n_steps = 0.9, 3, 20
    for buffer_class, kwargs in BUFFERS:
        buffer = buffer_class(n_steps, obs_space, spaces.Discrete(2), gamma=gamma, gae_lambda=0.7, n_envs=n_envs, **kwargs)
        assert isinstance(buffer, buffer_class) and isinstance(buffer, RolloutBuffer)
        assert isinstance(buffer, DictRolloutBuffer) == isinstance(obs_space, spaces.Dict)
        fill(buffer, rng)
        last_values, dones = th.as_tensor(rng.normal(size=n_envs), dtype=th.float32), np.array([True, False, False])
        buffer.compute_returns_and_advantage(last_values, dones)
        np.testing.assert_array_equal(buffer.returns, buffer.advantages + buffer.values)
        assert buffer.advantages.dtype == np.float32 and buffer.advantages.shape == (n_steps, n_envs)
        args = (buffer.rewards, buffer.values, buffer.episode_starts, last_values.numpy(), dones, gamma)
        expected = {
            GAERolloutBuffer: gae_advantages(*args, gae_lambda=0.7),
            MonteCarloRolloutBuffer: monte_carlo_advantages(*args),
            TD0RolloutBuffer: td_residuals(*args),
            NStepRolloutBuffer: n_step_advantages(*args, n_step=3),
        }[buffer_class]
        np.testing.assert_allclose(buffer.advantages, expected, rtol=1e-6)
        # sampling still works (SB3's get() flattens the arrays)
        batch = next(buffer.get(batch_size=10))
        assert batch.advantages.shape == (10,)


def test_dict_variant_is_created_once():
    space = spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
    a = NStepRolloutBuffer(4, space, spaces.Discrete(2), n_step=2)
    b = NStepRolloutBuffer(4, space, spaces.Discrete(2), n_step=2)
    assert type(a) is type(b) and type(a).__name__ == "DictNStepRolloutBuffer" and a.n_step == 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_n_step_validation(bad):
    with pytest.raises(ValueError, match="n_step must be an integer >= 1"):
        NStepRolloutBuffer(4, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), n_step=bad)


def test_gae_buffer_trains_ppo_identically_to_sb3():
    """GAERolloutBuffer in PPO gives bit-identical parameters to PPO's default buffer (time limits included)."""
    params = []
    for kwargs in ({}, {"rollout_buffer_class": GAERolloutBuffer}):
        model = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_epochs=2, seed=3, device="cpu", **kwargs)
        model.learn(256)  # Pendulum truncates at 200 steps: the time-limit bootstrap is exercised
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    assert th.equal(params[0], params[1])


@pytest.mark.parametrize("algo,algo_kwargs", ALGOS, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("buffer_class,buffer_kwargs", BUFFERS, ids=lambda x: getattr(x, "__name__", ""))
def test_end_to_end_with_sb3_algorithms(tmp_path, algo, algo_kwargs, buffer_class, buffer_kwargs):
    model = algo(
        "MlpPolicy",
        "CartPole-v1",
        rollout_buffer_class=buffer_class,
        rollout_buffer_kwargs=buffer_kwargs,
        seed=0,
        device="cpu",
        **algo_kwargs,
    )
    model.learn(64)
    assert isinstance(model.rollout_buffer, buffer_class)
    assert model.num_timesteps >= 64
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", env=model.get_env(), device="cpu")
    assert loaded.rollout_buffer_class is buffer_class and loaded.rollout_buffer_kwargs == buffer_kwargs
    assert isinstance(loaded.rollout_buffer, buffer_class)
    obs = model.get_env().reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(64, reset_num_timesteps=False)


@pytest.mark.parametrize("algo,algo_kwargs", ALGOS, ids=lambda x: getattr(x, "__name__", ""))
def test_dict_observations_without_naming_a_dict_class(algo, algo_kwargs):
    model = algo(
        "MultiInputPolicy",
        SimpleMultiObsEnv(random_start=True),
        rollout_buffer_class=NStepRolloutBuffer,
        rollout_buffer_kwargs={"n_step": 4},
        seed=0,
        device="cpu",
        **algo_kwargs,
    )
    model.learn(64)
    assert isinstance(model.rollout_buffer, DictRolloutBuffer) and isinstance(model.rollout_buffer, NStepRolloutBuffer)
