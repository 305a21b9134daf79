"""
The "Can I use?" tables of the algorithm pages (docs/modules/*.md), read from the pages themselves: every ✔️ cell
trains its algorithm for a few hundred steps on an env with that action or observation space, and every ❌ action
cell is refused at construction. A claim added to a table without the support behind it fails here.
"""

import re
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO

from sb3_po import GRPO, KLPPO, NPG, VPG
from sb3_po.common.buffers import MaskableNStepRolloutBuffer, NStepRolloutBuffer, RecurrentNStepRolloutBuffer
from sb3_po.ppo_recurrent import RecurrentPPO

DOCS = Path(__file__).resolve().parents[1] / "docs" / "modules"
STEPS = 256

ACTION_SPACES = {
    "Discrete": spaces.Discrete(3),
    "Box": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
    "MultiDiscrete": spaces.MultiDiscrete([3, 2]),
    "MultiBinary": spaces.MultiBinary(3),
    "Dict": spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)}),
}
OBSERVATION_SPACES = {
    "Discrete": spaces.Discrete(4),
    "Box": spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
    "MultiDiscrete": spaces.MultiDiscrete([3, 2]),
    "MultiBinary": spaces.MultiBinary(3),
    "Dict": spaces.Dict({"vec": spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32), "disc": spaces.Discrete(3)}),
    "Image": spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8),  # NatureCNN's smallest input
}


class SpaceEnv(gym.Env):
    """Random observations of ``observation_space``, episodes of 10 steps; deep-copies (GRPO restores it by copy)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any):
        self.t += 1
        return self.observation_space.sample(), float(self.np_random.normal()), False, self.t >= 10, {}

    def action_masks(self) -> np.ndarray:  # MaskablePPO: every action allowed
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return np.ones(space.n, dtype=bool)
        if isinstance(space, spaces.MultiDiscrete):
            return np.ones(int(space.nvec.sum()), dtype=bool)
        return np.ones(2 * int(np.prod(space.shape)), dtype=bool)  # MultiBinary (and Box, which masking refuses)


class Claim(NamedTuple):
    page: str
    column: str  # "Action", "Action (PPO)", "Observation", ...
    space: str  # a row of the table
    supported: bool


def claims(page: str) -> list[Claim]:
    """The cells of the page's "Can I use?" space table."""
    text = (DOCS / f"{page}.md").read_text()
    section = text.split("## Can I use?", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    found = []
    for line in rows[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        space = re.match(r"\w+", cells[0]).group(0)  # "Image (Box, `CnnPolicy`)" -> "Image"
        for column, cell in zip(header[1:], cells[1:], strict=True):
            assert cell in ("✔️", "❌"), f"{page}: cell {column}/{space} reads {cell!r}"
            found.append(Claim(page, column, space, cell == "✔️"))
    return found


def policy_name(algo: str, observation: str) -> str:
    kind = {"Image": "Cnn", "Dict": "MultiInput"}.get(observation, "Mlp")
    return f"{kind}LstmPolicy" if algo == "ppo_recurrent" else f"{kind}Policy"


def build(page: str, column: str, observation: str, action: str):
    env = SpaceEnv(OBSERVATION_SPACES[observation], ACTION_SPACES[action])
    policy = policy_name(page, observation)
    small = dict(n_steps=32, seed=0)
    if page == "vpg":
        return VPG(policy, env, n_critic_updates=2, **small)
    if page == "kl_ppo":
        return KLPPO(policy, env, batch_size=32, n_epochs=2, **small)
    if page == "npg":
        return NPG(policy, env, batch_size=32, n_critic_updates=2, **small)
    if page == "grpo":
        return GRPO(policy, env, group_size=2, n_groups=1, n_epochs=2, n_minibatches=2, seed=0)
    if page == "ppo_recurrent":
        return RecurrentPPO(policy, env, batch_size=32, n_epochs=2, rollout_buffer_class=RecurrentNStepRolloutBuffer, **small)
    if page == "estimators" and column == "Action (MaskablePPO)":
        return MaskablePPO(policy, env, batch_size=32, n_epochs=2, rollout_buffer_class=MaskableNStepRolloutBuffer, **small)
    if page == "estimators":
        return PPO(policy, env, batch_size=32, n_epochs=2, rollout_buffer_class=NStepRolloutBuffer, **small)
    raise AssertionError(f"no builder for {page}")


PAGES = ["vpg", "kl_ppo", "grpo", "npg", "ppo_recurrent", "estimators"]
CLAIMS = [claim for page in PAGES for claim in claims(page)]


def test_every_page_has_its_table():
    assert {claim.page for claim in CLAIMS} == set(PAGES)
    for page in PAGES:
        spaces_claimed = {claim.space for claim in CLAIMS if claim.page == page}
        assert spaces_claimed == {"Discrete", "Box", "MultiDiscrete", "MultiBinary", "Dict", "Image"}


@pytest.mark.parametrize("claim", [c for c in CLAIMS if c.supported], ids=lambda c: f"{c.page}-{c.column}-{c.space}")
def test_claimed_space_trains(claim: Claim):
    th.set_num_threads(1)
    observation, action = ("Box", claim.space) if claim.column.startswith("Action") else (claim.space, "Discrete")
    model = build(claim.page, claim.column, observation, action)
    model.learn(STEPS)
    assert model.num_timesteps >= STEPS
    assert model.action_space == ACTION_SPACES[action]
    obs = model.get_env().reset()
    state = model.predict(obs)[1] if claim.page == "ppo_recurrent" else None
    act, _ = model.predict(obs, state=state, episode_start=np.ones(1, dtype=bool)) if state is not None else model.predict(obs)
    assert ACTION_SPACES[action].contains(np.asarray(act[0], dtype=ACTION_SPACES[action].dtype))


@pytest.mark.parametrize(
    "claim",
    [c for c in CLAIMS if not c.supported and not (c.column.startswith("Action") and c.space == "Image")],
    ids=lambda c: f"{c.page}-{c.column}-{c.space}",
)
def test_unsupported_space_fails(claim: Claim):
    """A ❌ is true: the algorithm refuses the space, at construction or at the first update."""
    th.set_num_threads(1)
    observation, action = ("Box", claim.space) if claim.column.startswith("Action") else (claim.space, "Discrete")
    with pytest.raises((AssertionError, ValueError, TypeError, NotImplementedError, RuntimeError)):
        build(claim.page, claim.column, observation, action).learn(STEPS)
