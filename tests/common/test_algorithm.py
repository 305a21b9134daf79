"""What every sb3-po algorithm adds to SB3's BaseAlgorithm: an env that raises in a worker process."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import SubprocVecEnv

from sb3_po import GRPO, KLPPO, NPG, VPG
from sb3_po.common.env_state import RestorableEnv

ROOT = Path(__file__).resolve().parents[2]


class RaisingEnv(gym.Env):
    """Raises inside step at its 30th step."""

    observation_space = spaces.Box(-1, 1, (2,))
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == 30:
            raise RuntimeError("sensor disconnected")
        return np.zeros(2, dtype=np.float32), 1.0, False, self.t >= 100, {}


@pytest.mark.parametrize("algo", [VPG, KLPPO, GRPO, NPG])
def test_an_env_raising_in_a_subprocess_is_reported_and_the_model_survives(tmp_path, algo):
    wrapper = dict(wrapper_class=RestorableEnv, wrapper_kwargs=dict(verify_steps=1)) if algo is GRPO else {}
    env = make_vec_env(RaisingEnv, n_envs=2, vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method="fork"), **wrapper)
    kwargs = dict(group_size=2, n_groups=1) if algo is GRPO else dict(n_steps=16)
    if algo in (KLPPO, NPG):
        kwargs["batch_size"] = 16
    model = algo("MlpPolicy", env, device="cpu", **kwargs)
    with pytest.raises(RuntimeError, match=r"an environment worker process stopped .* traceback the worker printed above"):
        model.learn(200)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", device="cpu")
    obs = np.zeros((3, 2), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


class TupleActionEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,))
    action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


@pytest.mark.parametrize("algo", [VPG, KLPPO, GRPO, NPG])
def test_unsupported_action_space_fails_at_construction(algo):
    # SB3's own check and message, as for PPO and A2C
    with pytest.raises(AssertionError, match=r"The algorithm only supports .* as action spaces but Tuple"):
        algo("MlpPolicy", TupleActionEnv())


def test_load_of_another_librarys_file_names_its_policy_class(tmp_path):
    """The message names the saved policy class (SB3 records its metaclass, abc.ABCMeta, as the type)."""
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64).save(tmp_path / "ppo")
    with pytest.raises(ValueError, match=r"policy stable_baselines3\.common\.policies\.ActorCriticPolicy\)") as info:
        KLPPO.load(tmp_path / "ppo")
    assert "ABCMeta" not in str(info.value)

    class MyPolicy(ActorCriticPolicy):  # defined here: cloudpickle saves it by value, not by reference
        pass

    PPO(MyPolicy, "CartPole-v1", n_steps=64, batch_size=64).save(tmp_path / "mine")
    with pytest.raises(ValueError, match=rf"policy {__name__}\.MyPolicy\)"):
        VPG.load(tmp_path / "mine")


class StopAtFirstStep(BaseCallback):
    def _on_step(self) -> bool:
        return False


@pytest.mark.parametrize("algo", [VPG, KLPPO, GRPO, NPG])
def test_learn_without_a_budget_takes_the_shipped_zoo_entrys(algo):
    expected = {
        name: int(float(yaml.safe_load((ROOT / "zoo_configs" / f"{name}.yml").read_text())["Pendulum-v1"]["n_timesteps"]))
        for name in ("vpg", "kl_ppo", "grpo", "npg")
    }[{VPG: "vpg", KLPPO: "kl_ppo", GRPO: "grpo", NPG: "npg"}[algo]]
    kwargs = dict(group_size=2, n_groups=1) if algo is GRPO else dict(n_steps=64)
    model = algo("MlpPolicy", "Pendulum-v1", seed=0, **kwargs)
    model.learn(callback=StopAtFirstStep())  # stops at once: only the budget it was given matters here
    assert model._total_timesteps == expected > 0
    # no entry for this env: a clear error, nothing trained
    model = algo("MlpPolicy", CartPoleEnv(), seed=0, **kwargs)
    with pytest.raises(ValueError, match=r"learn\(\) needs total_timesteps.*has none for an env without an id"):
        model.learn()
    assert model.num_timesteps == 0
