"""
Conformance of VPG, KLPPO, GRPO and NPG with the interface of SB3's on-policy algorithms, as parametrized matrices in
the style of SB3's own test suite: action and observation spaces, VecEnv classes, gSDE, VecNormalize, devices,
SB3's identity tasks, predict() and callbacks.

GRPO needs restorable envs: its VecEnvs are built with ``wrapper_class=RestorableEnv`` (``make_env`` below).
SubprocVecEnv cases use the "fork" start method: "forkserver" (SB3's default) takes ~5 s to start on CI.
"""

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize, VecTransposeImage

from sb3_po import GRPO, KLPPO, NPG, VPG
from sb3_po.common.env_state import RestorableEnv

ALGOS = [VPG, KLPPO, GRPO, NPG]

# Small rollouts and few gradient steps: these tests check the interface, not learning
FAST = {
    VPG: dict(n_steps=16, n_critic_updates=2),
    KLPPO: dict(n_steps=16, batch_size=16, n_epochs=2),
    NPG: dict(n_steps=16, batch_size=16, n_critic_updates=2),
    GRPO: dict(group_size=2, n_groups=1, n_epochs=2, n_minibatches=2),
}
# SB3's reference algorithm, with the same rollout size as FAST
PPO_FAST = dict(n_steps=16, batch_size=16, n_epochs=2)

ACTION_ENVS = {
    "discrete": functools.partial(IdentityEnv, 4, ep_length=10),
    "multidiscrete": functools.partial(IdentityEnvMultiDiscrete, 4, ep_length=10),
    "multibinary": functools.partial(IdentityEnvMultiBinary, 4, ep_length=10),
    "box": functools.partial(IdentityEnvBox, eps=0.5, ep_length=10),
}


def make_env(algo, env_fn, n_envs=1, vec_env_cls=DummyVecEnv, seed=0):
    """A VecEnv of ``env_fn``; restorable for GRPO (the only way GRPO accepts a VecEnv)."""
    vec_env_kwargs = dict(start_method="fork") if vec_env_cls is SubprocVecEnv else None
    return make_vec_env(
        env_fn,
        n_envs=n_envs,
        seed=seed,
        wrapper_class=RestorableEnv if algo is GRPO else None,
        vec_env_cls=vec_env_cls,
        vec_env_kwargs=vec_env_kwargs,
    )


def batch_of(obs, n):
    if isinstance(obs, dict):
        return {key: np.stack([value] * n) for key, value in obs.items()}
    return np.stack([obs] * n)


def check_predict(model, reference, obs, n=5):
    """
    predict() on one observation and on a batch of ``n``, deterministic and not: the shapes, dtypes and types SB3's
    PPO (``reference``, same spaces) returns, and actions inside the action space.
    """
    space = model.action_space
    batch = batch_of(obs, n)
    for deterministic in (True, False):
        action, state = model.predict(obs, deterministic=deterministic)
        ref_action, _ = reference.predict(obs, deterministic=deterministic)
        assert state is None
        assert isinstance(action, np.ndarray) and action.shape == space.shape == ref_action.shape
        assert action.dtype == ref_action.dtype
        assert space.contains(action), action
        actions, state = model.predict(batch, deterministic=deterministic)
        ref_actions, _ = reference.predict(batch, deterministic=deterministic)
        assert state is None
        assert actions.shape == (n, *space.shape) == ref_actions.shape and actions.dtype == ref_actions.dtype
        assert all(space.contains(a) for a in actions)


# -- action spaces and predict -------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", list(ACTION_ENVS))
@pytest.mark.parametrize("algo", ALGOS)
def test_action_spaces_and_predict(algo, env_name):
    env_fn = ACTION_ENVS[env_name]
    model = algo("MlpPolicy", make_env(algo, env_fn), seed=0, device="cpu", **FAST[algo])
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(96)
    assert model.num_timesteps >= 96 and model._n_updates > 0
    after = model.policy.state_dict()
    assert not th.equal(before["action_net.weight"], after["action_net.weight"])  # it learned something
    assert model.action_space == env_fn().action_space
    reference = PPO("MlpPolicy", env_fn(), device="cpu", **PPO_FAST)
    obs = env_fn().observation_space.sample()
    check_predict(model, reference, obs)
    # deterministic: the mode, the same for the same observation; stochastic: sampled
    batch = batch_of(obs, 64)
    deterministic = model.predict(batch, deterministic=True)[0]
    assert (deterministic == deterministic[0]).all()
    np.testing.assert_array_equal(deterministic, model.predict(batch, deterministic=True)[0])
    sampled = model.predict(batch, deterministic=False)[0]
    assert len(np.unique(sampled.reshape(64, -1), axis=0)) > 1


# -- observation spaces --------------------------------------------------------------------------------------------

OBS_CASES = {
    # name: (policy, env factory, features extractor)
    "box": ("MlpPolicy", lambda: gym.make("CartPole-v1"), None),
    "image": ("CnnPolicy", lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), NatureCNN),
    "dict": ("MultiInputPolicy", lambda: SimpleMultiObsEnv(random_start=False), CombinedExtractor),
}


@pytest.mark.parametrize("obs_name", list(OBS_CASES))
@pytest.mark.parametrize("algo", ALGOS)
def test_observation_spaces(algo, obs_name):
    policy, env_fn, extractor = OBS_CASES[obs_name]
    env = env_fn()
    model = algo(policy, env, seed=0, device="cpu", **FAST[algo])
    if extractor is not None:
        assert isinstance(model.policy.features_extractor, extractor)
    if obs_name == "image":  # channel-last images are transposed for the CNN, as SB3 does
        assert isinstance(model.get_env(), VecTransposeImage)
        assert model.observation_space.shape == (1, 36, 36)
    model.learn(32)
    assert model.num_timesteps >= 32 and model._n_updates > 0
    stored = model.rollout_buffer.observations
    if obs_name == "dict":
        assert set(stored) == set(model.observation_space.spaces)
    elif obs_name == "image":
        assert stored.shape[-3:] == (1, 36, 36)
    reference = PPO(policy, env_fn(), device="cpu", **PPO_FAST)
    obs, _ = env_fn().reset(seed=0)
    check_predict(model, reference, obs)


# -- VecEnv classes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
@pytest.mark.parametrize("algo", ALGOS)
def test_vec_env_classes(algo, vec_env_cls):
    env = make_env(algo, functools.partial(IdentityEnv, 4, ep_length=10), n_envs=2, vec_env_cls=vec_env_cls)
    try:
        model = algo("MlpPolicy", env, seed=0, device="cpu", **FAST[algo])
        assert model.get_env() is env and model.n_envs == 2
        model.learn(64)
        assert model.num_timesteps >= 64 and model.num_timesteps % 2 == 0
        if algo is GRPO:
            # whole episodes of 10 steps, in a group that shares its start
            buffer = model.rollout_buffer
            assert list(buffer.episode_lengths) == [10, 10]
            starts = buffer.start_observations()[0]
            assert starts[0] == starts[1]
        else:
            assert (model.rollout_buffer.buffer_size, model.rollout_buffer.n_envs) == (16, 2)
            assert model.num_timesteps == 64
        actions, _ = model.predict(env.reset(), deterministic=True)
        assert actions.shape == (2,)
    finally:
        env.close()


# -- gSDE -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sde_sample_freq", [None, -1, 4], ids=["no-gsde", "gsde", "gsde-resample-4"])
@pytest.mark.parametrize("algo", ALGOS)
def test_gsde(algo, sde_sample_freq):
    """gSDE off, on with SB3's default sde_sample_freq=-1 (one noise matrix per rollout), and resampled every 4 steps."""
    use_sde = sde_sample_freq is not None
    env_fn = functools.partial(IdentityEnvBox, eps=0.5, ep_length=10)
    kwargs = dict(use_sde=True, sde_sample_freq=sde_sample_freq) if use_sde else {}
    model = algo("MlpPolicy", make_env(algo, env_fn), seed=0, device="cpu", **FAST[algo], **kwargs)
    dist_cls = StateDependentNoiseDistribution if use_sde else DiagGaussianDistribution
    assert type(model.policy.action_dist) is dist_cls
    latent_dim = model.policy.mlp_extractor.latent_dim_pi
    assert model.policy.log_std.shape == ((latent_dim, 1) if use_sde else (1,))
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(64)
    assert model.num_timesteps >= 64 and model._n_updates > 0
    # the identity task rewards some actions and not others: the policy's mean action moves
    after = model.policy.state_dict()
    assert not th.equal(before["action_net.weight"], after["action_net.weight"])
    obs = np.array([[0.3]], dtype=np.float32)
    first = model.predict(obs, deterministic=False)[0]
    second = model.predict(obs, deterministic=False)[0]
    if use_sde:
        # gSDE: the noise is a function of the state until the exploration matrix is resampled
        np.testing.assert_array_equal(first, second)
        model.policy.reset_noise()
        assert not np.array_equal(first, model.predict(obs, deterministic=False)[0])
    else:
        assert not np.array_equal(first, second)


@pytest.mark.parametrize("algo", ALGOS)
def test_gsde_needs_box_actions_as_in_ppo(algo):
    env_fn = functools.partial(IdentityEnv, 4, ep_length=10)
    with pytest.raises(ValueError) as expected:
        PPO("MlpPolicy", env_fn(), use_sde=True)
    with pytest.raises(ValueError) as raised:
        algo("MlpPolicy", make_env(algo, env_fn), use_sde=True, **FAST[algo])
    assert str(raised.value) == str(expected.value)
    assert "gSDE" in str(raised.value) and "continuous actions" in str(raised.value)


# -- VecNormalize -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_vec_normalize(algo):
    # GRPO scores episodes by their raw returns: it needs norm_reward=False (and refuses norm_reward=True)
    norm_reward = algo is not GRPO
    env = VecNormalize(make_env(algo, "CartPole-v1", n_envs=2), norm_reward=norm_reward)
    model = algo("MlpPolicy", env, seed=0, device="cpu", **FAST[algo])
    assert model.get_vec_normalize_env() is env
    model.learn(64)
    # the running statistics saw the reset at the start of learn() and every step, as with PPO (count starts at 1e-4)
    assert env.obs_rms.count == pytest.approx(1e-4 + 2 + model.num_timesteps)
    # the model acts on normalised observations
    np.testing.assert_allclose(model._last_obs, env.normalize_obs(env.get_original_obs()), rtol=1e-6)
    if algo is GRPO:
        # CartPole gives +1 per step: the raw (discounted) return of an episode of length L is sum_t gamma^t
        buffer = model.rollout_buffer
        lengths = np.asarray(buffer.episode_lengths)
        np.testing.assert_allclose(buffer.episode_returns.reshape(-1), (1 - model.gamma**lengths) / (1 - model.gamma))
    else:
        rewards = model.rollout_buffer.rewards
        assert not np.allclose(rewards, 1.0) and np.all(rewards > 0)  # normalised, not CartPole's raw +1


# -- devices ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "auto"])
@pytest.mark.parametrize("algo", ALGOS)
def test_device(algo, device):
    kwargs = dict(FAST[algo], beta=0.1) if algo is GRPO else FAST[algo]  # GRPO: a reference policy too
    model = algo("MlpPolicy", "CartPole-v1", seed=0, device=device, **kwargs)
    expected = get_device(device)
    assert model.device == expected and model.policy.device.type == expected.type
    modules = [model.policy] + ([model.ref_policy] if algo is GRPO else [])
    assert all(p.device.type == expected.type for module in modules for p in module.parameters())
    model.learn(32)
    assert model.num_timesteps >= 32 and model._n_updates > 0
    action, _ = model.predict(np.zeros(4, dtype=np.float32), deterministic=True)
    assert isinstance(action, np.ndarray) and action.shape == ()


# -- SB3's identity tasks -----------------------------------------------------------------------------------------
# SB3's tests/test_identity.py: DIM = 4, IdentityEnv / IdentityEnvMultiDiscrete / IdentityEnvMultiBinary with
# gamma=0.4, IdentityEnvBox(eps=0.5); 100-step episodes; evaluate_policy over 20 episodes with reward_threshold=90.
# Budgets and hyperparameters below pass with the fixed seed (and, when they were chosen, with seeds 0-3).
# gamma=0.4 also for the Box task (SB3 uses 0.95 for PPO there; VPG's single gradient step per rollout does not
# reach 90 at 0.95 in a few seconds).

VPG_IDENTITY = dict(n_steps=100, learning_rate=0.02, gamma=0.4, n_critic_updates=20, critic_learning_rate=0.01)
KLPPO_IDENTITY = dict(n_steps=256, batch_size=64, n_epochs=5, learning_rate=3e-3, gamma=0.4)
# GRPO: process supervision (per-step rewards normalised over the group, discounted by gamma): the identity task
# rewards every step. With outcome supervision (the default), only the Discrete task is learned within a few
# seconds (see the last case); MultiDiscrete / MultiBinary stay at 12-44 after 4000 steps.
GRPO_IDENTITY = dict(
    group_size=4, n_groups=1, n_epochs=10, n_minibatches=4, learning_rate=3e-3, supervision="process", gamma=0.4
)
IDENTITY_ENVS = {
    "discrete": lambda: IdentityEnv(4),
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(4),
    "multibinary": lambda: IdentityEnvMultiBinary(4),
    "box": lambda: IdentityEnvBox(eps=0.5),
}
IDENTITY_CASES = [
    (VPG, "discrete", 3000, VPG_IDENTITY),
    (VPG, "multidiscrete", 3000, VPG_IDENTITY),
    (VPG, "multibinary", 5000, VPG_IDENTITY),
    (VPG, "box", 5000, VPG_IDENTITY),
    (KLPPO, "discrete", 1536, KLPPO_IDENTITY),
    (KLPPO, "multidiscrete", 1536, KLPPO_IDENTITY),
    (KLPPO, "multibinary", 1536, KLPPO_IDENTITY),
    (KLPPO, "box", 1536, KLPPO_IDENTITY),
    (GRPO, "discrete", 2000, GRPO_IDENTITY),
    (GRPO, "multidiscrete", 2000, GRPO_IDENTITY),
    (GRPO, "multibinary", 2000, GRPO_IDENTITY),
    (GRPO, "box", 2000, GRPO_IDENTITY),
    (GRPO, "discrete", 4000, dict(group_size=8, n_groups=1, n_epochs=10, n_minibatches=4, learning_rate=5e-3)),
]


@pytest.mark.parametrize(
    "algo,env_name,n_steps,kwargs",
    IDENTITY_CASES,
    ids=[f"{a.__name__}-{e}-{k.get('supervision', 'outcome') if a is GRPO else n}" for a, e, n, k in IDENTITY_CASES],
)
def test_identity(algo, env_name, n_steps, kwargs):
    model = algo("MlpPolicy", IDENTITY_ENVS[env_name](), seed=0, device="cpu", **kwargs)
    model.learn(n_steps)
    assert model.num_timesteps >= n_steps
    eval_env = IDENTITY_ENVS[env_name]()
    eval_env.action_space.seed(0)  # the identity envs draw their observations from the action space
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=20, warn=False)
    assert mean_reward >= 90


# -- callbacks ------------------------------------------------------------------------------------------------------


def small_identity(algo, n_envs=1):
    return make_env(algo, functools.partial(IdentityEnv, 2, ep_length=10), n_envs=n_envs)


@pytest.mark.parametrize("threshold", [-1.0, 1e9], ids=["reached", "not-reached"])
@pytest.mark.parametrize("algo", ALGOS)
def test_eval_callback_and_stop_on_reward_threshold(algo, threshold, tmp_path):
    stop = StopTrainingOnRewardThreshold(reward_threshold=threshold)
    eval_env = Monitor(IdentityEnv(2, ep_length=10))
    eval_callback = EvalCallback(
        eval_env, callback_on_new_best=stop, eval_freq=20, n_eval_episodes=2, best_model_save_path=tmp_path, log_path=tmp_path
    )
    model = algo("MlpPolicy", small_identity(algo), seed=0, device="cpu", **FAST[algo])
    model.learn(100, callback=eval_callback)
    results = np.load(tmp_path / "evaluations.npz")
    if threshold < 0:
        # any mean reward (>= 0) is above the threshold: training stops at the first evaluation, step 20
        assert model.num_timesteps == 20 and eval_callback.n_calls == 20
        assert eval_callback.evaluations_timesteps == [20] and stop.n_calls == 1
    else:
        assert model.num_timesteps >= 100
        assert eval_callback.evaluations_timesteps == [20 * k for k in range(1, model.num_timesteps // 20 + 1)]
    np.testing.assert_array_equal(results["timesteps"], eval_callback.evaluations_timesteps)
    assert results["results"].shape == (len(eval_callback.evaluations_timesteps), 2)
    assert eval_callback.best_mean_reward == results["results"].mean(axis=1).max()
    best = algo.load(tmp_path / "best_model", device="cpu")
    assert type(best) is algo and best.num_timesteps in eval_callback.evaluations_timesteps


@pytest.mark.parametrize("algo", ALGOS)
def test_checkpoint_callback(algo, tmp_path):
    checkpoint = CheckpointCallback(save_freq=20, save_path=tmp_path, name_prefix="ckpt")
    model = algo("MlpPolicy", small_identity(algo), seed=0, device="cpu", **FAST[algo])
    model.learn(60, callback=checkpoint)
    assert model.num_timesteps >= 60
    expected = {f"ckpt_{20 * k}_steps.zip" for k in range(1, model.num_timesteps // 20 + 1)}
    assert {path.name for path in tmp_path.iterdir()} == expected
    for k in range(1, model.num_timesteps // 20 + 1):
        loaded = algo.load(tmp_path / f"ckpt_{20 * k}_steps", device="cpu")
        assert type(loaded) is algo and loaded.num_timesteps == 20 * k


class StopAfter(BaseCallback):
    """Returns False at its ``n``-th step; records the locals seen at every step and the events."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.step_keys = []
        self.first_step_locals = None
        self.events = []

    def _on_training_start(self):
        self.events.append("training_start")

    def _on_rollout_start(self):
        self.events.append("rollout_start")

    def _on_step(self):
        self.step_keys.append(set(self.locals))
        if self.first_step_locals is None:
            self.first_step_locals = dict(self.locals)
        return self.n_calls < self.n

    def _on_rollout_end(self):
        self.events.append("rollout_end")

    def _on_training_end(self):
        self.events.append("training_end")


@pytest.mark.parametrize("algo", ALGOS)
def test_custom_callback_stops_training(algo):
    model = algo("MlpPolicy", small_identity(algo), seed=0, device="cpu", **FAST[algo])
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    callback = StopAfter(7)
    model.learn(1000, callback=callback)
    # stopped in the first rollout, at the 7th step: no update, as SB3 does
    assert callback.n_calls == 7 and model.num_timesteps == 7 and model._n_updates == 0
    assert callback.events == ["training_start", "rollout_start", "training_end"]
    after = model.policy.state_dict()
    assert all(th.equal(before[k], after[k]) for k in before)


@functools.cache
def ppo_callback_locals(n_envs=2):
    callback = StopAfter(30)
    env = make_vec_env(functools.partial(IdentityEnv, 2, ep_length=10), n_envs=n_envs, seed=0)
    PPO("MlpPolicy", env, seed=0, device="cpu", **PPO_FAST).learn(1000, callback=callback)
    return callback


@pytest.mark.parametrize("algo", ALGOS)
def test_callback_locals_keys_match_ppo(algo):
    """
    A callback written for PPO reads ``self.locals``: the keys PPO gives at every step (those of its first step:
    SB3 accumulates them) must be there at every step of ours. PPO gives more later in the rollout (``idx``,
    ``done``, ``terminal_obs``, ``terminal_value``: loop variables of its timeout bootstrap), not compared.
    """
    ppo = ppo_callback_locals()
    callback = StopAfter(30)
    model = algo("MlpPolicy", small_identity(algo, n_envs=2), seed=0, device="cpu", **FAST[algo])
    model.learn(1000, callback=callback)
    expected = ppo.step_keys[0]
    assert {"self", "callback", "env", "rollout_buffer", "n_steps", "new_obs", "rewards", "dones", "infos"} <= expected
    assert {"actions", "values", "log_probs"} <= expected
    assert len(callback.step_keys) == 30
    missing = set().union(*(expected - keys for keys in callback.step_keys))
    assert sorted(missing) == []


@pytest.mark.parametrize("algo", ALGOS)
def test_callback_locals_values_match_ppo(algo):
    """The per-step values a PPO callback reads have PPO's types and shapes (n_envs=2)."""
    ppo = ppo_callback_locals().first_step_locals
    callback = StopAfter(3)
    model = algo("MlpPolicy", small_identity(algo, n_envs=2), seed=0, device="cpu", **FAST[algo])
    model.learn(1000, callback=callback)
    ours = callback.first_step_locals
    assert ours["self"] is model and ours["env"] is model.get_env()
    for key in ("new_obs", "rewards", "dones", "infos", "actions", "values", "log_probs"):
        if key in ours:  # a missing key is test_callback_locals_keys_match_ppo's failure
            assert type(ours[key]) is type(ppo[key]), key
            assert np.shape(ours[key]) == np.shape(ppo[key]), key
