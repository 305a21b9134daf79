"""NaN / inf from the env and non-finite losses stop training with a clear error, before any parameter moves."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecCheckNan

from sb3_po import GRPO, KLPPO, VPG
from sb3_po.common.checks import check_finite_loss, check_finite_step
from sb3_po.common.env_state import RestorableEnv


class PoisonEnv(gym.Env):
    """Finite until step ``bad_step`` of the first episode, where the reward (or observation) is NaN or inf."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,))
    action_space = spaces.Discrete(2)

    def __init__(self, bad_step=7, what="reward", value=np.nan):
        self.bad_step, self.what, self.value, self.total = bad_step, what, value, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        bad = self.total == self.bad_step
        obs = np.full(2, self.value if bad and self.what == "observation" else 0.1 * self.t, dtype=np.float32)
        reward = self.value if bad and self.what == "reward" else 1.0
        return obs, reward, self.t >= 10, False, {}


def flat(model):
    return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()


@pytest.mark.parametrize("what", ["reward", "observation"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("algo", ["vpg", "kl_ppo", "grpo"])
def test_non_finite_env_output_is_detected_before_the_update(algo, what, value):
    if algo == "grpo":
        # bad_step=20: RestorableEnv's construction-time check plays the env's first 7 steps
        kwargs = dict(what=what, value=value, bad_step=20)
        env = make_vec_env(PoisonEnv, n_envs=1, wrapper_class=RestorableEnv, env_kwargs=kwargs)
        model = GRPO("MlpPolicy", env, group_size=2, n_groups=2, device="cpu")
        pattern = r"env 0 returned a non-finite"
    else:
        env = make_vec_env(PoisonEnv, n_envs=2, env_kwargs=dict(what=what, value=value))
        model = (VPG if algo == "vpg" else KLPPO)(
            "MlpPolicy", env, n_steps=16, device="cpu", **({"batch_size": 16} if algo == "kl_ppo" else {})
        )
        pattern = r"env 0 returned a non-finite .* num_timesteps=14\."  # the 7th step of env 0 and 1: the first is named
    before = flat(model)
    with pytest.raises(ValueError, match=pattern) as error:
        model.learn(64)
    assert what in str(error.value) and "VecCheckNan" in str(error.value)
    assert th.equal(flat(model), before)  # nothing was learned from it


def test_vec_check_nan_still_works_when_the_user_wraps():
    env = VecCheckNan(make_vec_env(PoisonEnv, n_envs=1), raise_exception=True)
    with pytest.raises(ValueError, match="found nan in rewards"):  # VecCheckNan speaks first
        VPG("MlpPolicy", env, n_steps=16, device="cpu").learn(32)


def test_check_helpers():
    check_finite_step("X", np.ones(2), {"a": np.zeros((2, 1)), "b": np.zeros(2, dtype=np.int64)}, 10)
    obs = np.zeros((3, 4))
    obs[1, 3] = -np.inf
    with pytest.raises(ValueError, match=r"X: env 1 returned a non-finite observation .* num_timesteps=12\."):
        check_finite_step("X", np.ones(3), obs, 12)
    with pytest.raises(ValueError, match=r"non-finite observation\['b'\]"):
        check_finite_step("X", np.ones(2), {"a": np.zeros((2, 1)), "b": np.array([0.0, np.nan])}, 12)
    check_finite_loss("X", th.tensor(1.0))
    with pytest.raises(FloatingPointError, match=r"X: the loss is inf \(kl=inf\)"):
        check_finite_loss("X", th.tensor(float("inf")), kl=th.tensor(float("inf")))
    # a float (the sum of the terms an algorithm logs anyway), and a tensor of context reported by its maximum
    check_finite_loss("X", 1.5, ratio=th.tensor([1.0, float("nan")]))
    with pytest.raises(FloatingPointError, match=r"X: the loss is nan \(beta=2, ratio max=3\)"):
        check_finite_loss("X", float("nan"), beta=2.0, ratio=th.tensor([1.0, 3.0]))


def test_exploding_kl_cannot_overflow_beta_or_poison_the_policy():
    model = KLPPO(
        "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, learning_rate=5.0, kl_target=1e-6, seed=0, device="cpu"
    )
    try:
        model.learn(64 * 30)
    except FloatingPointError as error:  # a step that would have produced NaN was refused
        assert "optimiser step was not taken" in str(error)
    assert model.beta <= model.beta_bounds[1] and np.isfinite(model.beta)
    assert all(th.all(th.isfinite(p)) for p in model.policy.parameters())
