#!/usr/bin/env bash
# Sets up a virtual environment with optuna-metabo and the extra named in $1 (default: demo);
# further arguments are extra pip requirements (such as "optuna==4.8.0"). The environment is
# .venv, or $VENV if set.
# On machines that keep a local CPU wheel of torch (such as this project's CI kind), that wheel
# is installed first so pip does not download a multi-GB CUDA build; elsewhere pip resolves torch
# from pyproject.toml as usual (set TORCH_SPEC to choose, e.g. TORCH_SPEC="torch==2.5.1").
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-demo}"
venv="${VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    "$venv/bin/pip" install -q "$TORCH_SPEC"
  elif ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    "$venv/bin/pip" install -q torch==2.13.0
  fi
fi
"$venv/bin/pip" install -q -e ".[${extra}]" "${@:2}"
