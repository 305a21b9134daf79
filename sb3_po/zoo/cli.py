"""
The command line (``sb3-po`` or ``python -m sb3_po.zoo``): ``train``, ``enjoy``, ``plot_train``, ``plot_from_file``
and ``all_plots`` with the zoo's flags. Without ``--conf-file`` our algorithms read the YAML shipped in the package
(``sb3_po/zoo_configs/<algo>.yml``); with ``-optimize`` and no ``--storage`` the study goes to a local journal file,
so that several workers on one machine share it.
"""

import argparse
import random
import sys
import time
from pathlib import Path

from sb3_po.common.optional import MissingExtraError, require, require_env
from sb3_po.registry import CONFIG_DIR, algorithms, config_path


def default_arguments(argv: list[str]) -> list[str]:
    """
    Fill in what our algorithms need and the zoo cannot know: the shipped YAML when no ``--conf-file``
    is given, or when the given YAML is not found here but one of that name is shipped (so the README's
    ``--conf-file zoo_configs/...`` works from any directory), and for ``-optimize`` without ``--storage``
    a local journal file and a study name shared by every worker started with the same command.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--log-folder", default="logs")
    parser.add_argument("-conf", "--conf-file", default=None)
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--study-name", default=None)
    known, _ = parser.parse_known_args(argv)
    argv = list(argv)
    if known.algo in algorithms() and known.conf_file is None:
        argv += ["--conf-file", str(config_path(known.algo))]
    shipped = CONFIG_DIR / Path(str(known.conf_file)).name
    if known.conf_file in argv and not Path(known.conf_file).exists() and shipped.suffix == ".yml" and shipped.exists():
        # `--conf-file zoo_configs/ppo_estimators.yml` from outside the repository: the copy shipped in the package
        argv[argv.index(known.conf_file)] = str(shipped)
    if known.optimize_hyperparameters and known.storage is None:
        storage = Path(known.log_folder) / "optuna" / f"{known.algo}_{known.env}.log"
        argv += ["--storage", str(storage)]
        if known.study_name is None:
            argv += ["--study-name", f"{known.algo}_{known.env}"]
    return argv


# torch's thread count when the command line does not say (rl_zoo3's own default, -1, keeps torch's: one thread per
# core). One thread trains these small networks faster, several times so on a loaded machine (measured per algorithm:
# docs/guide/performance.md)
DEFAULT_NUM_THREADS = 1


def default_threads(argv: list[str]) -> list[str]:
    """``--num-threads 1`` unless the command line sets it (``--num-threads -1`` restores torch's default)."""
    if any(arg == "--num-threads" or arg.startswith("--num-threads=") for arg in argv):
        return list(argv)
    return [*argv, "--num-threads", str(DEFAULT_NUM_THREADS)]


def check_env_installed(argv: list[str]) -> None:
    """
    Stop before the zoo starts (and before it creates a run directory) when ``--env`` belongs to a family whose
    extra is not installed (Box2D, MuJoCo): one line naming the extra, instead of gymnasium's traceback.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env", default="CartPole-v1")
    known, _ = parser.parse_known_args(argv)
    require_env(known.env)


def prepare_rdb_storage(argv: list[str], attempts: int = 8) -> None:
    """
    For ``-optimize`` with a database URL as ``--storage`` (``postgresql+psycopg2://...``), create Optuna's tables
    before the zoo opens the study. Workers started together on a fresh database race to create them, and all but one
    fail ("relation ... already exists", optuna/optuna#1092): a worker that loses the race tries again once the
    winner's tables are there.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    parser.add_argument("--storage", default=None)
    known, _ = parser.parse_known_args(argv)
    if not known.optimize_hyperparameters or known.storage is None or "://" not in known.storage:
        return
    optuna = require("optuna", feature="Hyperparameter tuning (sb3-po train -optimize)")
    sqlalchemy_exc = require("sqlalchemy.exc", feature="Optuna's database storage")
    rng = random.Random()
    for attempt in range(attempts):
        try:
            optuna.storages.RDBStorage(known.storage)
            return
        except sqlalchemy_exc.DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + rng.random() * 0.3)


def main(argv: list[str] | None = None) -> None:
    """``sb3-po {train,enjoy,plot_train,plot_from_file,all_plots} [the zoo's flags]``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("train", "enjoy", "plot_train", "plot_from_file", "all_plots")
    if not argv or argv[0] not in commands:
        print(f"usage: sb3-po {{{','.join(commands)}}} [RL Zoo flags]   (e.g. sb3-po train --algo grpo --env CartPole-v1)")
        raise SystemExit(2)
    command, args = argv[0], argv[1:]
    try:
        from sb3_po.zoo.bridge import register

        register()
        if command == "train":
            check_env_installed(args)
            args = default_threads(default_arguments(args))
            prepare_rdb_storage(args)
            entry = require("rl_zoo3.train", feature="sb3-po train").train
        elif command == "enjoy":
            check_env_installed(args)
            args = default_threads(args)
            entry = require("rl_zoo3.enjoy", feature="sb3-po enjoy").enjoy
        else:
            entry = getattr(require("rl_zoo3.plots", feature=f"sb3-po {command}"), command)
    except MissingExtraError as error:
        raise SystemExit(f"sb3-po: {error}") from error
    sys.argv = [f"sb3-po {command}", *args]
    entry()
