"""Benchmark harness for optuna-metabo.

Runs samplers head to head on transfer problems (synthetic task families and LCBench via the
YAHPO Gym surrogate), stores every run as an Optuna study and aggregates the runs into a
Markdown report with PNG plots. See ``BENCHMARKS.md`` at the repository root.
"""

from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "benchmarks" / ".cache"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DEFAULT_STORAGE = f"sqlite:///{CACHE_DIR / 'bench.db'}"
