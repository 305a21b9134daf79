#!/usr/bin/env bash
# Install sb3-po with its test and docs dependencies in .venv, run ruff, the whole test suite (which also runs every
# Python code block of the README and docs/) and the docs build with warnings as errors (about 8 minutes on 2 cores).
#   bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh tests,docs 2>&1 | grep -v "^WARNING: Location" || true
export OMP_NUM_THREADS=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy sb3_po  # as SB3's `make type` ([tool.mypy] in pyproject.toml)
.venv/bin/python -m pytest -n 2 --durations=10 "$@" tests
rm -rf docs/_build
.venv/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
