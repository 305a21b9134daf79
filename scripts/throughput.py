"""
Throughput of the sb3-po algorithms next to SB3's, measured side by side in one process.

For each pair (ours, reference) both models get the same env, network, ``n_steps * n_envs``, epochs and
minibatch size. The two are timed alternately, round after round, so that the machine's load hits both
alike; the report gives medians and the ratio ours / reference:

- ``update``: one ``train()`` call on a collected rollout (the gradient updates alone);
- ``iteration``: ``collect_rollouts`` + ``train()``, as wall time per 1000 env steps, split into env stepping
  (the same VecEnv stepped with random actions: the limit no algorithm can beat), policy inference and
  rollout bookkeeping (the rest of the rollout time), and gradient updates.

    python scripts/throughput.py                  # every pair available
    python scripts/throughput.py --pairs kl_ppo:ppo --rounds 30 --json benchmark_results/throughput.json

``--grpo ENV_ID`` profiles GRPO at its defaults (or with ``--grpo-kwargs``) on that env instead: steps per
second of ``learn``, beside the limit measured in the same process on the same VecEnv (random actions stepped,
plus one batched policy forward per step), and the split of GRPO's time into env stepping, restoring start
states, policy inference, rollout bookkeeping (the rest of the rollout) and gradient updates:

    python scripts/throughput.py --grpo CartPole-v1 --budget 100000

``--shipped ENV_ID`` times every algorithm at its shipped settings instead (ours: ``zoo_configs/<algo>.yml``; PPO,
A2C, TRPO: the RL Zoo's entries, as ``scripts/benchmark.py`` trains them): each round builds each model anew and
times ``learn(--budget)``, algorithms in turn, and the report gives steps per second (medians) and the ratio to PPO:

    python scripts/throughput.py --shipped CartPole-v1 --budget 50000 --rounds 3
"""

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env

from sb3_po.registry import algorithm_class, make_env

ROOT = Path(__file__).resolve().parents[1]

# Matched settings per pair: what both algorithms get. Clipping is on for KLPPO, as for PPO.
PAIRS: dict[str, dict[str, Any]] = {
    "kl_ppo:ppo": dict(
        env="CartPole-v1",
        n_envs=8,
        common=dict(n_steps=256, batch_size=256, n_epochs=10, learning_rate=3e-4, clip_range=0.2),
        ours=dict(),
        reference=dict(),
    ),
    "vpg:a2c": dict(
        env="CartPole-v1",
        n_envs=8,
        common=dict(n_steps=128, learning_rate=1e-3),
        # A2C: one joint actor-critic step per rollout; VPG: one actor step + n_critic_updates critic steps
        ours=dict(n_critic_updates=1),
        reference=dict(use_rms_prop=False),
    ),
    "grpo:ppo": dict(
        env="CartPole-v1",
        n_envs=1,
        common=dict(n_epochs=10, learning_rate=3e-4, clip_range=0.2),
        # PPO: 2048 steps in 4 minibatches; GRPO: 2 groups of 16 whole episodes in 4 minibatches. Rollout
        # lengths differ (GRPO's are whatever the episodes take), so compare the time per 1000 env steps.
        ours=dict(group_size=16, n_groups=2, n_minibatches=4),
        reference=dict(n_steps=2048, batch_size=512),
    ),
}


def env_step_seconds(env_id: str, n_envs: int, n_steps: int) -> float:
    """Wall time of ``n_steps`` VecEnv steps with random actions."""
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    env.reset()
    actions = [np.stack([env.action_space.sample() for _ in range(n_envs)]) for _ in range(n_steps)]
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return time.perf_counter() - start


def timed_iteration(model) -> tuple[float, float, int]:
    """(rollout seconds, train seconds, env steps) of one learning iteration, through SB3's own methods."""
    callback = CallbackList([])
    callback.init_callback(model)
    steps_before = model.num_timesteps
    start = time.perf_counter()
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    rollout = time.perf_counter() - start
    start = time.perf_counter()
    model.train()
    return rollout, time.perf_counter() - start, model.num_timesteps - steps_before


def measure_pair(pair: str, rounds: int) -> dict[str, Any]:
    spec = PAIRS[pair]
    ours_name, ref_name = pair.split(":")
    models = {}
    for name, extra in ((ours_name, spec["ours"]), (ref_name, spec["reference"])):
        cls = algorithm_class(name)
        kwargs = {k: v for k, v in spec["common"].items() if k in inspect.signature(cls).parameters}
        env = make_env(name, spec["env"], n_envs=spec["n_envs"], seed=0)  # GRPO's envs are restorable
        models[name] = cls("MlpPolicy", env, seed=0, device="cpu", **kwargs, **extra)
        models[name]._setup_learn(10**9, None)  # what learn() does before its first rollout
    times: dict[str, dict[str, list[float]]] = {name: {"rollout": [], "update": [], "steps": []} for name in models}
    for _ in range(2):  # warm-up
        for model in models.values():
            timed_iteration(model)
    for _ in range(rounds):
        for name, model in models.items():
            rollout, update, steps = timed_iteration(model)
            times[name]["rollout"].append(rollout)
            times[name]["update"].append(update)
            times[name]["steps"].append(steps)
    # env stepping alone, with random actions: the limit no algorithm can beat
    probe_steps = 2048 // spec["n_envs"]
    env_seconds_per_step = float(np.median([env_step_seconds(spec["env"], spec["n_envs"], probe_steps) for _ in range(5)])) / (
        probe_steps * spec["n_envs"]
    )
    result: dict[str, Any] = dict(pair=pair, env=spec["env"], n_envs=spec["n_envs"], settings=spec["common"], rounds=rounds)
    for name in models:
        # per 1000 env steps: total time over all rounds / total env steps (rollout lengths may vary)
        steps = float(np.sum(times[name]["steps"]))
        rollout, update = float(np.sum(times[name]["rollout"])), float(np.sum(times[name]["update"]))
        env_seconds = env_seconds_per_step * steps
        result[name] = dict(
            update_seconds=float(np.median(times[name]["update"])),
            steps_per_iteration=steps / rounds,
            seconds_per_1000_steps=1000 * (rollout + update) / steps,
            env_seconds_per_1000_steps=1000 * env_seconds / steps,
            inference_seconds_per_1000_steps=1000 * max(rollout - env_seconds, 0.0) / steps,
            update_seconds_per_1000_steps=1000 * update / steps,
            n_params=int(sum(p.numel() for p in models[name].policy.parameters())),
        )
    result["update_ratio"] = result[ours_name]["update_seconds"] / result[ref_name]["update_seconds"]
    result["per_1000_steps_ratio"] = result[ours_name]["seconds_per_1000_steps"] / result[ref_name]["seconds_per_1000_steps"]
    return result


SPLIT = ("env_step", "restore", "inference", "bookkeeping", "update")


class _Timed:
    """Wraps a bound method so that the seconds spent in it add up in ``seconds``."""

    def __init__(self, method: Any):
        self.method, self.seconds = method, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.method(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def stepping_limit(model, n_steps: int) -> float:
    """Env steps per second of ``model``'s VecEnv stepped with random actions plus one batched policy forward per step."""
    from stable_baselines3.common.utils import obs_as_tensor

    env = model.env
    obs = env.reset()
    actions = [np.stack([env.action_space.sample() for _ in range(env.num_envs)]) for _ in range(n_steps)]
    start = time.perf_counter()
    for action in actions:
        with th.no_grad():
            model.policy(obs_as_tensor(obs, model.device))
        obs, _, _, _ = env.step(action)
    return n_steps * env.num_envs / (time.perf_counter() - start)


def profile_grpo(env_id: str, budget: int, kwargs: dict[str, Any], rounds: int = 3) -> dict[str, Any]:
    """GRPO's ``learn`` (steps per second and where the time goes) beside the stepping-plus-inference limit, alternately."""
    cls = algorithm_class("grpo")
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        model = cls("MlpPolicy", env_id, seed=0, device="cpu", **kwargs)
        env = model.env
        timers = {
            "env_step": _Timed(env.step),
            "restore": _Timed(env.env_method),
            "inference": _Timed(model.policy.forward),
            "rollout": _Timed(model.collect_rollouts),
            "update": _Timed(model.train),
        }
        env.step, env.env_method = timers["env_step"], timers["restore"]
        model.policy.forward = timers["inference"]
        model.collect_rollouts, model.train = timers["rollout"], timers["update"]
        start = time.perf_counter()
        model.learn(budget)
        total = time.perf_counter() - start
        env.step, env.env_method = timers["env_step"].method, timers["restore"].method
        model.policy.forward = timers["inference"].method
        limit = stepping_limit(model, max(budget // (4 * env.num_envs), 200))
        seconds = {name: timer.seconds for name, timer in timers.items()}
        seconds["bookkeeping"] = seconds["rollout"] - seconds["env_step"] - seconds["restore"] - seconds["inference"]
        row = dict(
            steps_per_second=model.num_timesteps / total,
            limit_steps_per_second=limit,
            idle_fraction=float(model.logger.name_to_value.get("rollout/idle_fraction", float("nan"))),
            n_envs=env.num_envs,
            **{f"{name}_fraction": seconds[name] / total for name in SPLIT},
        )
        row["fraction_of_limit"] = row["steps_per_second"] / limit
        for key, value in row.items():
            results.setdefault(key, []).append(float(value))
    medians = {key: float(np.median(values)) for key, values in results.items()}
    return dict(env=env_id, budget=budget, kwargs=kwargs, rounds=rounds, **medians)


def shipped_throughput(env_id: str, algos: list[str], budget: int, rounds: int) -> list[dict[str, Any]]:
    """Steps per second of ``learn(budget)`` for each algorithm at its shipped settings, timed in turn, round after round."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark import load_hyperparams  # scripts/benchmark.py: the hyperparameters the benchmark trains with

    from sb3_po.registry import build_model

    hyperparams = {algo: load_hyperparams(algo, env_id) for algo in algos}
    seconds: dict[str, list[float]] = {algo: [] for algo in algos}
    steps: dict[str, list[int]] = {algo: [] for algo in algos}
    for _ in range(rounds):
        for algo in algos:
            model = build_model(algo, env_id, 0, hyperparams[algo])
            start = time.perf_counter()
            model.learn(budget)
            seconds[algo].append(time.perf_counter() - start)
            steps[algo].append(model.num_timesteps)
    rows = [
        dict(
            algo=algo,
            env=env_id,
            n_envs=hyperparams[algo].get("n_envs", 1),
            steps_per_second=float(np.median(np.array(steps[algo]) / np.array(seconds[algo]))),
        )
        for algo in algos
    ]
    reference = next((row["steps_per_second"] for row in rows if row["algo"] == "ppo"), None)
    for row in rows:
        row["ratio_to_ppo"] = None if reference is None else row["steps_per_second"] / reference
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=None, help=f"default: every available pair of {list(PAIRS)}")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--grpo", default=None, metavar="ENV_ID", help="profile GRPO's learn() on this env instead")
    parser.add_argument("--grpo-kwargs", default="{}", help="GRPO keyword arguments, a Python dict literal")
    parser.add_argument("--shipped", default=None, metavar="ENV_ID", help="time every algorithm at its shipped settings")
    parser.add_argument("--algos", nargs="+", default=None, help="with --shipped: default every algorithm")
    parser.add_argument("--budget", type=int, default=100_000, help="env steps per learn() (with --grpo or --shipped)")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.grpo:
        import ast

        rounds = args.rounds if args.rounds != parser.get_default("rounds") else 3
        result = profile_grpo(args.grpo, args.budget, ast.literal_eval(args.grpo_kwargs), rounds=rounds)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        return
    if args.shipped:
        from sb3_po.registry import algorithms, reference_algorithms

        algos = args.algos or [a for a in {**reference_algorithms(), **algorithms()} if a != "ppo_lstm"]
        rounds = args.rounds if args.rounds != parser.get_default("rounds") else 3
        rows = shipped_throughput(args.shipped, algos, args.budget, rounds)
        print("| algo | env | n_envs | steps per second (learn, median) | ratio to PPO |\n|---|---|---|---|---|")
        for row in rows:
            ratio = "-" if row["ratio_to_ppo"] is None else f"{row['ratio_to_ppo']:.2f}"
            print(f"| {row['algo']} | {row['env']} | {row['n_envs']} | {row['steps_per_second']:,.0f} | {ratio} |")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=1))
        return
    pairs = args.pairs or list(PAIRS)
    record = pairs_record([measure_pair(pair, args.rounds) for pair in pairs], args.rounds)
    print(pairs_table(record))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1))


def pairs_record(results: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """The pairs' measurements with what produced them: the date, the command and the versions (benchmark.py's)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark import run_versions

    pairs = [r["pair"] for r in results]
    return dict(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        command=f"python scripts/throughput.py --pairs {' '.join(pairs)} --rounds {rounds}",
        rounds=rounds,
        versions=run_versions(),
        pairs=results,
    )


def pairs_table(record: dict[str, Any] | list[dict[str, Any]]) -> str:
    """
    The pairs' table (Markdown): update seconds and seconds per 1000 env steps, ours / the reference, and their
    ratios. ``record``: ``pairs_record``'s dict, or the bare list of pairs that files written before it hold.
    """
    results = record if isinstance(record, list) else record["pairs"]
    lines = [
        "| pair | env, n_envs | update (s) ours / ref | ratio | s per 1000 steps ours / ref | ratio "
        "| env stepping alone (s/1000) | inference ours / ref (s/1000) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, ref = r["pair"].split(":")
        lines.append(
            f"| {ours} vs {ref} | {r['env']}, {r['n_envs']} "
            f"| {r[ours]['update_seconds']:.4f} / {r[ref]['update_seconds']:.4f} "
            f"| {r['update_ratio']:.3f} | {r[ours]['seconds_per_1000_steps']:.3f} / {r[ref]['seconds_per_1000_steps']:.3f} "
            f"| {r['per_1000_steps_ratio']:.3f} | {r[ours]['env_seconds_per_1000_steps']:.3f} "
            f"| {r[ours]['inference_seconds_per_1000_steps']:.3f} / {r[ref]['inference_seconds_per_1000_steps']:.3f} |"
        )
    if isinstance(record, list):
        lines.append("\nVersions not recorded (measured before the file recorded them).")
    else:
        from benchmark import describe_versions

        lines.append(
            f"\nMeasured {record['date']} with `{record['command']}` ({record['rounds']} rounds each) at "
            f"{describe_versions(record['versions'])}."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
