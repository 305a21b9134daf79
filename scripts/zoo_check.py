"""
A reference checked outside our harness (issue 31): one RL Zoo entry trained by rl_zoo3's own ``train.py``, with the
zoo's own evaluation (its ``EvalCallback``: deterministic policy, observations normalised with the training
statistics), to tell an entry that stopped transferring from a fault of ``scripts/benchmark.py``. Runs
``python -m rl_zoo3.train`` in a subprocess (the zoo's file, its flags, nothing of sb3-po) and stores one JSON with
the zoo's evaluations, the entry it trained with and the versions::

    python scripts/zoo_check.py --algo ppo --env Hopper-v4 --seed 0 --out benchmark_results/zoo_check/ppo_Hopper-v4_seed0.json

The results page tables every stored check (``scripts/results_pages.py``). Needs the ``zoo`` and ``mujoco`` extras.
"""

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import run_versions


def zoo_command(algo: str, env_id: str, seed: int, steps: int, eval_freq: int, eval_episodes: int, log_dir: Path) -> list[str]:
    """rl_zoo3's own training command for one seed: its entry for ``env_id``, one torch thread, one eval env."""
    return [
        sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, "--seed", str(seed),
        "-n", str(steps), "--eval-freq", str(eval_freq), "--eval-episodes", str(eval_episodes),
        "--n-eval-envs", "1", "--num-threads", "1", "--log-interval", "-1", "-f", str(log_dir),
    ]  # fmt: skip


def summarise(timesteps: np.ndarray, results: np.ndarray) -> dict[str, Any]:
    """
    The zoo's ``evaluations.npz`` (``timesteps``: the env steps of each evaluation; ``results``: one row of episode
    returns per evaluation) as the record's numbers: each evaluation's mean, the last one and the best one.
    """
    means = results.mean(axis=1)
    return dict(
        eval_timesteps=[int(t) for t in timesteps],
        eval_means=[round(float(m), 2) for m in means],
        eval_stds=[round(float(s), 2) for s in results.std(axis=1)],
        final_eval_mean=round(float(means[-1]), 2),
        best_eval_mean=round(float(means.max()), 2),
        best_eval_timestep=int(timesteps[int(means.argmax())]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="Hopper-v4", help="the zoo entry's env id (the zoo has no v5 MuJoCo entries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--eval-freq", type=int, default=50_000, help="env steps between the zoo's evaluations (all envs)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        command = zoo_command(args.algo, args.env, args.seed, args.steps, args.eval_freq, args.eval_episodes, Path(tmp))
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        (run_dir,) = (Path(tmp) / args.algo).glob(f"{args.env}_*")
        evaluations = np.load(run_dir / "evaluations.npz")
        entry = yaml.unsafe_load((run_dir / args.env / "config.yml").read_text())  # the zoo's own OrderedDict dump
        record = dict(
            algo=args.algo,
            env=args.env,
            seed=args.seed,
            steps=args.steps,
            eval_episodes=args.eval_episodes,
            command="python -m rl_zoo3.train " + " ".join(command[3:-2]),  # without the temporary log folder
            entry={k: v if isinstance(v, (int, float, bool, str)) else str(v) for k, v in dict(entry).items()},
            seconds=round(seconds, 1),
            date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            versions=run_versions(),
            **summarise(evaluations["timesteps"], evaluations["results"]),
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("env", "seed", "final_eval_mean", "best_eval_mean", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
