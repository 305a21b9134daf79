"""
Smoke test of an installed sb3-po (CI's install matrix runs it from outside the repository, against the wheel with
no extras): each algorithm (VPG, KLPPO, GRPO, NPG) trains a few thousand steps on CartPole-v1 and Pendulum-v1
(GRPO also on a plain ``make_vec_env`` DummyVecEnv), is saved, loaded and asked for an action. Every step prints its time.

    python scripts/smoke.py [--timesteps 3000]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_po
from sb3_po import GRPO, KLPPO, NPG, VPG


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=3000)
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"sb3-po {sb3_po.__version__} imported from {Path(sb3_po.__file__).resolve().parent}", flush=True)
    runs = [(algo, env_id, env_id) for algo in (VPG, KLPPO, GRPO, NPG) for env_id in ("CartPole-v1", "Pendulum-v1")]
    runs.append((GRPO, "CartPole-v1", "make_vec_env('CartPole-v1', 4)"))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for algo, env_id, label in runs:
            start = time.perf_counter()
            try:
                env = make_vec_env(env_id, n_envs=4, seed=0) if label.startswith("make_vec_env") else env_id
                model = algo("MlpPolicy", env, seed=0, device="cpu").learn(args.timesteps)
                path = Path(tmp) / f"{algo.__name__}_{env_id}"
                model.save(path)
                loaded = algo.load(path, device="cpu")
                obs = gym.make(env_id).observation_space.sample()
                action, _ = loaded.predict(obs, deterministic=True)
                expected, _ = model.predict(obs, deterministic=True)
                assert np.array_equal(action, expected), (action, expected)
                status = f"ok, {model.num_timesteps} env steps, saved, loaded, same action"
            except Exception as error:  # report every run, then fail
                failures += 1
                status = f"FAILED: {type(error).__name__}: {error}"
            print(f"smoke {algo.__name__} on {label}: {status} ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"smoke: {len(runs) - failures}/{len(runs)} passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
