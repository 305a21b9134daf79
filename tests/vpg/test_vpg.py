import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure

from sb3_po import VPG
from sb3_po.common.buffers import MonteCarloRolloutBuffer, NStepRolloutBuffer
from sb3_po.common.policies import ZeroBaseline


def flat(params):
    return th.nn.utils.parameters_to_vector(list(params)).detach().clone()


def test_one_policy_gradient_step_is_the_paper_gradient():
    """With SGD, the actor moves by exactly -lr * grad of -mean(log pi(a|s) * A) over the whole batch."""
    lr = 0.05
    model = VPG(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=50,
        learning_rate=lr,
        max_grad_norm=1e9,
        normalize_advantage=False,
        policy_kwargs=dict(optimizer_class=th.optim.SGD, optimizer_kwargs={}),
        seed=0,
        device="cpu",
    )
    model.learn(50)  # collects one rollout and trains on it
    # Recompute the gradient from the same rollout with the parameters from before the step
    model2 = VPG("MlpPolicy", "CartPole-v1", n_steps=50, seed=0, device="cpu")
    buffer = model.rollout_buffer
    data = next(buffer.get(None))
    dist = model2.policy.get_distribution(data.observations)
    loss = -(dist.log_prob(data.actions.long().flatten()) * data.advantages).mean()
    actor_before = model2.policy.actor_parameters()
    grads = th.autograd.grad(loss, actor_before)
    expected = flat(actor_before) - lr * th.cat([g.flatten() for g in grads])
    th.testing.assert_close(flat(model.policy.actor_parameters()), expected, rtol=1e-5, atol=1e-6)
    # and the critic moved (it was fitted), by its own optimiser
    assert not th.equal(flat(model.policy.critic_parameters()), flat(model2.policy.critic_parameters()))


def test_actor_and_critic_parameters_partition_the_policy():
    model = VPG("MlpPolicy", "CartPole-v1", device="cpu")
    actor, critic = model.policy.actor_parameters(), model.policy.critic_parameters()
    ids = {id(p) for p in model.policy.parameters()}
    assert {id(p) for p in actor} | {id(p) for p in critic} == ids
    assert not {id(p) for p in actor} & {id(p) for p in critic}
    assert {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]} == {id(p) for p in actor}
    assert {id(p) for g in model.policy.critic_optimizer.param_groups for p in g["params"]} == {id(p) for p in critic}


def test_critic_fit_reduces_value_loss():
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=256, n_critic_updates=40, seed=1, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(256)
    values = model.logger.name_to_value
    assert values["train/value_loss_final"] < 0.9 * values["train/value_loss"]
    assert values["train/critic_learning_rate"] == pytest.approx(1e-3)


def test_reinforce_without_baseline_uses_reward_to_go():
    model = VPG("MlpPolicy", "CartPole-v1", baseline="none", n_steps=64, gamma=0.9, seed=0, device="cpu")
    assert isinstance(model.policy.value_net, ZeroBaseline)
    assert model.policy.critic_parameters() == [] and model.policy.critic_optimizer is None
    n_baseline = sum(p.numel() for p in VPG("MlpPolicy", "CartPole-v1", device="cpu").policy.parameters())
    assert sum(p.numel() for p in model.policy.parameters()) == n_baseline - (4 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
    model.learn(64)
    buf = model.rollout_buffer
    assert np.all(buf.values == 0)
    np.testing.assert_array_equal(buf.returns, buf.advantages)
    # advantage = discounted reward-to-go within each episode (CartPole gives +1 per step), cut at the rollout's end
    adv, starts = buf.advantages.reshape(-1), buf.episode_starts.reshape(-1)
    expected, running = np.zeros(64), 0.0
    for t in reversed(range(64)):
        next_start = starts[t + 1] if t + 1 < 64 else 1.0  # bootstrap value is 0 without a baseline
        running = 1.0 + 0.9 * running * (1 - next_start)
        expected[t] = running
    np.testing.assert_allclose(adv, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "env",
    [
        IdentityEnv(4),
        IdentityEnvMultiDiscrete(3),
        IdentityEnvMultiBinary(3),
        IdentityEnvBox(ep_length=10),
    ],
    ids=["discrete", "multidiscrete", "multibinary", "box"],
)
def test_action_spaces(tmp_path, env):
    model = VPG("MlpPolicy", env, n_steps=32, seed=0, device="cpu")
    model.learn(64)
    model.save(tmp_path / "vpg")
    loaded = VPG.load(tmp_path / "vpg", device="cpu")
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_gsde_dict_and_cnn():
    VPG("MlpPolicy", "Pendulum-v1", use_sde=True, n_steps=32, device="cpu").learn(64)
    VPG("MultiInputPolicy", SimpleMultiObsEnv(), n_steps=32, device="cpu").learn(64)
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1)
    model = VPG("CnnPolicy", env, n_steps=16, n_critic_updates=2, device="cpu")
    model.learn(32)
    assert model.policy.features_extractor.__class__.__name__ == "NatureCNN"


def test_identity_env_is_learned():
    """VPG solves SB3's identity task as SB3's tests require of A2C/PPO (reward >= 90 of 100)."""
    env = IdentityEnv(4)
    model = VPG("MlpPolicy", env, n_steps=200, learning_rate=1e-2, seed=0, device="cpu")
    model.learn(6000)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=10)
    assert mean >= 90


@pytest.mark.parametrize("buffer_class,kwargs", [(MonteCarloRolloutBuffer, {}), (NStepRolloutBuffer, {"n_step": 8})])
def test_estimators_plug_in(buffer_class, kwargs):
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=32, rollout_buffer_class=buffer_class, rollout_buffer_kwargs=kwargs)
    model.learn(64)
    assert isinstance(model.rollout_buffer, buffer_class)


def test_save_load_restores_both_optimizers(tmp_path):
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=32, critic_learning_rate=5e-4, seed=0, device="cpu")
    model.learn(96)
    model.save(tmp_path / "vpg")
    loaded = VPG.load(tmp_path / "vpg", env=model.get_env(), device="cpu")
    assert loaded.critic_learning_rate == 5e-4 and loaded.n_critic_updates == 80
    for name in ("optimizer", "critic_optimizer"):
        a, b = getattr(model.policy, name).state_dict(), getattr(loaded.policy, name).state_dict()
        for k in a["state"]:
            th.testing.assert_close(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"])
    th.testing.assert_close(flat(model.policy.parameters()), flat(loaded.policy.parameters()))
    loaded.learn(32, reset_num_timesteps=False)
    assert loaded.num_timesteps == 128


def test_logged_keys():
    model = VPG("MlpPolicy", "Pendulum-v1", n_steps=32, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(32)
    keys = set(model.logger.name_to_value)
    assert {
        "train/policy_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/approx_kl",
        "train/explained_variance",
        "train/std",
        "train/learning_rate",
    } <= keys


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(baseline="critic"), "baseline must be one of"),
        (dict(n_critic_updates=0), "n_critic_updates"),
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=1), "normalize_advantage"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VPG("MlpPolicy", "CartPole-v1", **kwargs)


def test_rejects_a_policy_without_two_optimizers():
    from stable_baselines3.common.policies import ActorCriticPolicy

    with pytest.raises(TypeError, match="VPGPolicy"):
        VPG(ActorCriticPolicy, "CartPole-v1")


def test_rms_prop_option():
    model = VPG("MlpPolicy", "CartPole-v1", use_rms_prop=True, device="cpu")
    assert isinstance(model.policy.optimizer, th.optim.RMSprop) and isinstance(model.policy.critic_optimizer, th.optim.RMSprop)
    assert isinstance(model.action_space, spaces.Discrete)
