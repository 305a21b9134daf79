import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize

from sb3_po import GRPO
from sb3_po.common.env_state import EnvStateError, RestorableEnv
from sb3_po.common.env_util import make_restorable_atari_env
from sb3_po.common.policies import ZeroBaseline
from sb3_po.common.vec_env_state import VecEnvStates
from sb3_po.grpo.advantages import group_advantages
from tests.envs import DeepSea


class StartEnv(gym.Env):
    """Random start x0 in [0, 1); an episode lasts until a coin (the env's own randomness) comes up 3 times."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,))
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x0, self.t, self.heads = float(self.np_random.random()), 0, 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x0, self.t], dtype=np.float32)

    def step(self, action):
        self.t += 1
        self.heads += int(self.np_random.random() < 0.3)
        return self._obs(), float(action), self.heads >= 3, self.t >= 50, {}


class ConstantEnv(StartEnv):
    """Every episode has 5 steps and return 5, whatever the actions: every group has zero spread."""

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t >= 5, False, {}


def make_env(cls, n_envs=1, vec_env_cls=DummyVecEnv, **kwargs):
    return make_vec_env(cls, n_envs=n_envs, seed=0, wrapper_class=RestorableEnv, vec_env_cls=vec_env_cls, **kwargs)


@pytest.mark.parametrize("vec_env_cls,n_envs", [(DummyVecEnv, 1), (DummyVecEnv, 3), (SubprocVecEnv, 3)])
def test_group_members_share_their_start_and_groups_do_not(vec_env_cls, n_envs):
    env = make_env(StartEnv, n_envs, vec_env_cls)
    model = GRPO("MlpPolicy", env, group_size=4, n_groups=3, seed=0, device="cpu")
    model.learn(1)  # one rollout, one update
    groups = model.rollout_buffer.groups
    assert len(groups) == 3 and all(len(g) == 4 for g in groups)
    starts = model.rollout_buffer.start_observations()
    assert starts.shape == (3, 4, 2)
    for group in starts:
        for obs in group:
            np.testing.assert_array_equal(obs, group[0])  # x0 and t = 0
            assert obs[1] == 0
    firsts = [group[0][0] for group in starts]
    assert len(set(firsts)) == 3  # three different start states
    # after the start, members differ (actions and the env's coin): not all episodes are identical
    assert len({ep.length for g in groups for ep in g}) > 1
    env.close()


@pytest.mark.parametrize("n_envs", [1, 3])
def test_every_env_step_is_counted(n_envs):
    model = GRPO("MlpPolicy", make_env(StartEnv, n_envs), group_size=4, n_groups=2, seed=1, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(1)
    buffer = model.rollout_buffer
    idle = model.last_rollout.idle_steps
    assert model.num_timesteps == buffer.n_samples + idle
    assert model.num_timesteps % n_envs == 0
    if n_envs == 1:
        assert idle == 0
    assert model.logger.name_to_value["rollout/idle_fraction"] == pytest.approx(idle / model.num_timesteps)


def test_zero_spread_groups_give_zero_advantage_and_no_nan():
    model = GRPO("MlpPolicy", make_env(ConstantEnv), group_size=4, n_groups=2, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    before = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()
    model.learn(1)
    assert np.all(model.rollout_buffer.advantages == 0)
    assert model.logger.name_to_value["train/zero_spread_groups"] == 1.0
    after = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()
    assert th.all(th.isfinite(after)) and th.equal(before, after)  # nothing to learn, nothing moved


def test_critic_free_policy_has_no_value_parameters():
    grpo = GRPO("MlpPolicy", "CartPole-v1", device="cpu")
    ppo = PPO("MlpPolicy", "CartPole-v1", device="cpu")
    count = lambda m: sum(p.numel() for p in m.policy.parameters())  # noqa: E731
    value_params = (4 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    assert count(grpo) == count(ppo) - value_params
    assert isinstance(grpo.policy.value_net, ZeroBaseline)
    assert not any("value" in name for name, _ in grpo.policy.named_parameters())
    optimized = {id(p) for g in grpo.policy.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in grpo.policy.parameters()}


def test_outcome_advantage_reaches_every_step_of_the_episode():
    model = GRPO("MlpPolicy", make_env(StartEnv), group_size=4, n_groups=2, supervision="outcome", seed=0, device="cpu")
    model.learn(1)
    buffer = model.rollout_buffer
    per_episode = np.split(buffer.advantages, np.cumsum(buffer.episode_lengths)[:-1])
    returns = buffer.episode_returns.reshape(-1)
    for group in range(2):
        r = returns[group * 4 : (group + 1) * 4]
        expected = (r - r.mean()) / (r.std() + 1e-8) if np.ptp(r) > 0 else np.zeros(4)
        for i in range(4):
            np.testing.assert_allclose(per_episode[group * 4 + i], expected[i], rtol=1e-5)
    np.testing.assert_allclose(buffer.weights.sum(), 1.0, rtol=1e-5)  # loss_type="step": mean over all steps


@pytest.mark.parametrize("loss_type", ["episode", "dr_grpo"])
def test_loss_weights(loss_type):
    normalizer = 50 if loss_type == "dr_grpo" else None  # StartEnv has no spec to read max_episode_steps from
    model = GRPO(
        "MlpPolicy",
        make_env(StartEnv),
        group_size=4,
        n_groups=2,
        loss_type=loss_type,
        loss_normalizer=normalizer,
        seed=0,
        device="cpu",
    )
    model.learn(1)
    buffer = model.rollout_buffer
    per_episode = np.split(buffer.weights, np.cumsum(buffer.episode_lengths)[:-1])
    if loss_type == "episode":
        for w, n in zip(per_episode, buffer.episode_lengths, strict=True):
            np.testing.assert_allclose(w, 1 / (8 * n), rtol=1e-6)
    else:
        np.testing.assert_allclose(buffer.weights, 1 / (8 * 50), rtol=1e-6)


def test_reference_policy_kl_updates_and_save_load(tmp_path):
    env = make_env(StartEnv)
    model = GRPO("MlpPolicy", env, group_size=4, n_groups=1, beta=0.1, ref_update_interval=2, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    initial = th.nn.utils.parameters_to_vector(model.ref_policy.parameters()).detach().clone()
    model.learn(1)
    ref = th.nn.utils.parameters_to_vector(model.ref_policy.parameters()).detach()
    assert th.equal(ref, initial) and model._n_rollouts == 1  # not yet: every 2 rollouts
    assert model.logger.name_to_value["train/kl_ref"] > 0
    model.learn(1, reset_num_timesteps=False)
    policy = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()
    ref = th.nn.utils.parameters_to_vector(model.ref_policy.parameters()).detach()
    assert th.equal(ref, policy) and model._n_ref_updates == 1
    model.learn(1, reset_num_timesteps=False)  # the policy moves on, the reference stays
    model.save(tmp_path / "grpo")
    loaded = GRPO.load(tmp_path / "grpo", env=env, device="cpu")
    assert loaded._n_rollouts == 3 and loaded._n_ref_updates == 1 and loaded.beta == 0.1
    for a, b in ((model.ref_policy, loaded.ref_policy), (model.policy, loaded.policy)):
        assert th.equal(th.nn.utils.parameters_to_vector(a.parameters()), th.nn.utils.parameters_to_vector(b.parameters()))
    obs = np.random.default_rng(0).random((6, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(1, reset_num_timesteps=False)


def test_dr_grpo_normaliser_comes_from_the_time_limit():
    assert GRPO("MlpPolicy", "CartPole-v1", loss_type="dr_grpo").loss_normalizer == 500
    with pytest.raises(ValueError, match="needs loss_normalizer"):
        GRPO("MlpPolicy", make_env(StartEnv), loss_type="dr_grpo")


def test_beta_zero_keeps_no_reference_policy():
    model = GRPO("MlpPolicy", "CartPole-v1", device="cpu")
    assert model.ref_policy is None and model._get_torch_save_params()[0] == ["policy", "policy.optimizer"]


class EqualReturnsEnv(StartEnv):
    """Two steps: reward a0, then 1 - a0. Every return is 1, but the per-step rewards differ with the first action."""

    def step(self, action):
        self.t += 1
        if self.t == 1:
            self.a0 = float(action)
            return self._obs(), self.a0, False, False, {}
        return self._obs(), 1.0 - self.a0, True, False, {}


@pytest.mark.parametrize("supervision,discarded", [("outcome", 2), ("step_mean", 0), ("step_rloo", 0), ("process", 0)])
def test_dynamic_sampling_discards_only_groups_without_advantages(supervision, discarded):
    """Defect 3: equal returns are no gradient for outcome supervision only; the per-step estimators keep the group."""
    model = GRPO("MlpPolicy", make_env(EqualReturnsEnv, 2), group_size=8, n_groups=2, resample_groups=2, gamma=1.0,
                 supervision=supervision, seed=0, device="cpu")  # fmt: skip
    model.set_logger(configure(None, ["csv"]))
    model.learn(1)
    assert model.logger.name_to_value["rollout/discarded_groups"] == discarded
    assert np.ptp(model.rollout_buffer.episode_returns) == 0  # every return is 1
    assert (np.any(model.rollout_buffer.advantages != 0)) == (supervision != "outcome")


class FiveStepsEnv(StartEnv):
    """Reward = action for 5 steps; the 5th step ends the episode by termination or, ``truncated``, by a time limit."""

    truncated = False

    def step(self, action):
        self.t += 1
        done = self.t >= 5
        return self._obs(), float(action), done and not self.truncated, done and self.truncated, {}


class TruncatedFiveStepsEnv(FiveStepsEnv):
    truncated = True


def test_truncated_members_are_scored_as_if_they_had_terminated():
    """Defect 6, documented: without a critic nothing is bootstrapped past a time limit; the update is the same."""
    params = []
    for cls in (FiveStepsEnv, TruncatedFiveStepsEnv):
        model = GRPO("MlpPolicy", make_env(cls, 2), group_size=4, n_groups=2, seed=0, device="cpu")
        model.learn(1)
        assert np.any(model.rollout_buffer.advantages != 0)
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    assert th.equal(*params)


def test_visited_start_states_branch_mid_episode():
    model = GRPO(
        "MlpPolicy",
        make_env(StartEnv),
        group_size=3,
        n_groups=4,
        start_states="visited",
        visited_capture_prob=0.5,
        visited_fraction=1.0,
        seed=0,
        device="cpu",
    )
    model.learn(1)
    assert len(model._visited_states) > 0
    model.learn(1, reset_num_timesteps=False)
    starts = model.rollout_buffer.start_observations()
    assert any(group[0][1] > 0 for group in starts)  # t > 0: the group starts in the middle of an episode
    for group in starts:
        for obs in group:
            np.testing.assert_array_equal(obs, group[0])


def test_action_spaces_and_dict_observations():
    for env_id in ("Pendulum-v1", "MountainCarContinuous-v0"):
        GRPO("MlpPolicy", env_id, group_size=2, n_groups=1, device="cpu").learn(10)
    GRPO("MlpPolicy", "Pendulum-v1", group_size=2, n_groups=1, use_sde=True, device="cpu").learn(10)


def test_vec_normalize_is_seen_through():
    env = VecNormalize(make_env(StartEnv, 2), norm_reward=False)
    model = GRPO("MlpPolicy", env, group_size=3, n_groups=1, seed=0, device="cpu")
    model.learn(1)
    raw = np.array([[0.5, 3.0]], dtype=np.float32)
    # restored starts are normalised too
    np.testing.assert_array_equal(VecEnvStates(env).observations(raw), env.normalize_obs(raw))
    # with frozen statistics, the members' (normalised) start observations are equal
    env.training = False
    model.learn(1, reset_num_timesteps=False)
    starts = model.rollout_buffer.start_observations()[0]
    for obs in starts:
        np.testing.assert_array_equal(obs, starts[0])


def test_clear_errors():
    subproc = make_vec_env(StartEnv, n_envs=2, vec_env_cls=SubprocVecEnv)
    with pytest.raises(EnvStateError, match=r"wrap each env in sb3_po\.common\.env_state\.RestorableEnv"):
        GRPO("MlpPolicy", subproc)
    subproc.close()
    with pytest.raises(EnvStateError, match="VecFrameStack"):
        GRPO("MlpPolicy", VecFrameStack(make_env(StartEnv), 2))
    with pytest.raises(ValueError, match="norm_reward=False"):
        GRPO("MlpPolicy", VecNormalize(make_env(StartEnv)))
    with pytest.raises(EnvStateError, match="mid-episode"):
        GRPO("MlpPolicy", "CartPole-v1", state_mode="seed", start_states="visited")
    with pytest.raises(EnvStateError, match="start_states='reset' and branch_states=0"):
        GRPO("MlpPolicy", "CartPole-v1", state_mode="seed", branch_states=4)
    with pytest.raises(EnvStateError, match="LunarLander"):
        GRPO("MlpPolicy", "LunarLander-v3")
    GRPO("MlpPolicy", "LunarLander-v3", state_mode="seed", group_size=2, n_groups=1).learn(10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(group_size=1), "group_size must be an integer >= 2"),
        (dict(group_size=2.5), "group_size"),
        (dict(n_groups=0), "n_groups"),
        (dict(beta=-0.1), "beta must be"),
        (dict(clip_range=0.0), r"clip_range must be in \(0, 1\)"),
        (dict(clip_range=1.5), r"clip_range must be in \(0, 1\)"),
        (dict(clip_range_upper=-0.2), "clip_range_upper"),
        (dict(advantage="rank"), "advantage must be one of"),
        (dict(loss_type="token"), "loss_type"),
        (dict(supervision="dense"), "supervision"),
        (dict(start_states="random"), "start_states"),
        (dict(gamma=0.0), "gamma"),
        (dict(ref_update_interval=-1), "ref_update_interval"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_subproc_workers_that_fail_the_restore_check_give_the_message_once(capfd):
    """Issue 29: the check's message from every worker and a ConnectionResetError; now the message once."""
    env = make_env(StartEnv, 3, SubprocVecEnv, wrapper_kwargs=dict(state_mode="state"))
    with pytest.raises(EnvStateError, match=r"StartEnv has no get_state\(\)/set_state\(\)") as error:
        GRPO("MlpPolicy", env, group_size=3, device="cpu")
    assert "Ways out" in str(error.value)
    env.close()
    assert "Traceback" not in capfd.readouterr().err


def test_gym_env_instance_is_wrapped():
    model = GRPO("MlpPolicy", Monitor(StartEnv()), group_size=2, n_groups=1, device="cpu")
    assert model.get_env().env_is_wrapped(RestorableEnv) == [True]
    model.learn(1)


def test_loaded_model_predicts_in_any_env_and_learns_only_in_restorable_ones(tmp_path):
    GRPO("MlpPolicy", make_env(StartEnv), group_size=2, n_groups=1, device="cpu").save(tmp_path / "grpo")
    plain = make_vec_env(StartEnv, n_envs=1, vec_env_cls=SubprocVecEnv)
    model = GRPO.load(tmp_path / "grpo", env=plain, device="cpu")
    model.predict(plain.reset(), deterministic=True)
    with pytest.raises(EnvStateError, match="RestorableEnv"):
        model.learn(10)
    plain.close()
    # a DummyVecEnv's envs live in this process: GRPO makes them restorable, in load as in the constructor
    model = GRPO.load(tmp_path / "grpo", env=make_vec_env(StartEnv, n_envs=1), device="cpu")
    model.learn(10)


def test_last_rollout_opens_only_the_groups_the_budget_needs():
    # every episode of ConstantEnv lasts 5 steps: a group of 4 costs 20 env steps on one env
    model = GRPO("MlpPolicy", make_env(ConstantEnv), group_size=4, n_groups=8, seed=0, device="cpu")
    model.learn(200)  # a full first rollout (8 groups, 160 steps), then 2 groups for the remaining 40
    assert model.num_timesteps == 200
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 240
    assert [len(group) for group in model.rollout_buffer.groups] == [4, 4]
    model.learn(30, reset_num_timesteps=False)  # 1 group (20 steps), then 1 more for the last 10: never fewer members
    assert model.num_timesteps == 280
    assert [len(group) for group in model.rollout_buffer.groups] == [4]


def test_env_id_builds_one_env_per_group_member():
    assert GRPO("MlpPolicy", "CartPole-v1", group_size=6, device="cpu").n_envs == 6
    assert GRPO("MlpPolicy", "CartPole-v1", group_size=6, n_envs=3, device="cpu").n_envs == 3
    with pytest.raises(ValueError, match="n_envs"):
        GRPO("MlpPolicy", "CartPole-v1", n_envs=0)


class ProtocolEnv(StartEnv):
    """Implements the restore protocol itself (a counter the built-in backends know nothing about)."""

    def get_state(self):
        return dict(x0=self.x0, t=self.t, heads=self.heads)

    def set_state(self, state):
        self.x0, self.t, self.heads = state["x0"], state["t"], state["heads"]


@pytest.mark.parametrize("env_cls", ["CartPole-v1", ProtocolEnv])
def test_plain_dummy_vec_env_is_made_restorable(env_cls):
    env = make_vec_env(env_cls, n_envs=4, seed=0)  # no RestorableEnv anywhere
    model = GRPO("MlpPolicy", env, group_size=4, n_groups=2, seed=0, device="cpu")
    assert model.get_env() is env and all(env.env_is_wrapped(RestorableEnv))
    if env_cls is ProtocolEnv:
        assert env.get_attr("backend") == ["protocol"] * 4  # restored through its own get_state / set_state
    model.learn(1)
    for group in model.rollout_buffer.start_observations():
        for obs in group:
            np.testing.assert_array_equal(obs, group[0])


class GridEnv(gym.Env):
    """A walk on [0, 1): action 1 moves right by 0.05, action 0 stays; reward 1 at the right end (sparse)."""

    observation_space = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action):
        self.x = min(self.x + 0.05 * int(action), 0.999)
        done = self.x >= 0.95
        return np.array([self.x], dtype=np.float32), float(done), done, False, {}

    def get_state(self):
        return self.x

    def set_state(self, state):
        self.x = state


def grid_env(n_envs=2, max_episode_steps=10):
    return make_vec_env(lambda: gym.wrappers.TimeLimit(GridEnv(), max_episode_steps), n_envs=n_envs, seed=0,
                        wrapper_class=RestorableEnv)  # fmt: skip


def test_frontier_archive_keeps_one_state_per_cell_and_prefers_rare_cells():
    model = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=2, start_states="frontier", frontier_cells=10,
                 visited_fraction=1.0, seed=0, device="cpu")  # fmt: skip
    model.set_logger(configure(None, ["csv"]))
    model.learn(1)
    strategy = model.start_state_strategy
    archive = strategy.archive
    assert len(archive) > 1 and archive.seen.sum() > 0
    assert len(set(archive.keys.tolist())) == len(archive)  # one entry per cell
    saved = np.array([[state["obs"][0]] for state in archive.states])
    np.testing.assert_array_equal(strategy.cells(saved), archive.keys)  # each state lies in its cell
    np.testing.assert_array_equal(saved, archive.observations)
    assert model.logger.name_to_value["rollout/frontier_cells"] == len(archive)
    # the draw: Go-Explore's count weights; a cell seen and chosen far less often is drawn far more often
    archive.seen[:], archive.chosen[:] = 10_000, 10_000
    archive.seen[-1], archive.chosen[-1] = 0, 0
    drawn = [model.collector.start_states.draw().state["obs"][0] for _ in range(200)]
    assert np.mean([x == saved[-1, 0] for x in drawn]) > 0.8


@pytest.mark.parametrize("fresh", [True, False])
def test_frontier_start_with_or_without_a_fresh_time_budget(fresh):
    model = GRPO("MlpPolicy", grid_env(n_envs=1, max_episode_steps=10), group_size=2, n_groups=1, start_states="frontier",
                 visited_fraction=1.0, fresh_time_limit=fresh, seed=0, device="cpu")  # fmt: skip
    model.learn(1)
    state = model.start_state_strategy.archive.states[-1]
    env = model.get_env()
    env.env_method("set_state", state, fresh_time_limit=fresh, indices=[0])
    elapsed = env.env_method("get_state", indices=[0])[0]["inner"][0][0]  # TimeLimit's elapsed steps, saved
    saved = state["inner"][0][0]
    assert saved > 0
    assert elapsed == (0 if fresh else saved)


def test_frontier_archive_is_saved_with_the_model(tmp_path):
    model = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=2, start_states="frontier", seed=0, device="cpu")
    model.learn(100)
    archive = model.start_state_strategy.archive
    model.save(tmp_path / "model")
    loaded = GRPO.load(tmp_path / "model", env=grid_env(), device="cpu")
    again = loaded.start_state_strategy.archive
    assert len(again) == len(archive) > 1 and again.n_cells == archive.n_cells
    np.testing.assert_array_equal(again.keys, archive.keys)
    np.testing.assert_array_equal(again.seen, archive.seen)
    assert [s["obs"][0] for s in again.states] == [s["obs"][0] for s in archive.states]
    loaded.learn(100)  # and goes on from it
    assert again.seen.sum() > archive.seen.sum()


def test_frontier_explore_steps_are_random_counted_env_steps_from_the_drawn_state():
    model = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=3, start_states="frontier", visited_fraction=1.0,
                 frontier_explore_steps=4, seed=0, device="cpu")  # fmt: skip
    model.learn(1)  # the first rollout: an empty archive, every group from a reset
    assert model.num_timesteps == model.last_rollout.env_steps
    before = model.num_timesteps
    model.learn(1, reset_num_timesteps=False)  # every group drawn from the archive, 4 random actions first
    rollout = model.last_rollout
    assert model.num_timesteps - before == rollout.env_steps  # every env step counted, the explore steps too
    # 4 random actions for each group (no archived state is within 4 steps of the goal: none ends early); the slots
    # step together, the explore steps one slot at a time
    assert rollout.explore_steps == 4 * rollout.n_groups > 0
    assert (rollout.env_steps - rollout.explore_steps) % model.n_envs == 0
    # not trained on: the buffer holds the members' steps only (every slot step but the idle ones)
    assert model.rollout_buffer.n_samples == rollout.env_steps - rollout.explore_steps - rollout.idle_steps
    assert model.logger.name_to_value["rollout/explore_steps"] == rollout.explore_steps


def test_frontier_gives_a_fresh_time_budget_by_default():
    frontier = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=1, start_states="frontier", device="cpu")
    visited = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=1, start_states="visited", device="cpu")
    assert frontier.collector.fresh_time_limit is True and visited.collector.fresh_time_limit is False
    assert frontier.fresh_time_limit is None  # the constructor's value is kept (saved) as given


def test_the_frontiers_defaults_are_the_backward_step_without_the_std_scaling():
    def settings(**kwargs):
        model = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=1, device="cpu", **kwargs)
        return model.rollout_buffer.advantage_estimator.scale_rewards, getattr(model.start_state_strategy, "backward", None)

    assert settings(start_states="frontier") == ("none", 0.5)  # the frontier's default (issue 32)
    assert settings()[0] == "group" and settings(start_states="visited")[0] == "group"
    # a value given is kept; outcome supervision scales only with advantage="mean_std": elsewhere "group" (unused)
    assert settings(start_states="frontier", scale_rewards="group", frontier_backward=0.0) == ("group", 0.0)
    assert settings(start_states="frontier", supervision="outcome")[0] == "none"
    assert settings(start_states="frontier", supervision="outcome", advantage="softmax")[0] == "group"
    # the constructor's None is kept as given (saved), resolved where used
    model = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=1, start_states="frontier", device="cpu")
    assert model.scale_rewards is None and model.resolved_scale_rewards == "none"


def test_the_frontiers_update_defaults_are_an_entropy_bonus_of_001_and_20_epochs():
    def trained(**kwargs):
        model = GRPO("MlpPolicy", grid_env(), group_size=2, n_groups=1, seed=0, device="cpu", **kwargs)
        model.set_logger(configure(None, ["csv"]))
        model.learn(1)
        return (model.ent_coef, model.n_epochs), th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()

    settings, default = trained(start_states="frontier")
    assert settings == (0.01, 20)
    assert trained()[0] == (0.0, 10) and trained(start_states="visited")[0] == (0.0, 10)
    # the defaults are what the update uses: the same as both given, not as either changed (a value given is kept)
    given_settings, given = trained(start_states="frontier", ent_coef=0.01, n_epochs=20)
    assert given_settings == (0.01, 20) and th.equal(default, given)
    for changed in (dict(ent_coef=0.0), dict(n_epochs=10)):
        changed_settings, other = trained(start_states="frontier", **changed)
        assert changed_settings == (changed.get("ent_coef", 0.01), changed.get("n_epochs", 20))
        assert not th.allclose(default, other)


def test_frontier_backward_draws_the_step_back_from_the_best_episodes():
    env = make_vec_env(lambda: DeepSea(size=6), n_envs=4, seed=0, wrapper_class=RestorableEnv)
    grpo = GRPO("MlpPolicy", env, group_size=4, n_groups=2, start_states="frontier", visited_fraction=1.0,
                frontier_backward=1.0, seed=0, device="cpu")  # fmt: skip
    archive = grpo.start_state_strategy.archive
    for _ in range(30):  # until an episode from a restart did better than the way to its start
        grpo.learn(1, reset_num_timesteps=False)
        if len(archive.backward_step()):
            break
    step_back = set(archive.keys[archive.backward_step()].tolist())
    assert step_back and grpo.logger.name_to_value["rollout/frontier_backward_cells"] == len(step_back)
    # every draw takes the step back with frontier_backward=1; none is bound to it with 0 (count weights over all)
    assert {grpo.start_state_strategy.draw().cell for _ in range(50)} <= step_back
    grpo.start_state_strategy.backward = 0.0
    assert not {grpo.start_state_strategy.draw().cell for _ in range(200)} <= step_back


def test_frontier_takes_unbounded_observations_and_refuses_what_it_cannot_grid():
    model = GRPO("MlpPolicy", "CartPole-v1", group_size=2, n_groups=1, start_states="frontier", device="cpu")
    model.learn(200)  # CartPole's velocities are unbounded: the cells follow the range seen
    archive = model.start_state_strategy.archive
    assert np.all(np.isfinite(archive.low)) and np.all(archive.high >= archive.low) and len(archive) > 1
    with pytest.raises(ValueError, match="over images"):
        GRPO("CnnPolicy", make_restorable_atari_env("BreakoutNoFrameskip-v4", n_envs=2), start_states="frontier")


def test_dynamic_sampling_replaces_zero_spread_groups_and_counts_their_steps():
    # ConstantEnv: every group has zero spread, so each is replaced until the extra groups run out
    model = GRPO("MlpPolicy", make_env(ConstantEnv), group_size=4, n_groups=2, resample_groups=3, seed=0, device="cpu")
    model.set_logger(configure(None, ["csv"]))
    model.learn(1)
    assert model.logger.name_to_value["rollout/discarded_groups"] == 3
    assert len(model.rollout_buffer.groups) == 2  # the requested number of groups is trained on
    assert model.num_timesteps == (2 + 3) * 4 * 5  # the discarded groups' steps count
    assert model.logger.name_to_value["rollout/env_steps"] == model.num_timesteps


def test_branching_rollouts_score_branches_and_train_their_first_actions():
    model = GRPO("MlpPolicy", make_env(StartEnv, 2), group_size=3, n_groups=2, branch_states=4, branch_count=3,
                 branch_horizon=4, branch_credit=1, seed=0, device="cpu")  # fmt: skip
    model.set_logger(configure(None, ["csv"]))
    model.learn(1)  # the first rollout measures the trunks' steps
    model.learn(1, reset_num_timesteps=False)  # now about branch_states states per rollout are branched from
    buffer = model.rollout_buffer
    n_trunks = len(buffer.episode_returns)  # one group (learn(1) sizes the rollout to its budget), then the branches
    trunks, branches = buffer.groups[:n_trunks], buffer.groups[n_trunks:]
    assert n_trunks == 1 and len(trunks[0]) == 3 and all(ep.credit is None for ep in trunks[0])
    assert 1 <= len(branches) <= 4 and all(len(g) == 3 for g in branches)
    assert all(ep.credit == 1 and ep.length <= 4 for g in branches for ep in g)
    assert model.logger.name_to_value["rollout/branch_groups"] == len(branches)
    # trained on: every step of the trunks, the first action of each branch
    n_trunk_steps = sum(ep.length for g in trunks for ep in g)
    assert buffer.n_samples == n_trunk_steps + 3 * len(branches)
    # a branch's advantage: its return relative to the other branches of its state (StartEnv: reward = action)
    branch_advantages = buffer.advantages[n_trunk_steps:].reshape(len(branches), 3)
    expected = group_advantages(buffer.branch_returns)
    np.testing.assert_allclose(branch_advantages, expected, rtol=1e-5, atol=1e-6)
    # the branches of a state start from it: the same first observation (x0 and the trunk's t > 0 or = 0)
    firsts = buffer.observations[n_trunk_steps:].reshape(len(branches), 3, 2)
    for group in firsts:
        for obs in group:
            np.testing.assert_array_equal(obs, group[0])


@pytest.mark.parametrize("common", [True, False])
def test_common_random_numbers_restore_the_env_generator_alike(common):
    env = make_env(StartEnv, 2)
    env.reset()
    states = VecEnvStates(env)
    state = env.env_method("get_state", indices=[0])[0]
    states.restore([0, 1], state, rng_seed=123 if common else None)
    heads = []
    for _ in range(30):  # StartEnv's coin is the env's own randomness; the same actions in both slots
        _, _, dones, _ = env.step(np.array([0, 0]))
        heads.append(env.get_attr("heads"))
        if dones.any():
            break
    same = all(a == b for a, b in heads)
    assert same == common


def test_set_env_follows_sb3s_test_set_env(tmp_path):
    """SB3's test_set_env (tests/test_save_load.py) with GRPO: DummyVecEnvs and a gym.Env set and learned on."""
    env = DummyVecEnv([lambda: StartEnv()])
    env2 = DummyVecEnv([lambda: StartEnv()])
    env3 = StartEnv()
    env4 = DummyVecEnv([lambda: StartEnv() for _ in range(2)])
    model = GRPO("MlpPolicy", env, group_size=2, n_groups=1, n_epochs=1, device="cpu")
    model.learn(total_timesteps=64)
    model.set_env(env2, force_reset=True)
    assert model._last_obs is None  # SB3: the last observation was discarded
    model.learn(total_timesteps=64, reset_num_timesteps=True)
    assert 64 <= model.num_timesteps < 64 + 2 * 50  # groups are never cut: at most one group past the budget
    model.set_env(env3)
    model.learn(total_timesteps=64)
    with pytest.raises(AssertionError):  # SB3: set_env keeps the number of envs; load takes another
        model.set_env(env4)
    model.save(tmp_path / "grpo")
    model = GRPO.load(tmp_path / "grpo", env=env4, device="cpu")
    assert model.get_env().env_is_wrapped(RestorableEnv) == [True, True]
    model.learn(total_timesteps=64)


def test_load_without_env_says_how_to_learn_and_takes_env_ids(tmp_path):
    GRPO("MlpPolicy", "CartPole-v1", n_envs=2, state_mode="copy", group_size=2, n_groups=1, device="cpu").save(
        tmp_path / "grpo"
    )
    model = GRPO.load(tmp_path / "grpo", device="cpu")
    with pytest.raises(ValueError, match=r"no env to learn on.*GRPO.load\(path, env=.*set_env"):
        model.learn(10)
    model = GRPO.load(tmp_path / "grpo", env="CartPole-v1", device="cpu")  # an env id, as the constructor takes
    assert model.get_env().num_envs == 2 and model.get_env().get_attr("backend") == ["copy", "copy"]
    model.learn(10)
    model.set_env("CartPole-v1")
    model.learn(10)
