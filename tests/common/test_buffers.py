"""The estimator buffers inside SB3's and sb3-contrib's own algorithms (PPO, A2C, TRPO, MaskablePPO, RecurrentPPO)."""

from typing import NamedTuple

import gymnasium as gym
import numpy as np
import pytest
import sb3_contrib
import torch as th
from gymnasium import spaces
from sb3_contrib import TRPO, MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.maskable.utils import get_action_masks
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.envs import SimpleMultiObsEnv
from test_estimators import brute_gae, brute_n_step  # the brute-force references, in this directory

from sb3_po.common import buffers
from sb3_po.common.buffers import GAEEstimator, MonteCarloEstimator, NStepEstimator, NStepRolloutBuffer, TD0Estimator
from sb3_po.ppo_recurrent import RecurrentPPO

ESTIMATORS = {"GAE": {}, "MonteCarlo": {}, "TD0": {}, "NStep": {"n_step": 3}}
# family prefix -> (the buffer the family's classes extend, its Dict counterpart)
FAMILIES = {
    "": (RolloutBuffer, DictRolloutBuffer),
    "Maskable": (MaskableRolloutBuffer, MaskableDictRolloutBuffer),
    "Recurrent": (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer),
}
HIDDEN = 8  # LSTM size in the recurrent buffers and policies below


def buffer_class(family: str, estimator: str) -> type:
    """The class a user names: f"{family}{estimator}RolloutBuffer" in sb3_po.common.buffers."""
    return getattr(buffers, f"{family}{estimator}RolloutBuffer")


def reference_advantages(estimator: str, rollout: "Rollout", gamma: float, gae_lambda: float) -> np.ndarray:
    """The brute-force reference of tests/common/test_estimators.py for one estimator."""
    data = (rollout.rewards, rollout.values, rollout.episode_starts, rollout.last_values, rollout.dones)
    if estimator == "GAE":
        return brute_gae(*data, gamma=gamma, lam=gae_lambda)
    if estimator == "MonteCarlo":
        return brute_gae(*data, gamma=gamma, lam=1.0)
    return brute_n_step(*data, gamma=gamma, n=ESTIMATORS[estimator].get("n_step", 1))


class MaskedCartPole(gym.Wrapper):
    """CartPole-v1 whose action 1 is invalid on every third step (``action_masks``); Dict observations if asked."""

    def __init__(self, dict_obs: bool = False):
        super().__init__(gym.make("CartPole-v1"))
        self.dict_obs, self.t = dict_obs, 0
        if dict_obs:
            self.observation_space = spaces.Dict({"state": self.env.observation_space})

    def _obs(self, obs):
        return {"state": obs} if self.dict_obs else obs

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.t = 0
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return self._obs(obs), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return np.array([True, self.t % 3 != 0])


class Case(NamedTuple):
    """One algorithm with one kind of observation, and the buffer family it needs."""

    algo: type
    env: object
    policy: str
    kwargs: dict
    family: str


LSTM = dict(n_steps=32, batch_size=32, n_epochs=2, policy_kwargs=dict(lstm_hidden_size=HIDDEN, net_arch=[16]))
CASES = {
    "PPO": Case(PPO, "CartPole-v1", "MlpPolicy", dict(n_steps=32, batch_size=32, n_epochs=2), ""),
    "A2C": Case(A2C, "CartPole-v1", "MlpPolicy", dict(n_steps=8), ""),
    "TRPO": Case(TRPO, "CartPole-v1", "MlpPolicy", dict(n_steps=32, batch_size=32, n_critic_updates=2), ""),
    "MaskablePPO-Box": Case(MaskablePPO, MaskedCartPole, "MlpPolicy", dict(n_steps=32, batch_size=32, n_epochs=2), "Maskable"),
    "MaskablePPO-Dict": Case(
        MaskablePPO,
        lambda: MaskedCartPole(dict_obs=True),
        "MultiInputPolicy",
        dict(n_steps=32, batch_size=32, n_epochs=2),
        "Maskable",
    ),
    "RecurrentPPO-Box": Case(RecurrentPPO, "CartPole-v1", "MlpLstmPolicy", LSTM, "Recurrent"),
    "RecurrentPPO-Dict": Case(RecurrentPPO, lambda: MaskedCartPole(dict_obs=True), "MultiInputLstmPolicy", LSTM, "Recurrent"),
}


def make_model(case: Case, seed: int = 0, env=None, **kwargs):
    env = env if env is not None else (case.env if isinstance(case.env, str) else case.env())
    return case.algo(case.policy, env, seed=seed, device="cpu", **case.kwargs, **kwargs)


class Rollout(NamedTuple):
    rewards: np.ndarray
    values: np.ndarray
    episode_starts: np.ndarray
    last_values: np.ndarray
    dones: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    action_masks: np.ndarray | None


def record_rollouts(model) -> list[Rollout]:
    """Copies of what each rollout gives ``compute_returns_and_advantage`` and what it computes."""
    buffer, records = model.rollout_buffer, []
    compute = buffer.compute_returns_and_advantage

    def recording(last_values: th.Tensor, dones: np.ndarray) -> None:
        compute(last_values=last_values, dones=dones)
        masks = getattr(buffer, "action_masks", None)
        records.append(
            Rollout(
                buffer.rewards.copy(),
                buffer.values.copy(),
                buffer.episode_starts.copy(),
                last_values.cpu().numpy().flatten(),
                np.asarray(dones).copy(),
                buffer.advantages.copy(),
                buffer.returns.copy(),
                None if masks is None else masks.copy(),
            )
        )

    buffer.compute_returns_and_advantage = recording
    return records


# -- the classes themselves -----------------------------------------------------------------------------------


def fill(buffer, rng):
    """Random steps with episode starts anywhere; LSTM states for the recurrent buffers, masks for the maskable."""
    recurrent = isinstance(buffer, (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer))
    maskable = isinstance(buffer, (MaskableRolloutBuffer, MaskableDictRolloutBuffer))
    for _ in range(buffer.buffer_size):
        obs = buffer.observation_space.sample()
        if isinstance(obs, dict):
            obs = {k: np.stack([v] * buffer.n_envs) for k, v in obs.items()}
        else:
            obs = np.stack([obs] * buffer.n_envs)
        extra = {}
        if recurrent:
            state = (th.zeros(1, buffer.n_envs, HIDDEN), th.zeros(1, buffer.n_envs, HIDDEN))
            extra["lstm_states"] = RNNStates(state, state)
        if maskable:
            extra["action_masks"] = rng.random((buffer.n_envs, 2)) < 0.5
        buffer.add(
            obs,
            np.zeros((buffer.n_envs, 1)),
            rng.normal(size=buffer.n_envs).astype(np.float32),
            (rng.random(buffer.n_envs) < 0.2).astype(np.float32),
            th.as_tensor(rng.normal(size=buffer.n_envs), dtype=th.float32),
            th.zeros(buffer.n_envs),
            **extra,
        )


DICT_SPACE = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("obs_space", [spaces.Box(-1, 1, (3,)), DICT_SPACE], ids=["Box", "Dict"])
def test_each_class_is_its_family_buffer_and_matches_brute_force(family, obs_space):
    rng = np.random.default_rng(1)
    gamma, gae_lambda, n_envs, n_steps = 0.9, 0.7, 3, 20
    base, dict_base = FAMILIES[family]
    hidden = (n_steps, 1, n_envs, HIDDEN)
    for estimator, kwargs in ESTIMATORS.items():
        cls = buffer_class(family, estimator)
        args = (hidden,) if family == "Recurrent" else ()
        buffer = cls(
            n_steps, obs_space, spaces.Discrete(2), *args, gamma=gamma, gae_lambda=gae_lambda, n_envs=n_envs, **kwargs
        )
        assert isinstance(buffer, cls) and isinstance(buffer, getattr(buffers, f"{estimator}Estimator"))
        is_dict = isinstance(obs_space, spaces.Dict)
        assert isinstance(buffer, dict_base if is_dict else base)
        if is_dict:  # the family's Dict buffer, not a mix of both
            assert type(buffer).__name__ == f"{family}Dict{estimator}RolloutBuffer"
            assert not isinstance(buffer, base) or base is RolloutBuffer
        fill(buffer, rng)
        last_values, dones = th.as_tensor(rng.normal(size=n_envs), dtype=th.float32), np.array([True, False, False])
        buffer.compute_returns_and_advantage(last_values, dones)
        np.testing.assert_array_equal(buffer.returns, buffer.advantages + buffer.values)
        assert buffer.advantages.dtype == np.float32 and buffer.advantages.shape == (n_steps, n_envs)
        rollout = Rollout(buffer.rewards, buffer.values, buffer.episode_starts, last_values.numpy(), dones, None, None, None)
        expected = reference_advantages(estimator, rollout, gamma, gae_lambda)
        np.testing.assert_allclose(buffer.advantages, expected, rtol=1e-5, atol=1e-5)
        batch = next(buffer.get(batch_size=10))  # the family's own sampling still works
        assert batch.advantages.shape[0] >= 10
        if family == "Maskable":
            assert batch.action_masks.shape == (10, 2)


def test_dict_variant_is_created_once_and_named_like_its_family():
    space = spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
    a = NStepRolloutBuffer(4, space, spaces.Discrete(2), n_step=2)
    b = NStepRolloutBuffer(4, space, spaces.Discrete(2), n_step=2)
    assert type(a) is type(b) is NStepRolloutBuffer.dict_variant
    assert type(a).__name__ == "DictNStepRolloutBuffer" and a.n_step == 2
    assert buffers.MaskableTD0RolloutBuffer.dict_variant.__name__ == "MaskableDictTD0RolloutBuffer"
    assert buffers.RecurrentGAERolloutBuffer.dict_variant.__name__ == "RecurrentDictGAERolloutBuffer"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_n_step_validation(bad, family):
    args = ((4, 1, 1, HIDDEN),) if family == "Recurrent" else ()
    with pytest.raises(ValueError, match="n_step must be an integer >= 1"):
        buffer_class(family, "NStep")(4, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), *args, n_step=bad)


def test_composes_with_a_buffer_of_ones_own():
    resets = []

    class CountingRolloutBuffer(RolloutBuffer):
        def reset(self):
            resets.append(self.buffer_size)
            super().reset()

    class MyTD0RolloutBuffer(TD0Estimator, CountingRolloutBuffer):
        """TD(0) in my buffer"""

    buffer = MyTD0RolloutBuffer(5, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), gamma=0.5)
    assert resets == [5]  # the buffer's own methods still run
    fill(buffer, np.random.default_rng(0))
    buffer.compute_returns_and_advantage(th.ones(1), np.array([False]))
    rollout = Rollout(buffer.rewards, buffer.values, buffer.episode_starts, np.ones(1), np.array([False]), None, None, None)
    np.testing.assert_allclose(buffer.advantages, reference_advantages("TD0", rollout, 0.5, 0.0), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="has no Dict variant"):
        MyTD0RolloutBuffer(5, DICT_SPACE, spaces.Discrete(2))
    with pytest.raises(TypeError, match="put the estimator before the rollout buffer"):
        type("Wrong", (RolloutBuffer, MonteCarloEstimator), {})
    with pytest.raises(TypeError, match="must be a DictRolloutBuffer"):
        type("Wrong", (GAEEstimator, RolloutBuffer), {}, dict_variant=MaskableRolloutBuffer)


# -- inside the algorithms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("case", CASES)
def test_each_estimator_in_each_algorithm(tmp_path, case, estimator):
    """Trains on real rollouts whose advantages equal the brute-force reference; saves, loads and predicts."""
    case, cls, kwargs = CASES[case], buffer_class(CASES[case].family, estimator), ESTIMATORS[estimator]
    model = make_model(case, rollout_buffer_class=cls, rollout_buffer_kwargs=kwargs)
    assert isinstance(model.rollout_buffer, cls) and isinstance(
        model.rollout_buffer, getattr(buffers, f"{estimator}Estimator")
    )
    rollouts = record_rollouts(model)
    model.learn(64)
    assert len(rollouts) == 64 // case.kwargs["n_steps"]
    assert sum(r.episode_starts[1:].sum() for r in rollouts) > 0  # episodes end inside the rollouts
    for rollout in rollouts:
        expected = reference_advantages(estimator, rollout, model.gamma, model.gae_lambda)
        np.testing.assert_allclose(rollout.advantages, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(rollout.returns, rollout.advantages + rollout.values)
        if case.family == "Maskable":
            assert 0 < rollout.action_masks[..., 1].mean() < 1  # the masks reached the buffer
    model.save(tmp_path / "model")
    loaded = case.algo.load(tmp_path / "model", env=model.get_env(), device="cpu")
    assert loaded.rollout_buffer_class is cls and loaded.rollout_buffer_kwargs == kwargs
    assert isinstance(loaded.rollout_buffer, cls)
    env = model.get_env()
    obs = env.reset()
    predict_kwargs = dict(deterministic=True)
    if case.family == "Maskable":
        predict_kwargs["action_masks"] = get_action_masks(env)
    if case.family == "Recurrent":
        predict_kwargs["episode_start"] = np.ones(env.num_envs, dtype=bool)
    np.testing.assert_array_equal(model.predict(obs, **predict_kwargs)[0], loaded.predict(obs, **predict_kwargs)[0])
    loaded.learn(case.kwargs["n_steps"], reset_num_timesteps=False)


BIT_IDENTITY = {  # Pendulum truncates at 200 steps: the time-limit bootstrap is exercised
    "PPO": (Case(PPO, "Pendulum-v1", "MlpPolicy", dict(n_steps=64, batch_size=32, n_epochs=2), ""), PPO),
    "A2C": (Case(A2C, "Pendulum-v1", "MlpPolicy", dict(n_steps=16), ""), A2C),
    "TRPO": (Case(TRPO, "Pendulum-v1", "MlpPolicy", dict(n_steps=64, batch_size=32, n_critic_updates=2), ""), TRPO),
    "MaskablePPO-Box": (CASES["MaskablePPO-Box"]._replace(kwargs=dict(n_steps=64, batch_size=32, n_epochs=2)), MaskablePPO),
    "MaskablePPO-Dict": (CASES["MaskablePPO-Dict"]._replace(kwargs=dict(n_steps=64, batch_size=32, n_epochs=2)), MaskablePPO),
    "RecurrentPPO": (
        Case(RecurrentPPO, "Pendulum-v1", "MlpLstmPolicy", dict(LSTM, n_steps=64), "Recurrent"),
        sb3_contrib.RecurrentPPO,
    ),
}


@pytest.mark.parametrize("case", BIT_IDENTITY)
def test_gae_variant_is_bit_identical_to_the_algorithms_own_buffer(case):
    """The GAE class gives the same advantages and parameters, bit for bit, as each algorithm's own buffer."""
    case, own_algo = BIT_IDENTITY[case]
    runs = []
    for algo, buffer_kwargs in ((own_algo, {}), (case.algo, dict(rollout_buffer_class=buffer_class(case.family, "GAE")))):
        model = make_model(case._replace(algo=algo), seed=3, **buffer_kwargs)
        rollouts = record_rollouts(model)
        model.learn(256)
        params = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()
        runs.append((type(model.rollout_buffer), rollouts, params))
    (own_type, own_rollouts, own_params), (our_type, our_rollouts, our_params) = runs
    assert own_type in (
        RolloutBuffer,
        DictRolloutBuffer,
        MaskableRolloutBuffer,
        MaskableDictRolloutBuffer,
        RecurrentRolloutBuffer,
    )
    assert (
        our_type.__name__.endswith("GAERolloutBuffer")
        and len(own_rollouts) == len(our_rollouts) == 256 // case.kwargs["n_steps"]
    )
    for own, ours in zip(own_rollouts, our_rollouts, strict=True):
        np.testing.assert_array_equal(own.advantages, ours.advantages)
        np.testing.assert_array_equal(own.returns, ours.returns)
    assert th.equal(own_params, our_params)


@pytest.mark.parametrize("case", ["PPO", "A2C", "TRPO"])
def test_dict_observations_without_naming_a_dict_class(case):
    algo, _, _, kwargs, _ = CASES[case]
    model = algo(
        "MultiInputPolicy",
        SimpleMultiObsEnv(random_start=True),
        rollout_buffer_class=NStepRolloutBuffer,
        rollout_buffer_kwargs={"n_step": 4},
        seed=0,
        device="cpu",
        **kwargs,
    )
    model.learn(64)
    assert isinstance(model.rollout_buffer, DictRolloutBuffer) and isinstance(model.rollout_buffer, NStepRolloutBuffer)
    assert isinstance(model.rollout_buffer, NStepEstimator) and model.rollout_buffer.n_step == 4


@pytest.mark.parametrize(
    "algo, buffer_class, kwargs, message",
    [
        (
            PPO,
            "NStepRolloutBuffer",
            dict(n_steps=5),
            "NStepRolloutBuffer got an unexpected keyword argument 'n_steps' "
            "(in rollout_buffer_kwargs?): it takes n_step; did you mean 'n_step'?",
        ),
        (
            A2C,
            "MonteCarloRolloutBuffer",
            dict(n_step=5),
            "MonteCarloRolloutBuffer got an unexpected keyword argument 'n_step' "
            "(in rollout_buffer_kwargs?): it takes no keyword of its own (leave rollout_buffer_kwargs empty)",
        ),
        (
            RecurrentPPO,
            "RecurrentNStepRolloutBuffer",
            dict(nstep=3),
            "RecurrentNStepRolloutBuffer got an unexpected keyword "
            "argument 'nstep' (in rollout_buffer_kwargs?): it takes n_step; did you mean 'n_step'?",
        ),
        (
            MaskablePPO,
            "MaskableTD0RolloutBuffer",
            dict(gae=1),
            "MaskableTD0RolloutBuffer got an unexpected keyword argument "
            "'gae' (in rollout_buffer_kwargs?): it takes no keyword of its own (leave rollout_buffer_kwargs empty)",
        ),
    ],
)
def test_keyword_typo_names_the_estimator_and_its_keywords(algo, buffer_class, kwargs, message):
    policy = "MlpLstmPolicy" if algo is RecurrentPPO else "MlpPolicy"
    with pytest.raises(TypeError) as error:
        algo(policy, "CartPole-v1", rollout_buffer_class=getattr(buffers, buffer_class), rollout_buffer_kwargs=kwargs)
    assert str(error.value) == message


def test_keyword_check_keeps_valid_keywords_and_dict_variants():
    model = PPO(
        "MultiInputPolicy",
        SimpleMultiObsEnv(),
        n_steps=16,
        batch_size=16,
        rollout_buffer_class=NStepRolloutBuffer,
        rollout_buffer_kwargs=dict(n_step=3),
    )
    assert isinstance(model.rollout_buffer, DictRolloutBuffer) and model.rollout_buffer.n_step == 3
    with pytest.raises(TypeError, match="NStepRolloutBuffer got an unexpected keyword argument 'n_stp'"):
        PPO(
            "MultiInputPolicy",
            SimpleMultiObsEnv(),
            rollout_buffer_class=NStepRolloutBuffer,
            rollout_buffer_kwargs=dict(n_stp=3),
        )


@pytest.mark.parametrize("name", ["MaskableGAERolloutBuffer", "MaskableMonteCarloRolloutBuffer", "MaskableNStepRolloutBuffer"])
def test_maskable_buffer_on_box_actions_says_masking_needs_discrete_actions(name):
    with pytest.raises(ValueError) as error:
        PPO("MlpPolicy", "Pendulum-v1", rollout_buffer_class=getattr(buffers, name))
    assert str(error.value).startswith(
        f"{name}: action masking needs discrete actions (Discrete, MultiDiscrete or MultiBinary)"
    )
    assert name.removeprefix("Maskable") in str(error.value)
