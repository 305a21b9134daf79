import itertools

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.logger import configure

from sb3_po import KLPPO
from sb3_po.common.buffers import NStepRolloutBuffer
from sb3_po.common.kl import exact_kl, snapshot
from sb3_po.kl_ppo.kl_ppo import adapt_beta

PAPER = dict(kl_tolerance=(1 / 1.5, 1.5), beta_factor=(0.5, 2.0), beta_bounds=(1e-3, 1e3))


def flat(module):
    return th.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


@pytest.mark.parametrize(
    "kl,expected",
    [
        (0.01 / 1.5 - 1e-6, 0.5),  # below the band: halve
        (0.001, 0.5),
        (0.01 / 1.5 + 1e-6, 1.0),  # inside: unchanged
        (0.01, 1.0),
        (0.015, 1.0),  # the band's edge is inside
        (0.015 + 1e-6, 2.0),  # above: double
        (float("inf"), 2.0),
        (float("nan"), 2.0),
    ],
)
def test_paper_adaptation_rule(kl, expected):
    assert adapt_beta(1.0, kl, 0.01, **PAPER) == pytest.approx(expected)


def test_bounds_and_other_libraries_rules():
    assert adapt_beta(1.5e-3, 0.0, 0.01, **PAPER) == 1e-3  # would be 7.5e-4: clipped at the lower bound
    assert adapt_beta(900.0, 1.0, 0.01, **PAPER) == 1e3  # would be 1800
    beta = 1.0
    for _ in range(100):  # a KL that keeps exploding cannot overflow beta
        beta = adapt_beta(beta, float("inf"), 0.01, **PAPER)
    assert beta == 1e3
    # RLlib: kl > 2 d -> x1.5, kl < d / 2 -> x0.5
    rllib = dict(kl_tolerance=(0.5, 2.0), beta_factor=(0.5, 1.5))
    assert adapt_beta(1.0, 0.021, 0.01, **rllib) == 1.5 and adapt_beta(1.0, 0.0049, 0.01, **rllib) == 0.5
    assert adapt_beta(1.0, 0.019, 0.01, **rllib) == 1.0
    # TF-Agents: tolerance 0.3 -> band [0.7 d, 1.3 d], factor 1.5
    tfa = dict(kl_tolerance=(0.7, 1.3), beta_factor=(1 / 1.5, 1.5))
    assert adapt_beta(1.0, 0.0131, 0.01, **tfa) == 1.5 and adapt_beta(1.0, 0.0069, 0.01, **tfa) == pytest.approx(1 / 1.5)


def test_constructor_normalises_tolerance_and_factor():
    model = KLPPO("MlpPolicy", "CartPole-v1", device="cpu")
    assert model.kl_tolerance == pytest.approx((1 / 1.5, 1.5)) and model.beta_factor == (0.5, 2.0)
    assert model.clip_range is None and model.beta == 1.0 and model.kl_target == 0.01
    model = KLPPO("MlpPolicy", "CartPole-v1", kl_tolerance=(0.5, 2.0), beta_factor=(0.5, 1.5), device="cpu")
    assert model.kl_tolerance == (0.5, 2.0) and model.beta_factor == (0.5, 1.5)


def test_penalty_gradient_pulls_toward_pi_old():
    model = KLPPO("MlpPolicy", "Pendulum-v1", device="cpu", seed=0)
    obs = th.randn(64, 3)
    with th.no_grad():
        pi_old = snapshot(model.policy.get_distribution(obs))
        for p in model.policy.parameters():
            p.add_(0.1 * th.randn_like(p))
    optimizer = th.optim.SGD(model.policy.parameters(), lr=0.05)
    kls = []
    for _ in range(20):
        kl = exact_kl(pi_old, model.policy.get_distribution(obs).distribution).mean()
        kls.append(kl.item())
        optimizer.zero_grad()
        kl.backward()
        optimizer.step()
    assert kls[0] > 0.01 and kls[-1] < 0.5 * kls[0] and all(b < a for a, b in itertools.pairwise(kls))


def test_zero_beta_with_clipping_is_ppo_bit_for_bit():
    params = []
    for cls, kwargs in ((PPO, {}), (KLPPO, dict(clip_range=0.2, beta=0.0, adaptive_beta=False))):
        model = cls("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, n_epochs=3, seed=1, device="cpu", **kwargs)
        model.learn(256)
        params.append(flat(model.policy))
    assert th.equal(params[0], params[1])


def test_beta_is_adapted_once_per_update_from_the_measured_kl():
    model = KLPPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=32, learning_rate=3e-3, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    betas, kls = [model.beta], []
    for _ in range(4):
        model.learn(128, reset_num_timesteps=False)
        betas.append(model.logger.name_to_value["train/beta"])
        kls.append(model.logger.name_to_value["train/kl"])
    # the first learn() call only collects; each later call trains once: beta follows the rule from the logged KL
    for before, kl, after in zip(betas[:-1], kls, betas[1:], strict=True):
        if kl:  # a logged KL means train() ran
            assert after == pytest.approx(
                adapt_beta(before, kl, 0.01, model.kl_tolerance, model.beta_factor, model.beta_bounds)
            )
    assert model.beta == betas[-1]
    # and it is the real KL(pi_old || pi_new) over the batch after the update: positive, as the policy moved
    assert all(kl > 0 for kl in kls if kl)


def test_fixed_penalty_and_minibatch_updates():
    fixed = KLPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, beta=0.3, adaptive_beta=False, device="cpu")
    fixed.learn(192)
    assert fixed.beta == 0.3
    per_minibatch = KLPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, beta_update="minibatch", device="cpu")
    per_minibatch.set_logger(configure(None, ["csv"]))
    per_minibatch.learn(128)
    logged = per_minibatch.logger.name_to_value
    # 4 minibatches x 10 epochs: beta moved at every step (the initial KL of a minibatch is below the band)
    assert logged["train/beta_min"] < 1.0 / 2**5


def test_kl_cutoff_and_estimators():
    model = KLPPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=64,
        kl_target=1e-5,
        kl_cutoff_coef=1000.0,
        learning_rate=1e-2,
        device="cpu",
        seed=0,
    )
    model.set_logger(configure(None, ["csv"]))
    model.learn(128)
    assert model.logger.name_to_value["train/kl_cutoff"] > 0
    for estimator in ("k1", "k3"):
        model = KLPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, kl_estimator=estimator, device="cpu")
        model.set_logger(configure(None, ["csv"]))
        model.learn(128)
        assert np.isfinite(model.logger.name_to_value["train/kl"])


def test_target_kl_keeps_its_sb3_meaning():
    model = KLPPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=16,
        n_epochs=10,
        target_kl=1e-6,
        learning_rate=1e-2,
        seed=0,
        device="cpu",
    )
    model.learn(128)
    assert model._n_updates < 10  # early stopping cut the epochs


def test_logged_keys():
    model = KLPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, clip_range=0.2, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(128)
    assert {
        "train/beta",
        "train/kl",
        "train/kl_penalty",
        "train/surrogate",
        "train/approx_kl",
        "train/clip_fraction",
        "train/policy_gradient_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/explained_variance",
        "train/std",
    } <= set(model.logger.name_to_value)


def test_save_load_restores_the_adapted_beta(tmp_path):
    model = KLPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, seed=0, device="cpu")
    model.learn(64 * 4)
    assert model.beta != 1.0
    model.save(tmp_path / "klppo")
    loaded = KLPPO.load(tmp_path / "klppo", env=model.get_env(), device="cpu")
    assert loaded.beta == model.beta and loaded.kl_tolerance == model.kl_tolerance and loaded.clip_range is None
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.set_logger(configure(None, ["csv"]))
    beta_before = loaded.beta
    loaded.learn(64, reset_num_timesteps=False)
    kl = loaded.logger.name_to_value["train/kl"]
    assert loaded.beta == pytest.approx(
        adapt_beta(beta_before, kl, 0.01, loaded.kl_tolerance, loaded.beta_factor, loaded.beta_bounds)
    )


@pytest.mark.parametrize(
    "env,kwargs",
    [
        (IdentityEnv(4), {}),
        (IdentityEnvMultiDiscrete(3), {}),
        (IdentityEnvMultiBinary(3), {}),
        (IdentityEnvBox(ep_length=10), {}),
        (IdentityEnvBox(ep_length=10), dict(use_sde=True)),
    ],
    ids=["discrete", "multidiscrete", "multibinary", "box", "gsde"],
)
def test_action_spaces(env, kwargs):
    model = KLPPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, device="cpu", **kwargs)
    model.set_logger(configure(None, ["csv"]))
    model.learn(128)
    assert model.logger.name_to_value["train/kl"] > 0


def test_dict_observations_and_estimator_buffers():
    model = KLPPO(
        "MultiInputPolicy",
        SimpleMultiObsEnv(),
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        device="cpu",
        rollout_buffer_class=NStepRolloutBuffer,
        rollout_buffer_kwargs=dict(n_step=4),
    )
    model.learn(128)


def test_identity_env_is_learned():
    env = IdentityEnv(4)
    model = KLPPO("MlpPolicy", env, n_steps=256, batch_size=64, learning_rate=3e-3, seed=0, device="cpu")
    model.learn(3000)
    from stable_baselines3.common.evaluation import evaluate_policy

    mean, _ = evaluate_policy(model, env, n_eval_episodes=10, warn=False)
    assert mean >= 90


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kl_target=0.0), "kl_target"),
        (dict(kl_target=-0.01), "kl_target"),
        (dict(beta=-1.0), "beta must be"),
        (dict(beta=float("nan")), "beta must be"),
        (dict(beta_bounds=(1.0, 0.1)), "beta_bounds"),
        (dict(beta=1e4), "outside beta_bounds"),
        (dict(kl_tolerance=0.5), "kl_tolerance"),
        (dict(kl_tolerance=(1.2, 1.5)), "kl_tolerance"),
        (dict(beta_factor=1.0 / 2), "beta_factor"),
        (dict(beta_update="epoch"), "beta_update"),
        (dict(kl_estimator="k2"), "kl_estimator"),
        (dict(clip_range=0.0), "clip_range"),
        (dict(clip_range=1.2), r"clip_range must be in \(0, 1\)"),
        (dict(kl_cutoff_coef=-1.0), "kl_cutoff_coef"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KLPPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_batch_size_must_divide_the_rollout_or_cover_it():
    with pytest.raises(ValueError, match=r"batch_size=48 does not divide n_steps \* n_envs = 64.*e\.g\. 32"):
        KLPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=48)
    KLPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32)
    KLPPO("MlpPolicy", "CartPole-v1", n_steps=8, batch_size=256)  # the RL Zoo's MountainCarContinuous entry: full batch
