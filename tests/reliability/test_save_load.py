"""
Save, load and resume VPG, KLPPO, GRPO and NPG: ``learn(..., reset_num_timesteps=False)``, the save -> load round trip
of every piece of state that changes training, determinism (same seed; one run vs a run interrupted by save and
load, compared with what SB3's PPO does in the same experiment) and the errors on bad files.
"""

import csv
import functools
import io
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger

from sb3_po import GRPO, KLPPO, NPG, VPG
from sb3_po.common.env_state import RestorableEnv

ALGOS = [VPG, KLPPO, GRPO, NPG]

FAST = {
    VPG: dict(n_steps=16, n_critic_updates=2),
    KLPPO: dict(n_steps=16, batch_size=8, n_epochs=2),
    NPG: dict(n_steps=16, batch_size=8, n_critic_updates=2),
    GRPO: dict(group_size=2, n_groups=1, n_epochs=2, n_minibatches=2),
}
# GRPO builds group_size envs from an env id unless told otherwise (n_envs is refused with a VecEnv, which has its own)
ID_KWARGS = {GRPO: dict(n_envs=1)}
PPO_FAST = dict(n_steps=16, batch_size=8, n_epochs=2)
# model._n_updates per call of train()
UPDATES_PER_TRAIN = {VPG: 1, KLPPO: 2, GRPO: 2, NPG: 1}


class CoinEnv(gym.Env):
    """Random start and random episode ends from the env's own RNG (which GRPO's copy backend re-seeds per member)."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,))
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x0, self.t = float(self.np_random.random()), 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x0, self.t], dtype=np.float32)

    def step(self, action):
        self.t += 1
        reward = float(action == int(self.x0 > 0.5))
        return self._obs(), reward, bool(self.np_random.random() < 0.2), self.t >= 20, {}


def make_env(algo, env_fn, n_envs=1, seed=0):
    """A VecEnv built as the README says; restorable for GRPO."""
    return make_vec_env(env_fn, n_envs=n_envs, seed=seed, wrapper_class=RestorableEnv if algo is GRPO else None)


def linear(start):
    return lambda progress_remaining: start * progress_remaining


def assert_same_state(a, b, path="state"):
    """Recursive equality of state dicts: tensors bit for bit, everything else with ==."""
    if isinstance(a, th.Tensor):
        assert isinstance(b, th.Tensor) and th.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def same_parameters(a, b):
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    return sa.keys() == sb.keys() and all(th.equal(sa[k], sb[k]) for k in sa)


# -- learn() several times -------------------------------------------------------------------------------------------


class StepRecorder(KVWriter):
    """Records the step and values of every logger dump."""

    def __init__(self):
        self.dumps = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append((step, dict(key_values)))

    def close(self):
        pass


@pytest.mark.parametrize("algo", ALGOS)
def test_learn_continues_with_reset_num_timesteps_false(algo, tmp_path):
    env = make_env(algo, functools.partial(IdentityEnv, 2, ep_length=10))
    model = algo("MlpPolicy", env, seed=0, device="cpu", **FAST[algo])
    recorder = StepRecorder()
    model.set_logger(Logger(str(tmp_path), [recorder, CSVOutputFormat(str(tmp_path / "progress.csv"))]))
    totals = []
    for _ in range(3):
        model.learn(32, reset_num_timesteps=False)
        totals.append(model.num_timesteps)
    # a rollout is 16 steps (VPG, KLPPO) or 2 episodes of 10 (GRPO); each call adds at least 32 steps to the count
    rollout = 20 if algo is GRPO else 16
    assert totals == ([40, 80, 120] if algo is GRPO else [32, 64, 96])
    n_rollouts = totals[-1] // rollout
    assert model._n_updates == n_rollouts * UPDATES_PER_TRAIN[algo]
    if algo is GRPO:
        assert model._n_rollouts == n_rollouts
    # the logger's step is num_timesteps and keeps increasing across the calls, once per rollout (log_interval=1)
    steps = [step for step, _ in recorder.dumps]
    assert steps == list(range(rollout, totals[-1] + 1, rollout))
    assert [values["time/total_timesteps"] for _, values in recorder.dumps] == steps
    with open(tmp_path / "progress.csv") as file:
        assert [int(row["time/total_timesteps"]) for row in csv.DictReader(file)] == steps
    # and with reset_num_timesteps=True (the default) the count starts again, as in SB3
    model.learn(32)
    assert model.num_timesteps == totals[0] and recorder.dumps[-1][0] == totals[0]


# -- save -> load round trip ------------------------------------------------------------------------------------------

ROUND_TRIP = {
    VPG: dict(n_steps=16, n_critic_updates=2, learning_rate=linear(3e-3), critic_learning_rate=linear(5e-3)),
    KLPPO: dict(n_steps=16, batch_size=8, n_epochs=2, learning_rate=linear(3e-3)),
    NPG: dict(n_steps=16, batch_size=8, n_critic_updates=2, learning_rate=linear(3e-3)),
    GRPO: dict(
        group_size=2,
        n_groups=1,
        n_epochs=2,
        n_minibatches=2,
        learning_rate=linear(3e-3),
        clip_range=linear(0.2),
        beta=0.1,
        ref_update_interval=2,
    ),
}


class StopAfterTrainings(BaseCallback):
    """Stops training at the first step after ``n`` calls of train(): an interrupted run, mid-schedule."""

    def __init__(self, n, updates_per_train):
        super().__init__()
        self.n, self.updates_per_train = n, updates_per_train

    def _on_step(self):
        return self.model._n_updates < self.n * self.updates_per_train


def round_trip_model(algo, kind):
    if kind == "discrete":
        env, kwargs = make_env(algo, "CartPole-v1"), {}
    else:  # Box actions with gSDE (resampled every 4 steps: see test_conformance.py::test_gsde[GRPO-gsde])
        env = make_env(algo, functools.partial(IdentityEnvBox, eps=0.5, ep_length=16))
        kwargs = dict(use_sde=True, sde_sample_freq=4)
    model = algo("MlpPolicy", env, seed=0, device="cpu", **ROUND_TRIP[algo], **kwargs)
    model.learn(2000, callback=StopAfterTrainings(3, UPDATES_PER_TRAIN[algo]))
    return model


@pytest.mark.parametrize("kind", ["discrete", "box-gsde"])
@pytest.mark.parametrize("algo", ALGOS)
def test_save_load_round_trip(algo, kind, tmp_path):
    model = round_trip_model(algo, kind)
    assert model._n_updates == 3 * UPDATES_PER_TRAIN[algo]
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", env=model.get_env(), device="cpu")
    assert type(loaded) is algo

    # parameters and optimiser states (VPG has two optimisers)
    assert_same_state(model.policy.state_dict(), loaded.policy.state_dict(), "policy")
    optimizers = ["optimizer", "critic_optimizer"] if algo is VPG else ["optimizer"]
    for name in optimizers:
        state = getattr(model.policy, name).state_dict()
        assert len(state["state"]) > 0  # trained: Adam's moments exist
        assert_same_state(state, getattr(loaded.policy, name).state_dict(), name)

    # counters and the schedules' progress: the interrupted run stopped mid-schedule
    assert 0 < model._current_progress_remaining < 1
    for attr in ("num_timesteps", "_total_timesteps", "_current_progress_remaining", "_n_updates", "_episode_num"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    for progress in (1.0, model._current_progress_remaining, 0.1):
        assert loaded.lr_schedule(progress) == model.lr_schedule(progress)
        if algo is VPG:
            assert loaded.critic_lr_schedule(progress) == model.critic_lr_schedule(progress)
        if algo is GRPO:
            assert loaded.clip_range(progress) == model.clip_range(progress)

    # what each algorithm adds
    if algo is KLPPO:
        assert model.beta != 1.0  # adapted three times
        assert loaded.beta == model.beta
    if algo is GRPO:
        assert (loaded._n_rollouts, loaded._n_ref_updates) == (model._n_rollouts, model._n_ref_updates) == (3, 1)
        # the reference is the policy of rollout 2, not the current one nor a copy of it made at load time
        assert not all(th.equal(a, b) for a, b in zip(model.ref_policy.parameters(), model.policy.parameters(), strict=True))
        assert_same_state(model.ref_policy.state_dict(), loaded.ref_policy.state_dict(), "ref_policy")

    # predictions: deterministic, and stochastic with the same torch seed
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    stochastic = []
    for m in (model, loaded):
        th.manual_seed(0)
        if kind == "box-gsde":
            m.policy.reset_noise(len(obs))  # gSDE's exploration matrix is not a parameter: it is resampled
        stochastic.append(m.predict(obs, deterministic=False)[0])
    np.testing.assert_array_equal(*stochastic)


# -- determinism --------------------------------------------------------------------------------------------------


def determinism_model(algo, kind, seed):
    if kind == "cartpole":
        env, kwargs = "CartPole-v1", ID_KWARGS.get(algo, {})
    elif kind == "box-gsde":
        env, kwargs = make_env(algo, functools.partial(IdentityEnvBox, eps=0.5, ep_length=16)), dict(use_sde=True)
    else:  # "coin": an env with its own randomness, built with make_vec_env(seed=...) as the README says
        env, kwargs = make_env(algo, CoinEnv, seed=seed), {}
    return algo("MlpPolicy", env, seed=seed, device="cpu", **FAST[algo], **kwargs)


@pytest.mark.parametrize("kind", ["cartpole", "box-gsde", "coin"])
@pytest.mark.parametrize("algo", ALGOS)
def test_same_seed_same_parameters(algo, kind):
    runs = [determinism_model(algo, kind, seed).learn(96) for seed in (0, 0, 1)]
    assert same_parameters(runs[0], runs[1])
    assert_same_state(runs[0].policy.optimizer.state_dict(), runs[1].policy.optimizer.state_dict(), "optimizer")
    assert runs[0].num_timesteps == runs[1].num_timesteps
    assert not same_parameters(runs[0], runs[2])  # another seed, another run: the comparison can fail


# Train N + M steps in one go, or N, then (variant) M more with learn(M, reset_num_timesteps=False):
#   "continue":        the same model object, no save
#   "reload":          save, load(env=the same VecEnv) with SB3's defaults, then learn
#   "reload-no-reset": as "reload", with load(..., force_reset=False) (the env is not reset, _last_obs is kept)
#   "reload-rng":      as "reload-no-reset", and the torch / numpy global RNG states restored after the load
# What SB3's PPO does (asserted below, so that a change in SB3 shows up here):
#   continue -> identical; reload -> differs; reload-no-reset -> differs; reload-rng -> identical.
# Why PPO's reloads differ: load() re-runs _setup_model(), which calls set_random_seed(seed) and so restarts the torch
# and numpy RNGs from the seed (their states are not saved), and with force_reset=True (the default) the env is reset
# (re-seeded, as set_random_seed also calls env.seed()) instead of continuing the episode. Neither is about the model's
# state; "reload-rng" removes both, and then everything the model saved is enough to continue bit for bit.
# Ours must do exactly what PPO does. (GRPO's rollouts are whole episodes, so its split point N is wherever the
# first learn() call stopped, and the uninterrupted run is given N + M with that N.)
RESUME_VARIANTS = ["continue", "reload", "reload-no-reset", "reload-rng"]
PPO_RESUME = {"continue": True, "reload": False, "reload-no-reset": False, "reload-rng": True}
RESUME_KWARGS = {
    PPO: dict(n_steps=64, batch_size=32, n_epochs=2),
    VPG: dict(n_steps=64, n_critic_updates=5),
    KLPPO: dict(n_steps=64, batch_size=32, n_epochs=2),
    NPG: dict(n_steps=64, batch_size=32, n_critic_updates=2),
    GRPO: dict(group_size=2, n_groups=1, n_epochs=2, n_minibatches=2, beta=0.1, ref_update_interval=2),
}


def resume_experiment(algo, variant, kwargs=None, n=128, m=128):
    """Whether the interrupted run ends with the parameters (and step count) of the uninterrupted one."""
    kwargs = RESUME_KWARGS[algo] if kwargs is None else kwargs
    path = io.BytesIO()
    model = algo("MlpPolicy", "CartPole-v1", seed=3, device="cpu", **kwargs)
    model.learn(n)
    split = model.num_timesteps
    if variant != "continue":
        model.save(path)
        rng_states = th.get_rng_state(), np.random.get_state()
        model = algo.load(path, env=model.get_env(), device="cpu", force_reset=variant == "reload")
        if variant == "reload-rng":
            th.set_rng_state(rng_states[0])
            np.random.set_state(rng_states[1])
    model.learn(m, reset_num_timesteps=False)
    reference = algo("MlpPolicy", "CartPole-v1", seed=3, device="cpu", **kwargs)
    reference.learn(split + m)
    return same_parameters(model, reference) and model.num_timesteps == reference.num_timesteps


@functools.cache
def ppo_resume(variant):
    return resume_experiment(PPO, variant)


@pytest.mark.parametrize("variant", RESUME_VARIANTS)
@pytest.mark.parametrize("algo", ALGOS)
def test_resume_is_identical_where_ppo_is(algo, variant):
    ppo = ppo_resume(variant)
    assert ppo == PPO_RESUME[variant]
    assert resume_experiment(algo, variant) == ppo


def test_grpo_resume_with_visited_start_states():
    """
    GRPO with start_states="visited" in the "reload-rng" experiment, where PPO (and GRPO with reset start states) is
    identical: the pool of visited states is state that changes training (where groups start, and the numpy draws
    that pick them), so the resumed run must start with the same pool.
    """
    # one group per rollout: with more, learn(N) sizes its last rollout to its own remaining budget (GRPO's
    # docstring), which the uninterrupted learn(N + M) does not do at that point
    kwargs = dict(
        group_size=2,
        n_groups=1,
        n_epochs=2,
        n_minibatches=2,
        start_states="visited",
        visited_fraction=1.0,
        visited_capture_prob=0.5,
    )
    assert resume_experiment(GRPO, "reload-rng", kwargs=kwargs, n=100, m=100)


# -- bad files ------------------------------------------------------------------------------------------------------
# What each produces today (sb3-po 0.1.0 on SB3 2.9.2):
#   PPO zip   -> VPG.load:   TypeError "VPG needs a VPGPolicy subclass (two optimisers: actor and baseline), got
#                            ActorCriticPolicy. Use 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or subclass ..."
#   PPO zip   -> KLPPO.load: no error: a KLPPO with PPO's clip_range (0.2) and the default beta=1.0, and it trains
#   PPO zip   -> GRPO.load:  TypeError "GRPO needs a critic-free policy (sb3_po.grpo.policies.GRPOPolicy), got
#                            ActorCriticPolicy. Use 'MlpPolicy', 'CnnPolicy' or 'MultiInputPolicy'."
#   VPG zip   -> KLPPO.load: ValueError "Names of parameters do not match agents' parameters: expected {'policy',
#                            'policy.optimizer'}, got {'policy', 'policy.critic_optimizer', 'policy.optimizer'}"
#   VPG zip   -> GRPO.load:  TypeError "GRPO needs a critic-free policy ..., got VPGPolicy. ..."
#   KLPPO zip -> VPG.load:   TypeError "VPG needs a VPGPolicy subclass ..., got ActorCriticPolicy. ..."
#   KLPPO zip -> GRPO.load:  TypeError "GRPO needs a critic-free policy ..., got ActorCriticPolicy. ..."
#   GRPO zip  -> VPG.load:   TypeError "VPG needs a VPGPolicy subclass ..., got ActorOnlyPolicy. ..."
#   GRPO zip  -> KLPPO.load: no error: a KLPPO whose policy has no critic (ZeroBaseline value head), and it trains
#   truncated to half its size:      AssertionError "No data found in the saved file" (zipfile finds the end record of
#                                    a torch archive stored inside, policy.pth, and reads that as the model file)
#   truncated by its last 10 bytes:  ValueError "Error: the file <path> wasn't a zip-file"
#   bytes flipped inside policy.pth: ValueError "Error: the file <path> wasn't a zip-file" (the zip's CRC check)
#   a valid zip whose "data" member is not JSON: json.JSONDecodeError "Expecting property name enclosed in double
#                                    quotes: line 1 column 2 (char 1)" (no file name)
#   a valid zip whose policy.pth is cut: RuntimeError "PytorchStreamReader failed reading zip archive: failed finding
#                                    central directory. This is an internal miniz error. ..." (torch's, no file name)
#   an env with another observation space: ValueError "Observation spaces do not match: Box(..., (4,), float32) !=
#                                    Box(..., (6,), float32)"
# A clear error here: the loader refuses the file, naming the algorithm it expected and what it found (the file's
# policy class or algorithm); a damaged file raises ValueError (SB3's type for "not a model file") naming the file.

SOURCES = [PPO, VPG, KLPPO, GRPO, NPG]
POLICY_OF = {
    PPO: "ActorCriticPolicy",
    VPG: "VPGPolicy",
    KLPPO: "ActorCriticPolicy",
    GRPO: "ActorOnlyPolicy",
    NPG: "ActorCriticPolicy",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model of each algorithm trained for one update on CartPole and saved: {class: path}."""
    folder = tmp_path_factory.mktemp("saved")
    paths = {}
    for algo in SOURCES:
        kwargs = PPO_FAST if algo is PPO else {**FAST[algo], **ID_KWARGS.get(algo, {})}
        model = algo("MlpPolicy", "CartPole-v1", seed=0, device="cpu", **kwargs)
        model.learn(16)
        paths[algo] = folder / f"{algo.__name__}.zip"
        model.save(paths[algo])
    return paths


CROSS = [(source, target) for source in SOURCES for target in ALGOS if source is not target]


@pytest.mark.parametrize("source,target", CROSS, ids=[f"{s.__name__}-zip-to-{t.__name__}" for s, t in CROSS])
def test_load_a_file_of_another_algorithm(saved, source, target):
    with pytest.raises((TypeError, ValueError)) as raised:
        target.load(saved[source], device="cpu")
    message = str(raised.value)
    assert target.__name__ in message, message
    assert POLICY_OF[source] in message or source.__name__ in message, message


def damaged(raw, how):
    """The bytes of a saved model, damaged."""
    if how == "truncated-half":
        return raw[: len(raw) // 2]
    if how == "truncated-tail":
        return raw[:-10]
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = {info.filename: (info, archive.read(info.filename)) for info in archive.infolist()}
    if how == "flipped-bytes":  # bit rot in the middle of policy.pth's bytes: the zip's CRC catches it
        info = members["policy.pth"][0]
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        out = bytearray(raw)
        for k in range(16):
            out[start + info.compress_size // 2 + k] ^= 0xFF
        return bytes(out)
    # a valid zip with a damaged member
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, (info, content) in members.items():
            if how == "bad-data-member" and name == "data":
                content = b"{not json"
            if how == "cut-policy-member" and name == "policy.pth":
                content = content[: len(content) // 2]
            archive.writestr(info, content)
    return out.getvalue()


DAMAGES = ["truncated-half", "truncated-tail", "flipped-bytes", "bad-data-member", "cut-policy-member"]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("algo", ALGOS)
def test_load_a_damaged_file(saved, algo, how, tmp_path):
    path = tmp_path / f"damaged-{how}.zip"
    path.write_bytes(damaged(saved[algo].read_bytes(), how))
    with pytest.raises(Exception) as raised:
        algo.load(path, device="cpu")
    assert isinstance(raised.value, ValueError), f"{type(raised.value).__name__}: {raised.value}"
    assert path.name in str(raised.value), str(raised.value)


@pytest.mark.parametrize("algo", ALGOS)
def test_load_with_an_incompatible_observation_space(saved, algo):
    env = make_env(algo, "Acrobot-v1")  # Box(6,) observations; the model was trained on CartPole's Box(4,)
    with pytest.raises(ValueError, match=r"Observation spaces do not match: .*\(4,\).* != .*\(6,\)"):
        algo.load(saved[algo], env=env, device="cpu")
    model = algo.load(saved[algo], device="cpu")
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        model.set_env(env)
