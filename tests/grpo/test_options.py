"""
No GRPO option is a silent no-op: every documented option, with the default supervision and with outcome supervision,
either changes the first updates or is refused with an error naming the settings that use it.
"""

import re

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from sb3_po import GRPO
from sb3_po.common.env_state import RestorableEnv

HORIZON = 12


class ToyEnv(gym.Env):
    """
    Bounded observations ``[x, t / HORIZON]`` (x drawn at reset), one continuous action, a noisy dense reward
    ``-(a - x)^2 + 0.1 noise``, ending with probability 0.1 at each step; ``sparse``: reward 1 at the 4th step if
    x > 0.7 and a > 0, else 0 (most groups have no signal). The time limit (TimeLimit) ends the episodes.
    """

    observation_space = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def __init__(self, sparse: bool = False):
        self.sparse = sparse

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.random()), 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x, min(self.t / HORIZON, 1.0)], dtype=np.float32)

    def step(self, action):
        self.t += 1
        a = float(np.clip(action[0], -1, 1))
        if self.sparse:
            return self._obs(), float(self.t == 4 and self.x > 0.7 and a > 0), self.t >= 4, False, {}
        ends = self.np_random.random() < 0.1  # episodes of different lengths
        return self._obs(), -((a - self.x) ** 2) + 0.1 * float(self.np_random.normal()), bool(ends), False, {}


def toy(sparse: bool = False) -> gym.Env:
    return TimeLimit(ToyEnv(sparse), HORIZON)


gym.register("GRPOOptionsToy-v0", entry_point=ToyEnv, max_episode_steps=HORIZON)


def vec_env(sparse: bool = False):
    return make_vec_env(lambda: toy(sparse), n_envs=4, seed=0, wrapper_class=RestorableEnv)


VISITED = dict(start_states="visited", visited_capture_prob=0.5, visited_fraction=1.0)
FRONTIER = dict(start_states="frontier", visited_fraction=1.0)
BRANCHING = dict(branch_states=4)
SDE = dict(use_sde=True)

# (option, value, the base it is tried on, the env[, settings that go with the option]): every documented option
CASES = [
    ("learning_rate", 3e-3, {}, "toy"),
    ("n_envs", 2, {}, "id"),
    ("n_envs", 2, {}, "toy"),  # a VecEnv has its own: refused
    ("group_size", 3, {}, "toy"),
    ("n_groups", 3, {}, "toy"),
    ("n_epochs", 3, {}, "toy"),
    ("n_minibatches", 2, {}, "toy"),
    ("gamma", 0.9, {}, "toy"),
    ("clip_range", 0.001, {}, "toy"),
    ("clip_range_upper", 0.001, {}, "toy"),
    ("supervision", "process", {}, "toy"),
    ("supervision", "step_rloo", {}, "toy"),
    ("supervision_kwargs", {"leave_one_out": True}, {}, "toy"),
    ("advantage", "mean", {}, "toy"),
    ("advantage", "softmax", {}, "toy"),
    ("advantage", "mean", BRANCHING, "toy"),  # branch scoring uses it whatever the supervision
    ("scale_rewards", "batch", {}, "toy"),
    ("scale_rewards", "batch", dict(n_groups=1), "toy"),  # the batch is the one group: refused
    ("scale_rewards", "none", {}, "toy"),
    ("softmax_temperature", 3.0, {}, "toy"),
    ("softmax_temperature", 3.0, dict(advantage="softmax"), "toy"),
    ("loss_type", "episode", {}, "toy"),
    ("loss_type", "dr_grpo", {}, "id"),  # the normaliser from the env's time limit
    ("loss_normalizer", 40, {}, "toy"),
    ("loss_normalizer", 40, dict(loss_type="dr_grpo"), "id"),
    ("beta", 0.5, {}, "toy"),
    ("kl_estimator", "k1", {}, "toy"),
    ("kl_estimator", "k1", dict(beta=0.5), "toy"),
    ("ref_update_interval", 1, {}, "toy"),
    ("ref_update_interval", 1, dict(beta=0.5), "toy"),
    ("ent_coef", 0.05, {}, "toy"),
    ("max_grad_norm", 0.01, {}, "toy"),
    ("start_states", "visited", {}, "toy", dict(visited_capture_prob=0.5, visited_fraction=1.0)),
    ("start_states", "frontier", {}, "toy", dict(visited_fraction=1.0)),
    ("visited_fraction", 0.3, {}, "toy"),
    ("visited_fraction", 0.3, VISITED, "toy"),
    ("visited_capture_prob", 0.9, {}, "toy"),
    ("visited_capture_prob", 0.1, VISITED, "toy"),
    ("visited_pool_size", 1, {}, "toy"),
    ("visited_pool_size", 1, VISITED, "toy"),
    ("frontier_cells", 3, {}, "toy"),
    ("frontier_cells", 3, FRONTIER, "toy"),
    ("frontier_explore_steps", 2, {}, "toy"),
    ("frontier_explore_steps", 2, FRONTIER, "toy"),
    # on the frontier it changes the draws only once the best episodes pass through restarted groups, later than
    # these first updates: tests/grpo/test_grpo.py's test_frontier_backward_draws_the_step_back_from_the_best_episodes
    ("frontier_backward", 1.0, {}, "toy"),
    ("fresh_time_limit", True, {}, "toy"),
    ("fresh_time_limit", True, VISITED, "toy"),
    ("resample_groups", 4, {}, "sparse"),
    ("branch_states", 4, {}, "toy"),
    ("branch_count", 3, {}, "toy"),
    ("branch_count", 3, BRANCHING, "toy"),
    ("branch_horizon", 2, {}, "toy"),
    ("branch_horizon", 2, BRANCHING, "toy"),
    ("branch_credit", 3, {}, "toy"),
    ("branch_credit", 3, BRANCHING, "toy"),
    ("common_random_numbers", True, {}, "toy"),
    ("common_random_numbers", True, BRANCHING, "toy"),
    ("state_mode", "seed", {}, "toy"),  # the VecEnv's envs are wrapped already (state_mode 'auto'): refused
    ("state_mode", "seed", {}, "gym"),  # a gym.Env: GRPO wraps it
    ("use_sde", True, {}, "toy"),
    ("sde_sample_freq", 2, {}, "toy"),
    ("sde_sample_freq", 2, SDE, "toy"),
    ("target_kl", 1e-6, {}, "toy"),
]

# SB3's own arguments (logging, devices, seeding, the policy): not GRPO's options
SB3_ARGUMENTS = {
    "policy",
    "env",
    "stats_window_size",
    "tensorboard_log",
    "policy_kwargs",
    "verbose",
    "seed",
    "device",
    "_init_setup_model",
}


def test_every_documented_option_has_a_case():
    documented = set(re.findall(r":param (\w+):", GRPO.__doc__))
    assert documented - SB3_ARGUMENTS == {case[0] for case in CASES}


def make_env(kind: str):
    return {"toy": vec_env, "sparse": lambda: vec_env(sparse=True), "id": lambda: "GRPOOptionsToy-v0", "gym": toy}[kind]()


class StopAfterRollouts(BaseCallback):
    """Stops ``learn`` at the first step of rollout ``n + 1``: the parameters are those after ``n`` updates."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.rollouts = n, 0

    def _on_rollout_start(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        return self.rollouts <= self.n


def parameters_after_updates(kwargs: dict, env: str, n_updates: int = 3) -> np.ndarray:
    kwargs = {"group_size": 4, "n_groups": 2, "n_epochs": 2, "n_minibatches": 4, **kwargs}
    model = GRPO("MlpPolicy", make_env(env), seed=0, device="cpu", **kwargs)
    model.set_logger(configure(None, [""]))
    model.learn(10**6, callback=StopAfterRollouts(n_updates))
    return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().numpy()


@pytest.mark.parametrize("supervision", ["step_mean", "outcome"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}={c[1]}-{'+'.join(c[2]) or 'defaults'}" for c in CASES])
def test_option_changes_the_first_updates_or_is_refused(supervision, case):
    name, value, base, env, *extra = case
    base = {"supervision": supervision, **base}
    if name == "supervision" and value == supervision:
        value = "step_mean" if supervision == "outcome" else "outcome"
    try:
        changed = parameters_after_updates({**base, name: value, **(extra[0] if extra else {})}, env)
    except ValueError as error:
        # the option, or the base it is tried on (advantage='softmax' with step_mean), named with its users
        named = "|".join([name, *base])
        assert re.search(rf"({named})=.* is used by|takes no", str(error)), str(error)
        return
    baseline = parameters_after_updates(base, env)
    assert not np.array_equal(changed, baseline), f"{name}={value!r} changed nothing with {base}"


def test_refusals_name_the_settings_that_use_them():
    env = vec_env()
    with pytest.raises(ValueError, match=r"advantage='softmax' is used by supervision='outcome' and branch scoring"):
        GRPO("MlpPolicy", env, advantage="softmax")
    with pytest.raises(ValueError, match=r"softmax_temperature=2.0 is used by advantage='softmax'"):
        GRPO("MlpPolicy", env, supervision="outcome", softmax_temperature=2.0)
    with pytest.raises(ValueError, match=r"visited_capture_prob=0.5 is used by start_states='visited'"):
        GRPO("MlpPolicy", env, start_states="frontier", visited_capture_prob=0.5)
    with pytest.raises(ValueError, match=r"branch_horizon=8 is used by branching rollouts \(branch_states > 0\)"):
        GRPO("MlpPolicy", env, branch_horizon=8)
    with pytest.raises(ValueError, match=r"kl_estimator='exact' is used by the KL penalty \(beta > 0\)"):
        GRPO("MlpPolicy", env, kl_estimator="exact")
    with pytest.raises(ValueError, match=r"takes no \['temperature_b'\]"):
        GRPO("MlpPolicy", env, supervision_kwargs=dict(temperature_b=1.0))
    with pytest.raises(ValueError, match=r"GRPO's own keywords"):
        GRPO("MlpPolicy", env, supervision_kwargs=dict(gamma=0.5))
