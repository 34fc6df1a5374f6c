#!/usr/bin/env bash
# Runs the sampler's core tests with the oldest Optuna and GPyTorch that pyproject.toml declares
# (its ">=" floors), in .venv-oldest. scripts/setup.sh installs the newest releases for the full
# suite; this checks that the floors we declare still hold.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=$(grep -oE '^  "(optuna|gpytorch)>=[0-9.]+"' pyproject.toml | tr -d ' "' | sed 's/>=/==/')
echo "Oldest declared versions: $(echo $pins)"
VENV=.venv-oldest bash scripts/setup.sh test-core $pins
.venv-oldest/bin/python -c "import optuna, gpytorch; print('optuna', optuna.__version__, 'gpytorch', gpytorch.__version__)"
# Optuna's sampler contract tests (test_sampler.py) and the numeric core, priors and glue.
.venv-oldest/bin/python -m pytest -q -p no:cacheprovider \
  tests/test_sampler.py tests/test_model.py tests/test_proposal.py tests/test_priors.py \
  tests/test_prior_studies.py tests/test_search_space.py tests/test_target_space.py \
  tests/test_optimize.py tests/test_acquisition.py tests/test_outputs.py tests/test_pareto.py \
  tests/test_subsample.py tests/test_output_transform.py tests/test_multi_objective.py \
  tests/test_heterogeneous.py tests/test_reliability.py
