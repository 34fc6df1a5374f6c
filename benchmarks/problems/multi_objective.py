"""Multi-objective and constrained task families (issue 14).

A :class:`MOProblem` has one or more objectives (``directions``, ``metric_names``) and zero or
more constraints (Optuna's contract: a value ``<= 0`` is feasible). Its objective returns the
tuple of objective values and stores the constraint values in the trial user attribute
``bench:constraints``, which :func:`constraints_from_user_attrs` (the ``constraints_func`` given
to samplers) reads back.

Families, each leave-one-task-out like the single-objective ones:

- ``lcbench_mo``: LCBench at epoch 52, maximize ``val_accuracy``, minimize ``time``.
- ``rbv2_rpart_mo``: rpart at full fidelity, maximize ``acc``, minimize ``timetrain``.
- ``lcbench_constrained``: maximize ``val_accuracy`` subject to ``time <= budget_t``, with
  ``budget_t`` the median ``time`` of 2000 random configurations of task ``t``.
- ``synthetic_mo`` / ``synthetic_mo3``: DTLZ2-like tasks with 2 / 3 objectives and a known
  front (4 parameters in ``[0, 1]``; the task moves the front in input space and scales it).

They live in a registry of their own (:data:`MO_PROBLEMS`, :func:`get_mo_problem`), so the
single-objective runner and report never pick them up.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from functools import lru_cache
import math
import os
from typing import Any
import zlib

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from benchmarks.problems.base import build_once
from benchmarks.problems.base import Direction
from benchmarks.problems.base import Problem


CONSTRAINTS_ATTR = "bench:constraints"
BUDGET_SAMPLES = 2000


def constraints_from_user_attrs(trial: FrozenTrial) -> Sequence[float]:
    """``constraints_func`` of the constrained problems: the values the objective stored.

    Args:
        trial: A finished trial of a constrained problem's objective.
    """
    return [float(v) for v in trial.user_attrs.get(CONSTRAINTS_ATTR, [])]


class MOProblem(Problem):
    """A family of related tasks with several objectives and optional constraints.

    Subclasses implement :meth:`tasks`, :meth:`suggest` and :meth:`values` (and
    :meth:`constraints` when ``n_constraints > 0``).

    Args:
        name: Problem name (no spaces or dashes).
        directions: One direction per objective.
        metric_names: One name per objective (``study.set_metric_names``).
        n_constraints: Number of constraint values per trial.
    """

    def __init__(
        self,
        name: str,
        directions: Sequence[Direction],
        metric_names: Sequence[str],
        n_constraints: int = 0,
    ) -> None:
        super().__init__(name, directions[0])
        self.directions: list[Direction] = list(directions)
        self.metric_names = list(metric_names)
        self.n_constraints = n_constraints

    @property
    def signs(self) -> np.ndarray:
        """``-1`` for maximized objectives, ``+1`` for minimized ones: ``signs * values`` is
        to be minimized."""
        return np.array([-1.0 if d == "maximize" else 1.0 for d in self.directions])

    def values(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Objective values of ``params`` on ``task``: ``(n, n_objectives)``.

        Args:
            task: Task id.
            params: Configurations as returned by :meth:`suggest`.
        """
        raise NotImplementedError

    def constraints(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Constraint values (``<= 0`` feasible): ``(n, n_constraints)``.

        Args:
            task: Task id.
            params: Configurations as returned by :meth:`suggest`.
        """
        return np.zeros((len(params), 0))

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """The first objective (single-objective helpers only; see :meth:`values`).

        Args:
            task: Task id.
            params: Configurations.
        """
        return self.values(task, params)[:, 0]

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """The first objective of one configuration."""
        return float(self.evaluate_many(task, [params])[0])

    def known_scale(self, task: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact ``(ideal, nadir)`` of the task's Pareto front, oriented to minimization, or
        ``None`` to scale by random configurations.

        Args:
            task: Task id.
        """
        return None

    def known_hypervolume(self, task: str, reference: np.ndarray) -> float | None:
        """Exact hypervolume of the front, scaled by :meth:`known_scale`, or ``None``.

        Args:
            task: Task id.
            reference: Reference point in scaled units.
        """
        return None

    def mo_objective(self, task: str) -> Callable[[optuna.Trial], float | Sequence[float]]:
        """An Optuna objective for ``task``: the objective values (one float when there is a
        single objective); constraint values go to the user attribute ``bench:constraints``.

        Args:
            task: Task id.
        """

        def _objective(trial: optuna.Trial) -> float | Sequence[float]:
            params = self.suggest(trial)
            if self.n_constraints:
                con = self.constraints(task, [params])[0]
                trial.set_user_attr(CONSTRAINTS_ATTR, [float(c) for c in con])
            values = [float(v) for v in self.values(task, [params])[0]]
            return values[0] if len(values) == 1 else values

        return _objective


class _OnSurrogate(MOProblem):
    """A problem on a YAHPO surrogate's single-objective family (``self.base``), whose tasks,
    targets and search space it shares."""

    base: Any

    def tasks(self) -> list[str]:
        """The surrogate's tasks."""
        return self.base.tasks()

    def default_targets(self) -> list[str]:
        """The eight targets of the single-objective family."""
        return self.base.default_targets()

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The single-objective family's space."""
        return self.base.suggest(trial)


class SurrogateMO(_OnSurrogate):
    """Objectives taken from columns of a YAHPO surrogate's outputs.

    Args:
        name: Problem name.
        base: The single-objective problem of the surrogate (``LCBench`` or ``RPart``), which
            defines tasks, space and targets and has ``outputs(task, params)``.
        outputs: Column names of ``base.outputs`` in order.
        metrics: ``{column: direction}`` of the objectives.
    """

    def __init__(
        self,
        name: str,
        base: Any,
        outputs: Sequence[str],
        metrics: dict[str, Direction],
    ) -> None:
        super().__init__(name, list(metrics.values()), list(metrics))
        self.base = base
        self.family = base.family
        self._cols = [list(outputs).index(m) for m in metrics]

    def values(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """The objective columns of the surrogate's prediction."""
        return self.base.outputs(task, params)[:, self._cols]


class LCBenchConstrained(_OnSurrogate):
    """LCBench: maximize ``val_accuracy`` subject to ``time - budget_t <= 0``.

    ``budget_t`` is the median ``time`` of ``BUDGET_SAMPLES`` random configurations of task
    ``t`` (seed 0), so about half of the space is feasible on every task.

    Args:
        data_dir: YAHPO data directory.
    """

    family = "lcbench"

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        from benchmarks.problems.lcbench import LCBench
        from benchmarks.problems.lcbench import OUTPUTS

        super().__init__("lcbench_constrained", ["maximize"], ["val_accuracy"], n_constraints=1)
        self.base = LCBench(data_dir)
        self._acc, self._time = OUTPUTS.index("val_accuracy"), OUTPUTS.index("time")

    def time_budget(self, task: str) -> float:
        """The task's time budget: median ``time`` over random configurations.

        Args:
            task: Task id.
        """
        return _median_time(self, task)

    def values(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """``val_accuracy`` (percent): ``(n, 1)``."""
        return self.base.outputs(task, params)[:, [self._acc]]

    def constraints(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """``time - budget``: ``(n, 1)``."""
        return self.base.outputs(task, params)[:, [self._time]] - self.time_budget(task)


@lru_cache(maxsize=64)
def _median_time(problem: LCBenchConstrained, task: str) -> float:
    configs = problem.random_configurations(BUDGET_SAMPLES, 0)
    return float(np.median(problem.base.outputs(task, configs)[:, problem._time]))


class DTLZ2Family(MOProblem):
    """DTLZ2-like tasks with a known Pareto front (all objectives minimized).

    Four parameters ``x0..x3`` in ``[0, 1]``; the first ``m - 1`` give the position on the
    front (warped by ``x ** alpha_t``), the others its distance,
    ``g = sum_j (x_j - c_tj) ** 2``. Objective ``k`` is ``a_tk * (1 + g) * u_k`` with ``u``
    the point of the unit sphere's positive orthant at the (warped) angles. The front
    (``g = 0``) is the orthant of the ellipsoid with semi-axes ``a_t``; scaled by its ideal
    point ``0`` and nadir point ``a_t`` it is the unit sphere's, so the hypervolume of the
    front up to reference ``r`` is ``prod(r) - (pi / 4 or pi / 6)`` exactly. Related tasks:
    the optimal ``c_t`` differ by at most ``max_shift`` per coordinate.

    Args:
        n_objectives: 2 or 3.
        n_tasks: Number of tasks.
        max_shift: Largest shift of ``c_t`` from 0.5 per coordinate (relatedness knob).
    """

    N_PARAMS = 4

    def __init__(self, n_objectives: int = 2, n_tasks: int = 12, max_shift: float = 0.15) -> None:
        if n_objectives not in (2, 3):
            raise ValueError("n_objectives must be 2 or 3.")
        name = "synthetic_mo" if n_objectives == 2 else f"synthetic_mo{n_objectives}"
        metrics = [f"f{k}" for k in range(n_objectives)]
        super().__init__(name, ["minimize"] * n_objectives, metrics)
        self.m = n_objectives
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        n_dist = self.N_PARAMS - (n_objectives - 1)
        self._ids = [f"t{i:02d}" for i in range(n_tasks)]
        self._center = {t: 0.5 + rng.uniform(-max_shift, max_shift, n_dist) for t in self._ids}
        self._scale = {t: rng.uniform(0.5, 2.0, n_objectives) for t in self._ids}
        self._alpha = {t: float(rng.uniform(0.7, 1.5)) for t in self._ids}

    def tasks(self) -> list[str]:
        """Task ids ``t00``..."""
        return list(self._ids)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Four floats in ``[0, 1]``."""
        return {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(self.N_PARAMS)}

    def values(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """The ``m`` objectives: ``(n, m)``."""
        x = np.array([[p[f"x{i}"] for i in range(self.N_PARAMS)] for p in params]).reshape(
            -1, self.N_PARAMS
        )
        pos, dist = x[:, : self.m - 1], x[:, self.m - 1 :]
        g = ((dist - self._center[task]) ** 2).sum(axis=1)
        theta = 0.5 * math.pi * pos ** self._alpha[task]
        if self.m == 2:
            unit = np.stack([np.cos(theta[:, 0]), np.sin(theta[:, 0])], axis=1)
        else:
            c0, s0 = np.cos(theta[:, 0]), np.sin(theta[:, 0])
            unit = np.stack([c0 * np.cos(theta[:, 1]), c0 * np.sin(theta[:, 1]), s0], axis=1)
        return self._scale[task] * (1.0 + g)[:, None] * unit

    def optimal_center(self, task: str) -> np.ndarray:
        """The distance parameters' values on the front (``g = 0``).

        Args:
            task: Task id.
        """
        return self._center[task].copy()

    def known_scale(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        """Ideal point ``0`` and nadir point ``a_t`` of the front."""
        return np.zeros(self.m), self._scale[task].copy()

    def known_hypervolume(self, task: str, reference: np.ndarray) -> float:
        """``prod(reference)`` minus the unit ball's orthant (needs ``reference >= 1``)."""
        if np.any(np.asarray(reference) < 1.0):
            raise ValueError("The closed form needs a reference point >= 1 in every objective.")
        orthant = math.pi / 4 if self.m == 2 else math.pi / 6
        return float(np.prod(reference) - orthant)


def _lcbench_mo() -> MOProblem:
    from benchmarks.problems.lcbench import LCBench
    from benchmarks.problems.lcbench import OUTPUTS

    metrics: dict[str, Direction] = {"val_accuracy": "maximize", "time": "minimize"}
    return SurrogateMO("lcbench_mo", LCBench(), OUTPUTS, metrics)


def _rbv2_rpart_mo() -> MOProblem:
    from benchmarks.problems.rbv2_rpart import OUTPUTS
    from benchmarks.problems.rbv2_rpart import RPart

    metrics: dict[str, Direction] = {"acc": "maximize", "timetrain": "minimize"}
    return SurrogateMO("rbv2_rpart_mo", RPart(), OUTPUTS, metrics)


MO_PROBLEMS: dict[str, Callable[[], MOProblem]] = {
    "lcbench_mo": _lcbench_mo,
    "rbv2_rpart_mo": _rbv2_rpart_mo,
    "lcbench_constrained": LCBenchConstrained,
    "synthetic_mo": lambda: DTLZ2Family(2),
    "synthetic_mo3": lambda: DTLZ2Family(3),
}
#: Families on the YAHPO surrogates (they need the data; see ``benchmarks.problems.yahpo``).
REAL_MO = ("lcbench_mo", "rbv2_rpart_mo", "lcbench_constrained")
_CACHE: dict[str, MOProblem] = {}


def get_mo_problem(name: str) -> MOProblem:
    """Build (once per process) and return the multi-objective or constrained problem ``name``.

    Args:
        name: A key of :data:`MO_PROBLEMS`.
    """
    return build_once(name, MO_PROBLEMS, _CACHE)
