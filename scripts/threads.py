"""
Torch threads against training speed, for each algorithm with an MLP and a CNN policy: ``learn(steps)`` timed with
``torch.set_num_threads(n)`` for each n, in one process, the thread counts alternating round by round (so that a
change in the machine's load hits every setting alike); the median over rounds. Optionally under a controlled load:
``--load K`` starts K busy processes (one Python loop each) for the whole measurement, as on a machine where other
jobs run. Writes the JSON that ``scripts/results_pages.py`` turns into the Performance page's table.

    python scripts/threads.py --threads 1 2 --rounds 3 --json benchmark_results/threads.json
    python scripts/threads.py --threads 1 2 --rounds 3 --load 1 --json benchmark_results/threads_loaded.json
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch as th
from stable_baselines3.common.envs import FakeImageEnv

from sb3_po import GRPO, KLPPO, NPG, VPG
from sb3_po.ppo_recurrent import RecurrentPPO


class Case(NamedTuple):
    algo: str
    policy: str
    env: str
    steps: int
    build: Callable[[], Any]


def image_env() -> FakeImageEnv:
    return FakeImageEnv(action_dim=4, screen_height=64, screen_width=64, n_channels=1, discrete=True)


def cases() -> list[Case]:
    """Each algorithm at its defaults on CartPole-v1 (MLP), and with a NatureCNN on 64x64 images (rollouts shortened so
    that a CNN run has several updates)."""
    cnn = dict(n_steps=256, seed=0)
    image = "FakeImageEnv 64x64"
    return [
        Case("VPG", "MlpPolicy", "CartPole-v1", 8192, lambda: VPG("MlpPolicy", "CartPole-v1", seed=0)),
        Case("KLPPO", "MlpPolicy", "CartPole-v1", 4096, lambda: KLPPO("MlpPolicy", "CartPole-v1", seed=0)),
        Case("GRPO", "MlpPolicy", "CartPole-v1", 8192, lambda: GRPO("MlpPolicy", "CartPole-v1", seed=0)),
        Case("NPG", "MlpPolicy", "CartPole-v1", 4096, lambda: NPG("MlpPolicy", "CartPole-v1", seed=0)),
        Case(
            "RecurrentPPO",
            "MlpLstmPolicy",
            "CartPole-v1",
            1024,
            lambda: RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=128, seed=0),
        ),
        Case("VPG", "CnnPolicy", image, 512, lambda: VPG("CnnPolicy", image_env(), **cnn)),
        Case("KLPPO", "CnnPolicy", image, 512, lambda: KLPPO("CnnPolicy", image_env(), batch_size=64, **cnn)),
        Case(
            "GRPO",
            "CnnPolicy",
            image,
            512,
            lambda: GRPO("CnnPolicy", image_env(), seed=0, group_size=4, n_groups=1, n_minibatches=4),
        ),
        Case("NPG", "CnnPolicy", image, 512, lambda: NPG("CnnPolicy", image_env(), batch_size=64, **cnn)),
        Case(
            "RecurrentPPO",
            "CnnLstmPolicy",
            image,
            256,
            lambda: RecurrentPPO("CnnLstmPolicy", image_env(), seed=0, n_steps=128, batch_size=64),
        ),
    ]


def busy() -> None:
    while True:
        pass


def time_learn(case: Case, threads: int) -> float:
    th.set_num_threads(threads)
    model = case.build()
    start = time.perf_counter()
    model.learn(case.steps)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, default=0, help="busy processes running beside the measurement")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's steps (a shorter measurement)")
    parser.add_argument("--only", nargs="*", default=None, help="algorithms to time (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    hogs = [mp.Process(target=busy, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    rows = []
    try:
        for case in cases():
            if args.only and case.algo not in args.only:
                continue
            case = case._replace(steps=max(128, int(case.steps * args.scale)))
            seconds: dict[int, list[float]] = {n: [] for n in args.threads}
            load_before = os.getloadavg()[0]
            for _ in range(args.rounds):
                for n in args.threads:
                    seconds[n].append(time_learn(case, n))
            row = dict(
                algo=case.algo,
                policy=case.policy,
                env=case.env,
                steps=case.steps,
                seconds={str(n): statistics.median(s) for n, s in seconds.items()},
                all_seconds={str(n): s for n, s in seconds.items()},
                load_average=[load_before, os.getloadavg()[0]],  # the machine's 1-minute load before and after
            )
            rows.append(row)
            print(case.algo, case.policy, case.env, {n: f"{v:.2f}" for n, v in row["seconds"].items()}, flush=True)
            if args.json:  # after every case: an interrupted measurement keeps what it measured
                write(args, rows)
    finally:
        for hog in hogs:
            hog.terminate()


def write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    loads = [load for row in rows for load in row["load_average"]]
    hogs = f"{args.load} busy process(es) started beside it, " if args.load else ""
    result = dict(
        threads=args.threads,
        rows=rows,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}",
        protocol=(
            f"`learn(steps)` seconds (the median of {args.rounds} rounds, model construction excluded), the thread "
            f"counts alternating round by round in one process; {hogs}the machine's 1-minute load average "
            f"{min(loads):.1f}-{max(loads):.1f} during the measurement (other jobs running); `python scripts/threads.py`"
        ),
    )
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
