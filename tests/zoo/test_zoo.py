"""The RL Zoo bridge, through rl_zoo3's own train / enjoy / optimize code (no mocks)."""

import glob
import os
import subprocess
import sys

import optuna
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_po.common.buffers import RecurrentNStepRolloutBuffer
from sb3_po.grpo import GRPO
from sb3_po.ppo_recurrent import RecurrentPPO
from sb3_po.zoo import config_path, default_arguments, main, resolve_hyperparams, with_restorable_env

ALGO_SCALARS = {
    "vpg": {"train/value_loss", "train/policy_loss", "train/approx_kl"},
    "kl_ppo": {"train/beta", "train/kl", "train/kl_penalty"},
    "grpo": {"train/group_return_mean", "train/group_return_std", "train/zero_spread_groups"},
    "npg": {"train/kl", "train/step_size", "train/policy_objective", "train/value_loss"},
}


def zoo(*args):
    main(list(args))


@pytest.mark.parametrize("algo", ["vpg", "kl_ppo", "grpo", "npg"])
def test_train_enjoy_and_tensorboard_from_the_shipped_yaml(tmp_path, algo):
    logs, tb = str(tmp_path / "logs"), str(tmp_path / "tb")
    zoo(
        "train",
        "--algo",
        algo,
        "--env",
        "CartPole-v1",
        "-n",
        "3000",
        "-f",
        logs,
        "--tensorboard-log",
        tb,
        "--eval-freq",
        "-1",
        "--seed",
        "0",
        "--progress",
    )
    run_dir = os.path.join(logs, algo, "CartPole-v1_1")
    assert os.path.exists(os.path.join(run_dir, "CartPole-v1.zip"))
    with open(os.path.join(run_dir, "CartPole-v1", "config.yml")) as f:
        saved = dict(yaml.load(f, Loader=yaml.UnsafeLoader))  # the zoo saves an OrderedDict
    shipped = yaml.safe_load(config_path(algo).read_text())["CartPole-v1"]
    assert saved["policy"] == shipped["policy"]
    events = glob.glob(os.path.join(tb, "CartPole-v1", "*", "events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(events[0])
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert ALGO_SCALARS[algo] | {"rollout/ep_rew_mean"} <= scalars
    zoo("enjoy", "--algo", algo, "--env", "CartPole-v1", "-f", logs, "-n", "200", "--no-render", "--deterministic")


def test_dotted_buffer_class_in_yaml_for_sb3_and_our_algorithms(tmp_path):
    conf = tmp_path / "conf.yml"
    entry = dict(
        n_envs=2,
        n_timesteps=256,
        policy="MlpPolicy",
        n_steps=64,
        rollout_buffer_class="sb3_po.common.buffers.NStepRolloutBuffer",
        rollout_buffer_kwargs="dict(n_step=5)",
    )
    conf.write_text(yaml.safe_dump({"CartPole-v1": entry}))
    for algo in ("ppo", "a2c", "trpo", "vpg", "kl_ppo", "npg"):
        zoo(
            "train",
            "--algo",
            algo,
            "--env",
            "CartPole-v1",
            "--conf-file",
            str(conf),
            "-f",
            str(tmp_path / "logs"),
            "--eval-freq",
            "-1",
        )
        assert os.path.exists(tmp_path / "logs" / algo / "CartPole-v1_1" / "CartPole-v1.zip")


def test_resolve_and_wrapper_helpers():
    resolved = resolve_hyperparams(
        {
            "rollout_buffer_class": "sb3_po.common.buffers.TD0RolloutBuffer",
            "rollout_buffer_kwargs": "dict(n_step=3)",
            "gamma": 0.9,
        }
    )
    assert resolved["rollout_buffer_class"].__name__ == "TD0RolloutBuffer"
    assert resolved["rollout_buffer_kwargs"] == {"n_step": 3} and resolved["gamma"] == 0.9
    restorable = "sb3_po.common.env_state.RestorableEnv"
    assert with_restorable_env(None) == [restorable]
    assert with_restorable_env("a.B") == ["a.B", restorable]
    assert with_restorable_env([{restorable: {"state_mode": "seed"}}]) == [{restorable: {"state_mode": "seed"}}]
    assert with_restorable_env(None, "seed") == [{restorable: {"state_mode": "seed"}}]
    assert with_restorable_env("a.B", "copy") == ["a.B", {restorable: {"state_mode": "copy"}}]


def test_grpo_lunar_lander_from_the_shipped_yaml(tmp_path):
    """LunarLander restores states by reset seed only: the shipped entry's state_mode reaches the env wrapper."""
    logs = str(tmp_path / "logs")
    zoo("train", "--algo", "grpo", "--env", "LunarLander-v3", "-n", "500", "-f", logs, "--eval-freq", "-1", "--seed", "0")
    run_dir = os.path.join(logs, "grpo", "LunarLander-v3_1")
    with open(os.path.join(run_dir, "LunarLander-v3", "config.yml")) as f:
        saved = dict(yaml.load(f, Loader=yaml.UnsafeLoader))
    assert saved["state_mode"] == "seed"
    model = GRPO.load(os.path.join(run_dir, "LunarLander-v3.zip"))
    assert model.num_timesteps >= 500 and model.state_mode == "seed"


def test_npg_sampler_gives_a_valid_npg():
    from sb3_po import NPG
    from sb3_po.zoo import SAMPLERS, sample_npg_params

    assert SAMPLERS["npg"] is sample_npg_params
    trial = optuna.trial.FixedTrial(
        dict(
            n_steps_pow=8,
            batch_size_pow=6,
            one_minus_gamma=0.01,
            one_minus_gae_lambda=0.05,
            learning_rate=1e-3,
            net_arch="small",
            activation_fn="tanh",
            cg_max_steps=10,
            cg_damping=0.3,
            n_critic_updates=5,
            target_kl=0.02,
        )
    )
    params = sample_npg_params(trial, n_actions=2, n_envs=1, additional_args={})
    assert (params["n_steps"], params["batch_size"], params["cg_damping"], params["target_kl"]) == (256, 64, 0.3, 0.02)
    assert params["gamma"] == pytest.approx(0.99) and params["gae_lambda"] == pytest.approx(0.95)
    model = NPG("MlpPolicy", "CartPole-v1", device="cpu", **params).learn(256)
    assert model.num_timesteps == 256


def test_default_arguments():
    args = default_arguments(["--algo", "grpo", "--env", "Acrobot-v1"])
    assert args[-2:] == ["--conf-file", str(config_path("grpo"))]
    assert default_arguments(["--algo", "ppo"]) == ["--algo", "ppo"]  # SB3's own: the zoo's defaults
    args = default_arguments(["--algo", "vpg", "-optimize", "-f", "L"])
    assert "--storage" in args and args[args.index("--storage") + 1] == os.path.join("L", "optuna", "vpg_CartPole-v1.log")
    assert args[args.index("--study-name") + 1] == "vpg_CartPole-v1"
    assert config_path("grpo").exists() and config_path("kl_ppo").exists() and config_path("vpg").exists()


def test_two_workers_share_one_storage(tmp_path):
    """Two worker processes started with the same command both add trials to the one (default) journal storage."""
    command = [
        sys.executable,
        "-m",
        "sb3_po.zoo",
        "train",
        "--algo",
        "vpg",
        "--env",
        "CartPole-v1",
        "-n",
        "1024",
        "-optimize",
        "--n-trials",
        "1",
        "-f",
        str(tmp_path / "logs"),
        "--eval-freq",
        "-1",
        "--n-evaluations",
        "1",
        "--sampler",
        "random",
        "--pruner",
        "none",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "logs" / "optuna" / "vpg_CartPole-v1.log"))
    )
    study = optuna.load_study(study_name="vpg_CartPole-v1", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    assert all("Writing report" in out for out in outputs)  # the final report did not crash


def test_ppo_lstm_with_an_estimator_from_the_shipped_yaml_outside_the_repository(tmp_path, monkeypatch):
    """`sb3-po train --algo ppo_lstm --conf-file zoo_configs/ppo_lstm_estimators.yml` from another directory."""
    monkeypatch.chdir(tmp_path)
    conf = "zoo_configs/ppo_lstm_estimators.yml"  # not found here: the copy shipped in the package
    assert default_arguments(["--algo", "ppo_lstm", "--conf-file", conf])[-1] == str(config_path("ppo_lstm_estimators"))
    zoo("train", "--algo", "ppo_lstm", "--env", "CartPole-v1", "--conf-file", conf, "-n", "256", "--eval-freq", "-1")
    model = RecurrentPPO.load(tmp_path / "logs" / "ppo_lstm" / "CartPole-v1_1" / "CartPole-v1.zip", device="cpu")
    assert isinstance(model.rollout_buffer, RecurrentNStepRolloutBuffer) and model.rollout_buffer.n_step == 5
    assert model.num_timesteps == 256
    zoo("enjoy", "--algo", "ppo_lstm", "--env", "CartPole-v1", "-f", "logs", "-n", "50", "--no-render", "--deterministic")
