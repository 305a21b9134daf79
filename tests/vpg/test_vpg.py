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
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

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


# -- SB3's custom-policy contract: any ActorCriticPolicy ----------------------------------------------------------


class CustomNetwork(nn.Module):
    """SB3's documentation, "Custom Network Architecture": separate policy and value networks over the features."""

    def __init__(self, feature_dim: int, last_layer_dim_pi: int = 64, last_layer_dim_vf: int = 64):
        super().__init__()
        # IMPORTANT: save output dimensions, used to create the distributions
        self.latent_dim_pi = last_layer_dim_pi
        self.latent_dim_vf = last_layer_dim_vf
        self.policy_net = nn.Sequential(nn.Linear(feature_dim, last_layer_dim_pi), nn.ReLU())
        self.value_net = nn.Sequential(nn.Linear(feature_dim, last_layer_dim_vf), nn.ReLU())

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.value_net(features)


class CustomActorCriticPolicy(ActorCriticPolicy):
    def __init__(self, observation_space, action_space, lr_schedule, *args, **kwargs):
        # Disable orthogonal initialization
        kwargs["ortho_init"] = False
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = CustomNetwork(self.features_dim)


class SharedTrunk(CustomNetwork):
    """A variant whose actor and critic share a first layer (named so that no name says "value")."""

    def __init__(self, feature_dim: int):
        super().__init__(16)
        self.trunk = nn.Sequential(nn.Linear(feature_dim, 16), nn.Tanh())
        self.critic_body = self.value_net
        del self.value_net

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.policy_net(self.trunk(features))

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.critic_body(self.trunk(features))


class SharedTrunkPolicy(CustomActorCriticPolicy):
    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SharedTrunk(self.features_dim)


def ids(params):
    return {id(p) for p in params}


def test_a_custom_policy_of_sb3s_documentation_trains_saves_and_loads(tmp_path):
    model = VPG(
        CustomActorCriticPolicy,
        "CartPole-v1",
        n_steps=256,
        n_critic_updates=40,
        critic_learning_rate=5e-3,
        seed=0,
        device="cpu",
    )
    policy = model.policy
    critic = [*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters()]
    actor = [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]
    assert ids(p for g in policy.critic_optimizer.param_groups for p in g["params"]) == ids(critic)
    assert ids(p for g in policy.optimizer.param_groups for p in g["params"]) == ids(actor)
    actor_before, critic_before = flat(actor), flat(critic)
    model.set_logger(configure(None, ["csv"]))
    model.learn(512)
    values = model.logger.name_to_value
    assert values["train/value_loss_final"] < 0.9 * values["train/value_loss"]  # the baseline is fitted
    assert not th.equal(flat(actor), actor_before) and not th.equal(flat(critic), critic_before)

    model.save(tmp_path / "custom")
    loaded = VPG.load(tmp_path / "custom", env=model.get_env(), device="cpu")
    assert type(loaded.policy) is CustomActorCriticPolicy
    th.testing.assert_close(flat(loaded.policy.parameters()), flat(model.policy.parameters()))
    for name in ("optimizer", "critic_optimizer"):
        a, b = getattr(model.policy, name).state_dict(), getattr(loaded.policy, name).state_dict()
        assert len(a["state"]) == len(b["state"]) > 0
        for k in a["state"]:
            th.testing.assert_close(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"])
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(256, reset_num_timesteps=False)
    assert loaded.num_timesteps == 768


def test_sb3s_own_actor_critic_policy_is_accepted():
    """SB3's ActorCriticPolicy as A2C and PPO take it: mlp_extractor.value_net and value_net are the baseline."""
    model = VPG(ActorCriticPolicy, "Pendulum-v1", n_steps=64, n_critic_updates=2, seed=0, device="cpu")
    policy = model.policy
    critic = [*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters()]
    assert ids(p for g in policy.critic_optimizer.param_groups for p in g["params"]) == ids(critic)
    assert ids(p for g in policy.optimizer.param_groups for p in g["params"]) == ids(policy.parameters()) - ids(critic)
    assert any(p is policy.log_std for g in policy.optimizer.param_groups for p in g["params"])
    model.learn(128)


def test_a_shared_trunk_is_fitted_by_the_baseline_too_and_a_warning_says_so():
    with pytest.warns(UserWarning, match=r"2 parameters .*\(mlp_extractor\.trunk\.0\.weight.*moves these shared features"):
        model = VPG(SharedTrunkPolicy, "CartPole-v1", n_steps=64, n_critic_updates=3, seed=0, device="cpu")
    policy = model.policy
    trunk = list(policy.mlp_extractor.trunk.parameters())
    critic = [*trunk, *policy.mlp_extractor.critic_body.parameters(), *policy.value_net.parameters()]
    assert ids(p for g in policy.critic_optimizer.param_groups for p in g["params"]) == ids(critic)
    actor = [*trunk, *policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]
    assert ids(p for g in policy.optimizer.param_groups for p in g["params"]) == ids(actor)
    model.learn(64)


def test_a_custom_policy_without_baseline_or_value_is_refused():
    with pytest.raises(TypeError, match="baseline='none' needs a VPGPolicy"):
        VPG(ActorCriticPolicy, "CartPole-v1", baseline="none")


def test_rms_prop_option():
    model = VPG("MlpPolicy", "CartPole-v1", use_rms_prop=True, device="cpu")
    assert isinstance(model.policy.optimizer, th.optim.RMSprop) and isinstance(model.policy.critic_optimizer, th.optim.RMSprop)
    assert isinstance(model.action_space, spaces.Discrete)
