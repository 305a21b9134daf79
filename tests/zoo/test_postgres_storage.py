"""
Tuning across machines: several ``sb3-po train -optimize`` workers on one study in a PostgreSQL database (Optuna's
RDB storage), against a real PostgreSQL server started for the test (127.0.0.1 only, a free port, a temporary
data directory). In CI (``CI`` set) a missing server is a failure, never a skip.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from sb3_po import VPG
from sb3_po.zoo import sample_vpg_params


def _postgres_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A PostgreSQL server for this test: ``postgresql+psycopg2://postgres@127.0.0.1:<port>/optuna``."""
    bindir = _postgres_bin()
    if bindir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run this test)")
        pytest.skip(reason)
    psycopg2 = pytest.importorskip("psycopg2") if not os.environ.get("CI") else __import__("psycopg2")
    # initdb refuses to run as root: the server runs as the `postgres` user, in a directory that user owns
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="sb3po-pg-")
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres", group="postgres")
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run(str(bindir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")
    try:
        for _ in range(50):
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                time.sleep(0.2)
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE optuna")
        connection.close()
        # the driver named: SQLAlchemy 2.1 takes bare postgresql:// to mean psycopg 3
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        run(str(bindir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    """Two `sb3-po train -optimize` workers on one study in PostgreSQL: every trial recorded once, the best loadable."""
    n_trials, study_name = 2, "vpg_cartpole_pg"
    command = [
        str(Path(sys.executable).parent / "sb3-po"),  # the installed entry point, as a user starts a worker
        "train",
        "--algo",
        "vpg",
        "--env",
        "CartPole-v1",
        "-n",
        "1024",
        "-optimize",
        "--n-trials",
        str(n_trials),
        "--storage",
        postgres_url,
        "--study-name",
        study_name,
        "--eval-freq",
        "-1",
        "--n-evaluations",
        "1",
        "--sampler",
        "random",
        "--pruner",
        "none",  # no --seed: each worker draws its own, so their samplers do not propose the same trials
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = []
    for k in range(2):  # each worker in its own directory, as on two machines
        (tmp_path / f"worker{k}").mkdir()
        cmd = [*command, "-f", str(tmp_path / f"worker{k}" / "logs")]
        out = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        workers.append(subprocess.Popen(cmd, cwd=tmp_path / f"worker{k}", env=env, **out))
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs

    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2 * n_trials  # every trial of both workers, none lost, none twice
    assert sorted(t.number for t in trials) == list(range(2 * n_trials))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2 * n_trials  # distinct samples
    # the best trial's hyperparameters, read back from the database, rebuild a model through the sampler
    best = study.best_trial
    params = sample_vpg_params(optuna.trial.FixedTrial(best.params), n_actions=2, n_envs=1, additional_args={})
    model = VPG("MlpPolicy", "CartPole-v1", seed=0, **params).learn(params["n_steps"])
    assert model.n_steps == params["n_steps"] == 2 ** best.params["n_steps_pow"]
    assert model.learning_rate == pytest.approx(best.params["learning_rate"])
