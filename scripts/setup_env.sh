#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install sb3-po into it.
#   bash scripts/setup_env.sh [extras]        e.g. bash scripts/setup_env.sh tests,zoo
# Environment variables:
#   VENV         where the virtual environment lives (default: .venv in the repository)
#   TORCH_SPEC   the torch requirement installed first (default: torch==2.13.0, the CPU build on these
#                machines; set it to e.g. "torch --index-url https://download.pytorch.org/whl/cu124" for a GPU build)
#   PYTHON       the interpreter that creates the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${1:-}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# torch first: otherwise the plain `torch` dependency may pull a multi-GB CUDA build
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $TORCH_SPEC
if [ -n "$EXTRAS" ]; then
  "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
else
  "$VENV/bin/python" -m pip install --quiet -e .
fi
