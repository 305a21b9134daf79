"""
scripts/benchmark.py on Ray (issue 33), against a real two-node Ray cluster started here for these tests: ``ray start
--head`` and a second node joined to it with ``ray start --address``, each with one CPU. Private: the cluster runs in
a network namespace of its own whose only interface is loopback (where the machine allows one; elsewhere on the
host's network), with Ray's token authentication on and no dashboard. Stopped at the end: every process of the
cluster (and only those) killed, none left. No mock of Ray anywhere.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.test_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
# the tiny grid: 2 algorithms x 2 seeds x 4096 env steps on CartPole-v1, evaluated once (5 episodes) and at the end
GRID = ["--algos", "vpg", "kl_ppo", "--envs", "CartPole-v1", "--seeds", "2", "--budget", "4096", "--n-eval-episodes", "5"]
LABELS = [f"{algo} CartPole-v1 seed={seed}" for algo in ("vpg", "kl_ppo") for seed in (0, 1)]
MARKER = "SB3PO_TEST_RAY_CLUSTER"  # in the environment of every process of the cluster: how teardown finds them

# brings the loopback interface of a fresh network namespace up (ioctl SIOCGIFFLAGS / SIOCSIFFLAGS), then holds it
NAMESPACE_HOLDER = """
import fcntl, signal, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
print("up", flush=True)
signal.pause()
"""


class Cluster(NamedTuple):
    address: str  # the head's GCS, HOST:PORT
    env: dict[str, str]  # what a driver needs: the token, the marker
    prefix: list[str]  # runs a command in the cluster's network namespace ([] without one)
    namespace: bool


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def network_namespace() -> tuple[subprocess.Popen | None, list[str]]:
    """A network namespace with loopback only, held by a sleeping process, and the prefix that runs a command in it."""
    unprivileged = os.geteuid() != 0
    unshare = ["unshare", "--net", *(["--user", "--map-root-user"] if unprivileged else [])]
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return None, []
    holder = subprocess.Popen(
        [*unshare, sys.executable, "-c", NAMESPACE_HOLDER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if holder.stdout.readline().strip() != b"up":  # no namespaces here (a container without the capability)
        holder.kill()
        holder.wait()
        return None, []
    ns = f"/proc/{holder.pid}/ns"
    user = [f"--user={ns}/user", "--preserve-credentials"] if unprivileged else []
    prefix = ["nsenter", *user, f"--net={ns}/net", "--"]
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode != 0:  # not allowed to enter it
        holder.kill()
        holder.wait()
        return None, []
    return holder, prefix


def cluster_pids(marker: str) -> list[int]:
    """
    The processes whose environment holds ``MARKER=marker`` (every process the cluster's `ray start`s or the driver
    started) and their descendants (Ray starts its agents with an environment of its own).
    """
    needle = f"{MARKER}={marker}".encode()
    marked, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    marked.add(int(entry.name))
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:  # gone meanwhile, or not ours
                pass
    found = set(marked)
    while True:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        if not children:
            return sorted(found)
        found |= children


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a killed process its parent has not reaped yet)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def alive_nodes(cluster: Cluster) -> int:
    out = subprocess.run(
        [*cluster.prefix, RAY, "status", "--address", cluster.address],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    active = out.partition("Active:")[2].partition("Pending:")[0]
    return len(re.findall(r"node_[0-9a-f]+", active))


def ray_env() -> dict[str, str]:
    """The environment of every Ray process of a test and of its driver: a token of its own, a marker of its own."""
    return {
        **os.environ,
        MARKER: secrets.token_hex(8),
        "RAY_AUTH_MODE": "token",  # every RPC needs the token, every process of the cluster and every driver has it
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            dict.fromkeys(filter(None, [str(ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]))
        ),
    }


def kill_all(marker: str) -> None:
    """Kill every process carrying ``marker`` (a `ray stop` would stop every Ray on the machine) and check none is left."""
    for _ in range(50):
        pids = [pid for pid in cluster_pids(marker) if is_running(pid)]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not [pid for pid in cluster_pids(marker) if is_running(pid)], "processes of the Ray left running"


@pytest.fixture
def namespace():
    """The prefix that runs a command in a network namespace with loopback only ([] where there is none)."""
    holder, prefix = network_namespace()
    yield prefix
    if holder is not None:
        holder.kill()
        holder.wait()


@pytest.fixture
def ray_cluster(namespace):
    env, prefix = ray_env(), namespace
    temp = tempfile.mkdtemp(prefix="sb3po-ray-")  # short: Ray's unix sockets live below it (a 107-character limit)
    gcs, client, *node_ports = free_ports(14)

    def start(*args: str) -> None:
        ports = [node_ports.pop() for _ in range(6)]
        command = [
            *prefix, RAY, "start", *args, "--num-cpus", "1", "--temp-dir", temp, "--disable-usage-stats",
            "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
            "--runtime-env-agent-port", str(ports[2]), "--dashboard-agent-grpc-port", str(ports[3]),
            "--dashboard-agent-listen-port", str(ports[4]), "--metrics-export-port", str(ports[5]),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    cluster = Cluster(f"127.0.0.1:{gcs}", env, prefix, bool(prefix))
    try:
        start("--head", "--port", str(gcs), "--ray-client-server-port", str(client), "--include-dashboard", "false")
        start("--address", cluster.address)
        deadline = time.monotonic() + 120
        while alive_nodes(cluster) < 2:
            assert time.monotonic() < deadline, "the second node did not join the head"
            time.sleep(1)
        yield cluster
    finally:
        kill_all(env[MARKER])  # the cluster's processes, found by their marker
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The grid run as before Ray: in this process, one run after the other; {label: result}."""
    benchmark = load_script("benchmark")
    results_dir = tmp_path_factory.mktemp("sequential")
    benchmark.main([*GRID, "--sequential", "--results-dir", str(results_dir)])
    return stored(results_dir)


def stored(results_dir: Path) -> dict[str, dict]:
    results = {}
    for path in results_dir.glob("*/*/*/seed*.json"):
        result = json.loads(path.read_text())
        results[f"{result['algo']} {result['env']} seed={result['seed']}"] = result
    assert not list(results_dir.rglob("*.tmp"))  # no half-written result
    return results


def driver(cluster: Cluster, results_dir: Path, *args: str) -> list[str]:
    return [
        *cluster.prefix, sys.executable, str(ROOT / "scripts" / "benchmark.py"), *GRID, "--results-dir", str(results_dir),
        "--ray-address", cluster.address, *args,
    ]  # fmt: skip


def finished_lines(out: str) -> dict[str, list[str]]:
    """The progress line of each finished run, by run: ``[k/4 done, ...] <label>: final ..., on <node>``."""
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        match = re.match(r"\[\d+/\d+ done, \d+ running, \d+ left\] (.+ seed=\d+): final", line)
        if match:
            lines.setdefault(match.group(1), []).append(line)
    return lines


def assert_same_as_sequential(results: dict[str, dict], sequential: dict[str, dict]) -> None:
    assert sorted(results) == sorted(sequential) == sorted(LABELS)
    for label, result in results.items():  # the same seed gives the same run, to the last evaluation
        assert result["final_eval_mean"] == sequential[label]["final_eval_mean"], label
        assert result["curve"] == sequential[label]["curve"], label
        assert result["env_steps"] == sequential[label]["env_steps"] == 4096


def test_two_node_cluster_stores_every_run_once_equal_to_the_sequential_path(ray_cluster, sequential, tmp_path):
    """
    One test, one cluster (pytest-xdist would start a module's cluster once per worker that runs one of its tests):
    the cluster is private; the grid dispatched with --ray-address is stored once and equals the sequential path, and
    a rerun runs nothing; a worker killed mid-run is retried and its run stored once.
    """
    assert_private(ray_cluster)
    assert_grid_stored_once(ray_cluster, sequential, tmp_path / "grid")
    assert_killed_worker_retried(ray_cluster, sequential, tmp_path / "killed")
    assert_a_failing_run_is_reported_and_the_others_stored(ray_cluster, tmp_path / "grid")


def assert_private(ray_cluster: Cluster) -> None:
    # the cluster is private: token authentication refuses a client without the token; in its namespace the only
    # network interface is loopback
    refused = subprocess.run(
        [*ray_cluster.prefix, RAY, "status", "--address", ray_cluster.address],
        env={**ray_cluster.env, "RAY_AUTH_TOKEN": "not-the-token"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "AuthenticationError" in refused.stderr
    if ray_cluster.namespace:
        pid = cluster_pids(ray_cluster.env[MARKER])[0]
        interfaces = [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]]
        assert interfaces == ["lo"]


def assert_grid_stored_once(ray_cluster: Cluster, sequential: dict[str, dict], tmp_path: Path) -> None:
    done = subprocess.run(driver(ray_cluster, tmp_path), env=ray_cluster.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"4 runs: 0 already stored, 4 to run on the Ray cluster at {ray_cluster.address}" in done.stdout
    lines = finished_lines(done.stdout)
    assert sorted(lines) == sorted(LABELS) and all(len(v) == 1 for v in lines.values()), done.stdout
    assert "[4/4 done, 0 running, 0 left]" in done.stdout
    nodes = {re.search(r" node ([0-9a-f]{8}) pid", line[0]).group(1) for line in lines.values()}
    assert len(nodes) == 2  # both nodes ran runs
    results = stored(tmp_path)
    assert_same_as_sequential(results, sequential)
    assert all(r["versions"]["commit"] == sequential[label]["versions"]["commit"] for label, r in results.items())

    # a rerun finds every run stored and runs none
    mtimes = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.json"))
    again = subprocess.run(driver(ray_cluster, tmp_path), env=ray_cluster.env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 runs: 4 already stored, 0 to run" in again.stdout, again.stdout + again.stderr
    assert not finished_lines(again.stdout) and sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.json")) == mtimes


def assert_killed_worker_retried(ray_cluster: Cluster, sequential: dict[str, dict], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        driver(ray_cluster, tmp_path), env=ray_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            # a Ray worker names itself after the task it runs: ray::<run label>
            running = {pid: process_title(pid) for pid in cluster_pids(ray_cluster.env[MARKER])}
            running = {pid: title[5:] for pid, title in running.items() if title.removeprefix("ray::") in LABELS}
            if running:
                pid, label = min(running.items())
                time.sleep(2.0)  # into the run: the task started, its result is seconds away
                if process_title(pid) == f"ray::{label}":
                    os.kill(pid, signal.SIGKILL)
                    killed = (pid, label)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert killed is not None, "no worker found running a run of the grid"
    assert proc.returncode == 0, out + err
    pid, label = killed
    lines = finished_lines(out)
    assert sorted(lines) == sorted(LABELS) and all(len(v) == 1 for v in lines.values()), out
    assert f" pid {pid}" not in lines[label][0]  # the killed run finished in another worker process: retried
    assert_same_as_sequential(stored(tmp_path), sequential)


def test_local_ray_with_two_workers_equals_the_sequential_path_and_stops(namespace, sequential, tmp_path):
    """The default without --ray-address: a local Ray started by the driver (here in the namespace), stopped at its end."""
    env = ray_env()
    command = [*namespace, sys.executable, str(ROOT / "scripts" / "benchmark.py"), *GRID, "--results-dir", str(tmp_path)]
    try:
        done = subprocess.run([*command, "--workers", "2"], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "4 runs: 0 already stored, 4 to run on a local Ray with 2 workers" in done.stdout
        lines = finished_lines(done.stdout)
        assert sorted(lines) == sorted(LABELS) and all(len(v) == 1 for v in lines.values()), done.stdout
        assert_same_as_sequential(stored(tmp_path), sequential)
        # the driver stopped its Ray: no process of it is left (given a moment to exit)
        deadline = time.monotonic() + 30
        while [pid for pid in cluster_pids(env[MARKER]) if is_running(pid)] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [process_title(pid) for pid in cluster_pids(env[MARKER]) if is_running(pid)]
    finally:
        kill_all(env[MARKER])


def assert_a_failing_run_is_reported_and_the_others_stored(ray_cluster: Cluster, results_dir: Path) -> None:
    """A run that raises (no such variant) is not retried: reported, the grid goes on, the exit names it."""
    command = driver(ray_cluster, results_dir, "--algos", "vpg", "vpg@no_such_variant", "kl_ppo", "--seeds", "1")
    done = subprocess.run(command, env=ray_cluster.env, capture_output=True, text=True, timeout=300)
    assert "3 runs: 2 already stored, 1 to run on the Ray cluster" in done.stdout, done.stdout + done.stderr
    assert "[0/1 done, 0 running, 0 left, 1 failed] vpg@no_such_variant CartPole-v1 seed=0: FAILED" in done.stdout
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "benchmark.py: 1 of 1 runs failed (the others are stored; a rerun runs the failed ones): "
        "vpg@no_such_variant CartPole-v1 seed=0: RayTaskError"
    ), done.stderr
    assert not (results_dir / "vpg@no_such_variant").exists()


def without_ray(*args: str) -> subprocess.CompletedProcess:
    """benchmark.py in an interpreter where Ray is not installed (``import ray`` fails, ``find_spec`` finds nothing)."""
    code = (
        "import runpy, sys; sys.modules['ray'] = None; sys.argv = ['benchmark.py', *sys.argv[1:]];"
        "runpy.run_path('scripts/benchmark.py', run_name='__main__')"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_without_ray_the_grid_runs_sequentially_and_asking_for_ray_names_the_extra(tmp_path):
    small = ["--algos", "vpg", "--envs", "CartPole-v1", "--budget", "256", "--n-eval-episodes", "1", "--results-dir"]
    done = without_ray(*small, str(tmp_path), "--seeds", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 runs: 0 already stored, 2 to run in this process, one at a time" in done.stdout
    assert "pip install 'sb3-po[cluster]'" in done.stdout and len(stored_files(tmp_path)) == 2
    for ask in (["--ray-address", "auto"], ["--workers", "2"]):
        refused = without_ray(*small, str(tmp_path / "other"), "--seeds", "2", *ask)
        assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0, refused.stderr  # one line
        assert "needs ray" in refused.stderr and "pip install 'sb3-po[cluster]'" in refused.stderr
        assert not (tmp_path / "other").exists()


def stored_files(results_dir: Path) -> list[Path]:
    return sorted(results_dir.glob("*/*/*/seed*.json"))


def test_dispatch_refuses_options_that_change_nothing(tmp_path):
    benchmark = load_script("benchmark")
    runs = benchmark.grid(["vpg"], ["CartPole-v1"], range(2), tmp_path, 256, None, 1)
    for options, message in (
        (dict(sequential=True, workers=2), "--sequential"),
        (dict(sequential=True, address="auto"), "--sequential"),
        (dict(address="auto", workers=2), "--workers sizes a local Ray"),
        (dict(workers=1, max_retries=2), "--max-retries"),
        (dict(workers=0), "at least 1"),
    ):
        with pytest.raises(ValueError, match=message):
            benchmark.dispatch(runs, tmp_path, **options)
    assert not stored_files(tmp_path)


def test_progress_lines_counts_and_bar(tmp_path, capsys):
    benchmark = load_script("benchmark")
    runs = benchmark.grid(["vpg"], ["CartPole-v1"], range(3), tmp_path, 256, None, 1)
    benchmark.store_result(runs[1].path, {"stored": "before"})  # a finished run: skipped
    finished = benchmark.dispatch(runs, tmp_path, sequential=True, bar=True)
    out, err = capsys.readouterr()
    assert [f.run.seed for f in finished] == [0, 2] and json.loads(runs[1].path.read_text()) == {"stored": "before"}
    assert "3 runs: 1 already stored, 2 to run in this process, one at a time" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines[0].startswith("[1/2 done, 0 running, 1 left] vpg CartPole-v1 seed=0: final ")
    assert lines[1].startswith("[2/2 done, 0 running, 0 left] vpg CartPole-v1 seed=2: final ")
    assert all(re.search(r"\d+s training, \d+s in all, on \S+$", line) for line in lines)
    assert "2/2" in err  # tqdm's bar, on stderr
    assert all(f.latency >= f.seconds > 0 for f in finished)
