"""
What a new user meets first on the command line: an env whose extra is missing names the extra in one line and
leaves nothing behind, and `sb3-po train` runs with one torch thread unless told otherwise.
"""

import sys

import pytest
import torch as th

from sb3_po.common.optional import MissingExtraError, require_env
from sb3_po.zoo import main
from sb3_po.zoo.cli import default_threads


@pytest.mark.parametrize(
    "env_id, module, extra",
    [("LunarLander-v3", "Box2D", "box2d"), ("LunarLanderContinuous-v3", "Box2D", "box2d"), ("Hopper-v5", "mujoco", "mujoco")],
)
@pytest.mark.parametrize("command", ["train", "enjoy"])
def test_missing_env_extra_is_one_line_and_leaves_no_run_directory(tmp_path, monkeypatch, env_id, module, extra, command):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importlib.util.find_spec answers None
    logs = tmp_path / "logs"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--algo", "grpo", "--env", env_id, "-f", str(logs)])
    message = str(exit_info.value)
    assert message == f"sb3-po: {env_id} needs {module}, which is not installed: pip install 'sb3-po[{extra}]'"
    assert "\n" not in message
    assert not logs.exists() and list(tmp_path.iterdir()) == []


def test_require_env_passes_installed_and_unknown_envs():
    require_env("CartPole-v1")
    require_env("LunarLander-v3")  # Box2D is installed in the test environment
    require_env("NoSuchEnv-v0")  # gym.make reports unknown ids itself
    with pytest.raises(MissingExtraError):
        sys.modules["mujoco"], saved = None, sys.modules.get("mujoco")
        try:
            require_env("InvertedPendulum-v5")
        finally:
            if saved is None:
                del sys.modules["mujoco"]
            else:
                sys.modules["mujoco"] = saved


def test_default_threads():
    assert default_threads(["--algo", "grpo"]) == ["--algo", "grpo", "--num-threads", "1"]
    assert default_threads(["--num-threads", "4"]) == ["--num-threads", "4"]
    assert default_threads(["--num-threads=-1"]) == ["--num-threads=-1"]


def test_train_sets_one_torch_thread(tmp_path):
    before = th.get_num_threads()
    try:
        th.set_num_threads(2)
        main(["train", "--algo", "vpg", "--env", "CartPole-v1", "-n", "256", "-f", str(tmp_path), "--eval-freq", "-1"])
        assert th.get_num_threads() == 1
        main(["train", "--algo", "vpg", "--env", "CartPole-v1", "-n", "256", "-f", str(tmp_path), "--num-threads", "2"])
        assert th.get_num_threads() == 2
    finally:
        th.set_num_threads(before)
