"""
Wall time of one grid run one after the other in this process against the same grid on a local Ray with ``--workers``
workers, back to back in this process, on this machine (issue 33), and between them the same grid on ``--workers``
plain processes (a multiprocessing pool, no Ray): the speed-up this machine allows with that many runs at once, the
ceiling of Ray's. Each stores into a temporary results store; the scores must be identical, run for run. Writes the
timings, the per-task overhead and the versions as JSON.

    python scripts/cluster_speedup.py --algo vpg --env CartPole-v1 --seeds 8 --budget 50000 --workers 2 \\
        --out benchmark_results/cluster_speedup_run1.json

Other work on the machine distorts both walls: the CPU-seconds that processes other than this one and its Ray (found
by an environment variable they inherit) used during each phase are recorded beside it (``others_cpu_seconds``).

Overhead per task: the worker-seconds Ray adds to each run, ``(workers * ray_wall - sequential_wall) / runs`` (Ray's
start and shutdown included), and the mean of each task's latency (dispatch to result, seen by the driver) minus the
seconds the run took on its worker (the first ``workers`` tasks also start their worker process).
"""

import argparse
import datetime
import importlib.metadata
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark

MARKER = "SB3PO_CLUSTER_SPEEDUP"  # set here, inherited by the local Ray's processes: what is ours


def others_cpu_seconds() -> dict[int, float]:
    """CPU-seconds (user + system) so far of every process on this machine not carrying ``MARKER``, by PID."""
    tick, needle, seconds = os.sysconf("SC_CLK_TCK"), f"{MARKER}=1".encode(), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(entry.name) == os.getpid() or needle in (entry / "environ").read_bytes().split(b"\0"):
                    continue  # this process (its environ file shows the variables it started with) and its children
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # gone meanwhile
                continue
            seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def used_since(before: dict[int, float]) -> float:
    """CPU-seconds other processes used since ``before`` (those that ended meanwhile are not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in others_cpu_seconds().items())


def in_processes(runs: list, workers: int) -> list:
    """The runs on ``workers`` fresh processes (spawned: each imports torch and SB3 as a Ray worker does), no Ray."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        outcomes = pool.starmap(benchmark.execute, [run.arguments for run in runs], chunksize=1)
    wall = time.perf_counter() - start
    return [
        benchmark.Finished(run, result, node, seconds, wall)
        for run, (result, node, seconds) in zip(runs, outcomes, strict=True)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="vpg")
    parser.add_argument("--env", default="CartPole-v1", choices=list(benchmark.ENVS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--budget", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--order", nargs=3, default=["sequential", "processes", "ray"], help="the three phases, in order")
    parser.add_argument("--out", type=Path, default=benchmark.ROOT / "benchmark_results" / "cluster_speedup.json")
    args = parser.parse_args(argv)

    os.environ[MARKER] = "1"
    walls, finished, others = {}, {}, {}
    for mode in args.order:
        with tempfile.TemporaryDirectory() as results_dir:
            runs = benchmark.grid([args.algo], [args.env], range(args.seeds), Path(results_dir), args.budget, None, 10)
            others_before = others_cpu_seconds()
            start = time.perf_counter()
            if mode == "sequential":
                done = benchmark.dispatch(runs, Path(results_dir), sequential=True, bar=False)
            elif mode == "processes":
                done = in_processes(runs, args.workers)
            else:
                done = benchmark.dispatch(runs, Path(results_dir), workers=args.workers, bar=False)
            walls[mode] = time.perf_counter() - start
            others[mode] = used_since(others_before)
            finished[mode] = sorted(done, key=lambda f: f.run.seed)
            print(f"{mode}: {walls[mode]:.1f} s", flush=True)

    n = args.seeds
    sequential, ray = finished["sequential"], finished["ray"]
    identical = all(
        s.result["final_eval_mean"] == o.result["final_eval_mean"] and s.result["curve"] == o.result["curve"]
        for mode in ("processes", "ray")
        for s, o in zip(sequential, finished[mode], strict=True)
    )
    by_order = sorted(ray, key=lambda f: f.latency - f.seconds)
    record = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        grid=dict(algo=args.algo, env=args.env, seeds=list(range(n)), budget=args.budget, n_eval_episodes=10),
        workers=args.workers,
        cpus=os.cpu_count(),
        sequential_wall_seconds=walls["sequential"],
        ray_wall_seconds=walls["ray"],
        processes_wall_seconds=walls["processes"],
        speedup=walls["sequential"] / walls["ray"],
        speedup_processes=walls["sequential"] / walls["processes"],  # the machine's ceiling for this many at once
        ray_over_processes=walls["ray"] / walls["processes"],
        others_cpu_seconds=others,
        overhead_worker_seconds_per_task=(args.workers * walls["ray"] - walls["sequential"]) / n,
        mean_task_latency_minus_run_seconds=sum(f.latency - f.seconds for f in ray) / n,
        latency_minus_run_seconds=[round(f.latency - f.seconds, 3) for f in by_order],
        run_seconds={mode: [round(f.seconds, 2) for f in done] for mode, done in finished.items()},
        order=list(args.order),
        final_scores=[f.result["final_eval_mean"] for f in sequential],
        identical_scores=identical,
        versions={**benchmark.run_versions(), "ray": importlib.metadata.version("ray")},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "versions"}, indent=1))
    if not identical:
        raise SystemExit("the scores of the Ray runs differ from the sequential ones")


if __name__ == "__main__":
    main()
