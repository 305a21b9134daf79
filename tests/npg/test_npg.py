import copy

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence
from torch.func import functional_call

from sb3_po import NPG
from sb3_po.common.buffers import MonteCarloRolloutBuffer, NStepRolloutBuffer

# -- the step: theta += alpha F^-1 g, against a dense Fisher matrix ----------------------------------------------


class _DistributionParameters(nn.Module):
    """
    The action distribution's parameters of an MLP policy for observations, written out (SB3's own pipeline casts
    observations to float32): ``(logits,)`` for a Discrete action space, ``(mean, std)`` for a Box one.
    """

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs):
        latent = self.policy.mlp_extractor.forward_actor(self.policy.pi_features_extractor(obs))
        out = self.policy.action_net(latent)
        if isinstance(self.policy.action_space, spaces.Discrete):
            return (out,)
        return (out, th.ones_like(out) * th.exp(self.policy.log_std))


def _torch_distribution(params):
    return Categorical(logits=params[0]) if len(params) == 1 else Normal(params[0], params[1])


def dense_natural_step(model, before, delta, damping, step_size):
    """
    alpha * (F + damping I)^-1 g on the model's last rollout, in float64 and densely: F is the Hessian of the mean
    KL(pi_theta || pi_old) at theta_old (torch.autograd.functional.hessian), g the gradient of the surrogate
    mean(A * pi_theta / pi_old), the linear system solved exactly.
    """
    buffer = model.rollout_buffer  # flattened by train(): (n_steps * n_envs, ...)
    obs = th.as_tensor(buffer.observations, dtype=th.float64)
    actions = th.as_tensor(buffer.actions, dtype=th.float64)
    actions = actions.long().flatten() if actions.shape[1] == 1 and model.action_space.shape == () else actions
    old_log_prob = th.as_tensor(buffer.log_probs, dtype=th.float64).flatten()
    advantages = th.as_tensor(buffer.advantages, dtype=th.float64).flatten()
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    names = [name for name in before if "value" not in name]  # the actor's parameters, as TRPO splits them
    shapes = [before[name].shape for name in names]
    theta_old = th.cat([before[name].flatten() for name in names]).double()
    reference = _DistributionParameters(copy.deepcopy(model.policy).double())

    def distribution(theta):
        chunks = th.split(theta, [int(np.prod(s)) for s in shapes])
        params = {f"policy.{n}": c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return _torch_distribution(functional_call(reference, params, (obs,), strict=False))

    with th.no_grad():
        pi_old = distribution(theta_old)
        pi_old = _torch_distribution((pi_old.logits,) if isinstance(pi_old, Categorical) else (pi_old.loc, pi_old.scale))

    def mean_kl(theta):
        kl = kl_divergence(distribution(theta), pi_old)
        return (kl.sum(-1) if kl.dim() > 1 else kl).mean()

    def surrogate(theta):
        log_prob = distribution(theta).log_prob(actions)
        log_prob = log_prob.sum(-1) if log_prob.dim() > 1 else log_prob
        return (advantages * th.exp(log_prob - old_log_prob)).mean()

    fisher = th.autograd.functional.hessian(mean_kl, theta_old) + damping * th.eye(len(theta_old), dtype=th.float64)
    g = th.autograd.functional.jacobian(surrogate, theta_old)
    x = th.linalg.solve(fisher, g)
    alpha = step_size if step_size is not None else float(th.sqrt(2 * delta / (x @ fisher @ x)))
    return names, alpha, alpha * x


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("step_size", [None, 0.05], ids=["adaptive", "fixed"])
def test_the_step_is_alpha_times_the_dense_natural_gradient(env_id, step_size):
    delta, damping = 0.01, 0.1
    model = NPG(
        "MlpPolicy",
        env_id,
        n_steps=64,
        n_critic_updates=1,
        batch_size=64,
        target_kl=delta,
        cg_damping=damping,
        cg_max_steps=300,  # more than the actor's 58 (CartPole) or 42 (Pendulum) parameters: CG converges
        step_size=step_size,
        policy_kwargs=dict(net_arch=dict(pi=[8], vf=[8])),
        seed=0,
        device="cpu",
    )
    model.set_logger(configure(None, ["csv"]))
    before = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    model.learn(64)  # one rollout, one update
    after = dict(model.policy.named_parameters())

    names, alpha, expected = dense_natural_step(model, before, delta, damping, step_size)
    moved = th.cat([(after[n].detach() - before[n]).flatten() for n in names]).double()
    assert len(moved) == (58 if env_id == "CartPole-v1" else 42)
    assert float(expected.norm()) > 1e-2  # a real step
    th.testing.assert_close(moved, expected, rtol=0, atol=2e-4 * float(expected.abs().max()))  # measured: 2e-5
    assert model.logger.name_to_value["train/step_size"] == pytest.approx(alpha, rel=1e-3)
    if step_size is None:
        # the quadratic model of the KL at the step is delta
        assert model.logger.name_to_value["train/quadratic_kl"] == pytest.approx(delta, rel=1e-4)


def test_no_line_search_the_kl_is_not_enforced():
    """A large delta is taken whole: the measured KL may exceed target_kl (TRPO would backtrack or revert)."""
    model = NPG("MlpPolicy", "CartPole-v1", n_steps=256, target_kl=0.5, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(256)
    values = model.logger.name_to_value
    assert values["train/quadratic_kl"] == pytest.approx(0.5, rel=1e-4)
    assert values["train/kl"] > 0.1
    assert not hasattr(model, "line_search_max_iter")


def test_adaptive_step_measures_about_target_kl():
    model = NPG("MlpPolicy", "CartPole-v1", n_steps=512, target_kl=0.01, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(512)
    values = model.logger.name_to_value
    assert 0.005 < values["train/kl"] < 0.015
    assert values["train/policy_objective"] > 0  # the surrogate went up from its value 0 at theta_old
    assert values["train/step_size"] > 0


def test_logged_keys():
    model = NPG("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(64)
    keys = set(model.logger.name_to_value)
    assert {
        "train/kl",
        "train/step_size",
        "train/policy_objective",
        "train/value_loss",
        "train/kl_divergence_loss",
        "train/quadratic_kl",
        "train/explained_variance",
        "train/std",
        "train/learning_rate",
    } <= keys


# -- the interface ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [IdentityEnv(4), IdentityEnvMultiDiscrete(3), IdentityEnvMultiBinary(3), IdentityEnvBox(ep_length=10)],
    ids=["discrete", "multidiscrete", "multibinary", "box"],
)
def test_action_spaces_train_save_load_predict(tmp_path, env):
    model = NPG("MlpPolicy", env, n_steps=32, batch_size=32, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(64)
    assert model.logger.name_to_value["train/step_size"] > 0
    model.save(tmp_path / "npg")
    loaded = NPG.load(tmp_path / "npg", device="cpu")
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    th.testing.assert_close(
        th.nn.utils.parameters_to_vector(model.policy.parameters()),
        th.nn.utils.parameters_to_vector(loaded.policy.parameters()),
    )


def test_dict_observations_and_gsde(tmp_path):
    model = NPG("MultiInputPolicy", SimpleMultiObsEnv(), n_steps=32, batch_size=32, seed=0, device="cpu")
    model.learn(64)
    model.save(tmp_path / "dict")
    obs = model.env.reset()
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], NPG.load(tmp_path / "dict").predict(obs, deterministic=True)[0]
    )

    model = NPG("MlpPolicy", "Pendulum-v1", use_sde=True, sde_sample_freq=4, n_steps=64, batch_size=64, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    log_std = model.policy.log_std.detach().clone()
    model.learn(128)
    assert model.policy.use_sde
    assert not th.equal(model.policy.log_std.detach(), log_std)  # gSDE's log std is an actor parameter: the step moves it
    assert model.logger.name_to_value["train/step_size"] > 0


def test_callback_sees_every_step_and_rollout():
    class Count(BaseCallback):
        def __init__(self):
            super().__init__()
            self.steps = self.rollouts = 0

        def _on_step(self) -> bool:
            self.steps += 1
            return True

        def _on_rollout_end(self) -> None:
            self.rollouts += 1

    callback = Count()
    NPG("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu").learn(96, callback=callback)
    assert (callback.steps, callback.rollouts) == (96, 3)


@pytest.mark.parametrize("buffer_class,kwargs", [(MonteCarloRolloutBuffer, {}), (NStepRolloutBuffer, {"n_step": 8})])
def test_estimators_plug_in(buffer_class, kwargs):
    model = NPG(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=32,
        batch_size=32,
        rollout_buffer_class=buffer_class,
        rollout_buffer_kwargs=kwargs,
        device="cpu",
    )
    model.learn(64)
    assert isinstance(model.rollout_buffer, buffer_class)


def test_save_load_keeps_the_step_options(tmp_path):
    model = NPG("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, step_size=0.2, target_kl=0.02, seed=0, device="cpu")
    model.learn(64)
    model.save(tmp_path / "npg")
    loaded = NPG.load(tmp_path / "npg", env=model.get_env(), device="cpu")
    assert (loaded.step_size, loaded.target_kl, loaded.cg_damping) == (0.2, 0.02, 0.1)
    loaded.learn(32, reset_num_timesteps=False)
    assert loaded.num_timesteps == 96


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(target_kl=0), "target_kl must be a finite number > 0"),
        (dict(step_size=-0.1), "step_size must be a finite number > 0"),
        (dict(cg_max_steps=0), "cg_max_steps must be an integer >= 1"),
        (dict(cg_damping=-1.0), "cg_damping must be a finite number >= 0"),
        (dict(sub_sampling_factor=0), "sub_sampling_factor must be an integer >= 1"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=f"NPG: {match}"):
        NPG("MlpPolicy", "CartPole-v1", **kwargs)


def test_sub_sampling():
    model = NPG("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, sub_sampling_factor=4, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(64)
    assert model.logger.name_to_value["train/quadratic_kl"] == pytest.approx(0.01, rel=1e-4)


def test_identity_env_is_learned():
    """NPG solves SB3's identity task as SB3's tests require of A2C/PPO (reward >= 90 of 100)."""
    env = IdentityEnv(4)
    model = NPG("MlpPolicy", env, n_steps=200, batch_size=200, target_kl=0.05, seed=0, device="cpu")
    model.learn(4000)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=10)
    assert mean >= 90
