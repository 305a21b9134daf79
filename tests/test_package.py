import importlib
import os
import subprocess
import sys

import sb3_po


def test_version_and_exports():
    assert isinstance(sb3_po.__version__, str) and sb3_po.__version__.count(".") == 2
    from sb3_po import VPG  # noqa: F401

    for algo in ("vpg",):
        module = importlib.import_module(f"sb3_po.{algo}")
        for name in ("MlpPolicy", "CnnPolicy", "MultiInputPolicy"):
            assert hasattr(module, name)


OPTIONAL = ("rl_zoo3", "optuna", "mujoco", "Box2D", "matplotlib", "pandas", "rliable", "plotly", "seaborn", "sklearn", "ray")

BASE_INSTALL = """
import sys

# what a base install without the extras looks like: `import x` raises ModuleNotFoundError and
# importlib.util.find_spec("x") is None, for x and its submodules
for name in {blocked!r}:
    sys.modules[name] = None

import gymnasium as gym
import pytest
import torch as th

th.set_num_threads(1)
import sb3_po
from sb3_po import GRPO, KLPPO, VPG
from sb3_po.common.env_state import RestorableEnv
from sb3_po.common.optional import MissingExtraError
from sb3_po.registry import make_env

assert RestorableEnv(gym.make("Pendulum-v1")).backend == "classic_control"
for algo, kwargs in ((VPG, dict(n_steps=64)), (KLPPO, dict(n_steps=64, batch_size=64)), (GRPO, dict(group_size=2))):
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        model = algo("MlpPolicy", env_id, seed=0, **kwargs).learn(100)
        model.save("model")
        loaded = algo.load("model")
        loaded.predict(gym.make(env_id).observation_space.sample())
        print(algo.__name__, env_id, model.num_timesteps)

import sb3_po.zoo  # the package imports; its features name the extra when asked for
with pytest.raises(SystemExit, match=r"pip install 'sb3-po\\[zoo\\]'"):
    sb3_po.zoo.main(["train", "--algo", "vpg", "--env", "CartPole-v1"])
with pytest.raises(MissingExtraError, match=r"sb3-po\\[zoo\\]"):
    sb3_po.zoo.register
with pytest.raises(MissingExtraError, match=r"sb3-po\\[zoo\\]"):
    sb3_po.zoo.sample_vpg_params
with pytest.raises(MissingExtraError, match=r"sb3-po\\[box2d\\]"):
    make_env("grpo", "LunarLander-v3")
with pytest.raises(MissingExtraError, match=r"sb3-po\\[mujoco\\]"):
    make_env("grpo", "Hopper-v5")
loaded_optional = sorted({{m.split(".")[0] for m, module in sys.modules.items() if module is not None}} & set({blocked!r}))
assert not loaded_optional, loaded_optional
print("base install ok")
"""


def test_base_install_without_any_optional_family(tmp_path):
    """
    The algorithms, save/load and GRPO on classic control work with every optional family unimportable (a fresh
    interpreter whose import system refuses them); each optional feature names the extra that installs it.
    """
    code = BASE_INSTALL.format(blocked=OPTIONAL)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "base install ok" in result.stdout
    assert "GRPO Pendulum-v1" in result.stdout
