"""The registry the zoo bridge and the scripts share: names, shipped entries, strings parsed without eval, envs."""

import pytest
import torch as th
from stable_baselines3 import PPO

from sb3_po import GRPO, KLPPO, NPG, VPG
from sb3_po.common.buffers import NStepRolloutBuffer
from sb3_po.common.env_state import RestorableEnv
from sb3_po.registry import (
    algorithm_class,
    algorithm_name,
    default_timesteps,
    make_env,
    parse_value,
    resolve_hyperparams,
)


def test_names_and_shipped_budgets():
    assert [algorithm_class(n) for n in ("vpg", "kl_ppo", "grpo", "npg", "ppo")] == [VPG, KLPPO, GRPO, NPG, PPO]
    with pytest.raises(ValueError, match="Unknown algorithm 'sac'"):
        algorithm_class("sac")

    class MyKLPPO(KLPPO):
        pass

    assert (algorithm_name(MyKLPPO), algorithm_name(GRPO), algorithm_name(PPO)) == ("kl_ppo", "grpo", None)
    assert default_timesteps("kl_ppo", "CartPole-v1") == 100_000  # "1e5" in the YAML
    assert algorithm_name(NPG) == "npg" and default_timesteps("npg", "Hopper-v5") == 1_000_000
    assert default_timesteps("grpo", "NoSuchEnv-v0") is None


def test_zoo_strings_are_parsed_not_evaluated(tmp_path):
    text = "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=(64,)))"
    assert parse_value(text) == dict(
        log_std_init=-2, ortho_init=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[256, 256], vf=(64,))
    )
    assert parse_value("th.nn.Tanh") is th.nn.Tanh and parse_value("{'a': None, 'b': 1e-3}") == {"a": None, "b": 1e-3}
    resolved = resolve_hyperparams(
        dict(rollout_buffer_class="sb3_po.common.buffers.NStepRolloutBuffer", rollout_buffer_kwargs="dict(n_step=5)")
    )
    assert resolved == dict(rollout_buffer_class=NStepRolloutBuffer, rollout_buffer_kwargs={"n_step": 5})
    marker = tmp_path / "ran"
    for code in (f"__import__('pathlib').Path({str(marker)!r}).touch()", "dict(a=1 + 2)", "os.system", "Tanh", "dict(**x)"):
        with pytest.raises(ValueError, match=r"Cannot (parse|resolve)"):
            parse_value(code)
    assert not marker.exists()


def test_envs_for_grpo_are_restorable():
    env = make_env("grpo", "CartPole-v1", n_envs=2, seed=0, state_mode="seed")
    assert all(env.env_is_wrapped(RestorableEnv)) and env.get_attr("backend") == ["seed", "seed"]
    assert not any(make_env("vpg", "CartPole-v1", n_envs=2, seed=0).env_is_wrapped(RestorableEnv))
