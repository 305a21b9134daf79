#!/usr/bin/env bash
# Install sb3-po in .venv, train an algorithm on CartPole-v1, print its evaluation score and write TensorBoard logs.
#   bash scripts/quickstart.sh [algo] [timesteps]      (default: vpg 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python scripts/quickstart.py "$@"
