"""Pytest options of the benchmark harness.

``pytest benchmarks`` runs the quick mode (harness checks, no performance claims).
``pytest benchmarks --full`` (or ``METABO_BENCH_FULL=1``) also runs the full benchmark with the
options below; every option has a ``METABO_BENCH_<NAME>`` environment variable too.
"""

from __future__ import annotations

import os

import pytest


OPTIONS = {
    "budget": ("40", "trials on the target task"),
    "seeds": ("3", "number of seeds (0..N-1)"),
    "targets": ("", "N (first N default targets), 'all', or comma-separated task ids"),
    "problems": ("all", "comma list of problems, 'synthetic' or 'all'"),
    "samplers": ("", "comma list of samplers (default: all registered defaults)"),
    "storage": ("", "storage URL (default: sqlite:///benchmarks/.cache/bench.db)"),
    "jobs": ("", "worker processes (default: one per core)"),
    "n-priors": ("10", "prior tasks per (target, seed)"),
    "prior-trials": ("50", "trials per prior study"),
    "prior-sampler": ("tpe", "sampler of the prior studies: tpe or random"),
    "report-name": ("full", "file stem of the report written to benchmarks/results"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--full`` and the protocol knobs.

    Args:
        parser: The pytest parser.
    """
    group = parser.getgroup("benchmarks", "optuna-metabo benchmark harness")
    group.addoption("--full", action="store_true", help="run the full benchmark")
    for name, (_default, help_text) in OPTIONS.items():
        group.addoption(f"--{name}", default=None, help=help_text)


def bench_option(config: pytest.Config, name: str) -> str:
    """Read an option: command line, then ``METABO_BENCH_<NAME>``, then the default.

    Args:
        config: The pytest config.
        name: Option name as in :data:`OPTIONS` (``"n-priors"``).
    """
    value = config.getoption(f"--{name}", default=None)
    env = f"METABO_BENCH_{name.upper().replace('-', '_')}"
    return value or os.environ.get(env) or OPTIONS[name][0]


def full_mode(config: pytest.Config) -> bool:
    """Whether the full benchmark is selected.

    Args:
        config: The pytest config.
    """
    flag = config.getoption("--full", default=False)
    return bool(flag) or os.environ.get("METABO_BENCH_FULL", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Quick mode deselects ``test_full_benchmark`` rather than skipping it, so the quick run
    reports only tests that ran.

    Args:
        config: The pytest config.
        items: The collected tests, changed in place.
    """
    if full_mode(config):
        return
    deselected = [item for item in items if item.name == "test_full_benchmark"]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
