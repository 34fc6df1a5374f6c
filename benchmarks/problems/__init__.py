"""Benchmark problems: synthetic task families, YAHPO surrogates (LCBench, rpart), plugins.

Plugins are registered with :func:`register_problem` or named in ``$METABO_BENCH_PLUGINS``
(comma-separated ``module:callable``; the callable registers problems or returns a
:class:`Problem`).
"""

from __future__ import annotations

import importlib
import os

from benchmarks.problems.base import Problem
from benchmarks.problems.base import ProblemFactory
from benchmarks.problems.base import register_problem
from benchmarks.problems.base import registered_problems
from benchmarks.problems.synthetic import SYNTHETIC_FACTORIES


__all__ = ["Problem", "get_problem", "register_problem", "problem_names"]
PLUGIN_ENV = "METABO_BENCH_PLUGINS"
SYNTHETIC = tuple(SYNTHETIC_FACTORIES)


def _digits_cnn() -> Problem:
    from benchmarks.problems.digits_cnn import DigitsCNN

    return DigitsCNN()


def _lcbench() -> Problem:
    from benchmarks.problems.lcbench import LCBench

    return LCBench()


def _lcbench_cond() -> Problem:
    from benchmarks.problems.lcbench import LCBenchConditional

    return LCBenchConditional()


def _rbv2_rpart() -> Problem:
    from benchmarks.problems.rbv2_rpart import RPart

    return RPart()


def _cash() -> Problem:
    from benchmarks.problems.cash import CASH

    return CASH()


def _lcbench_misleading() -> Problem:
    from benchmarks.problems.misleading import LCBenchMisleading

    return LCBenchMisleading()


def _hetero(name: str) -> ProblemFactory:
    def factory() -> Problem:
        from benchmarks.problems import hetero

        if name.startswith("lcbench_grown_"):
            return hetero.LCBenchGrown(name[len("lcbench_grown_") :])
        classes = {
            "lcbench_shrunk": hetero.LCBenchShrunk,
            "rbv2_rpart_grown": hetero.RPartGrown,
            "hartmann3_grown": hetero.Hartmann3Grown,
        }
        return classes[name]()

    return factory


def _load_plugins() -> None:
    for spec in filter(None, os.environ.get(PLUGIN_ENV, "").split(",")):
        module, _, attr = spec.strip().partition(":")
        result = getattr(importlib.import_module(module), attr or "register")()
        if isinstance(result, Problem):
            register_problem(result.name, _constant(result))


def _constant(problem: Problem) -> ProblemFactory:
    return lambda: problem


for _name, _factory in SYNTHETIC_FACTORIES.items():
    register_problem(_name, _factory)
register_problem("lcbench", _lcbench)
register_problem("rbv2_rpart", _rbv2_rpart)
register_problem("lcbench_cond", _lcbench_cond)
register_problem("cash", _cash)
register_problem("lcbench_misleading", _lcbench_misleading)
_HELD_SPACES = (
    "hartmann3_grown",
    "lcbench_grown_learning_rate",
    "lcbench_grown_max_dropout",
    "lcbench_shrunk",
    "rbv2_rpart_grown",
)
for _name in _HELD_SPACES:
    register_problem(_name, _hetero(_name))
#: Heterogeneous histories: priors tuned in another space (grown, shrunk), or a conditional one.
HETERO = (*_HELD_SPACES, "lcbench_cond")
register_problem("digits_cnn", _digits_cnn)
#: Problems that train real networks: only run when named explicitly, never by ``all``.
SMOKE = ("digits_cnn",)


def problem_names() -> list[str]:
    """Return the names of all registered problems (plugins from the environment included)."""
    _load_plugins()
    return list(registered_problems())


_CACHE: dict[str, Problem] = {}


def get_problem(name: str) -> Problem:
    """Build (once per process) and return the problem registered as ``name``.

    Args:
        name: Registered problem name.
    """
    if name not in _CACHE:
        registry = registered_problems()
        if name not in registry:
            _load_plugins()
            registry = registered_problems()
        if name not in registry:
            raise KeyError(f"Unknown problem {name!r}; known: {sorted(registry)}")
        _CACHE[name] = registry[name]()
    return _CACHE[name]
