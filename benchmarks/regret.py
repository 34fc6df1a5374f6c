"""Normalized regret and the per-task bounds cache.

For a task with best known value ``y*`` and worst known value ``y-`` (in the direction of
optimization), the normalized regret of a run after ``n`` trials is

    r(n) = |y* - y_best(n)| / |y* - y-|,

where ``y_best(n)`` is the best value among its first ``n`` trials: 0 means the best known
value was found, 1 means nothing better than the worst known value. Bounds come from
``n_samples`` uniformly random configurations (plus the analytic optimum when known), computed
once per task and cached as JSON; the report widens them with every value seen in the runs.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.problems.base import Problem


BOUND_SAMPLES = 2000


@dataclass
class Bounds:
    """Best and worst known objective values of one task.

    Args:
        best: Best known value (lowest when minimizing, highest when maximizing).
        worst: Worst known value.
        direction: ``"minimize"`` or ``"maximize"``.
    """

    best: float
    worst: float
    direction: str

    def widened(self, values: np.ndarray) -> Bounds:
        """Return bounds that also cover ``values``.

        Args:
            values: Observed objective values.
        """
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return self
        if self.direction == "maximize":
            return Bounds(max(self.best, values.max()), min(self.worst, values.min()), "maximize")
        return Bounds(min(self.best, values.min()), max(self.worst, values.max()), "minimize")

    def regret(self, best_so_far: np.ndarray) -> np.ndarray:
        """Normalized regret of best-so-far values, clipped to [0, 1].

        Args:
            best_so_far: Best value after each trial.
        """
        span = abs(self.best - self.worst) or 1.0
        gap = np.abs(self.best - np.asarray(best_so_far, dtype=float))
        return np.clip(gap / span, 0.0, 1.0)


def best_so_far(values: np.ndarray, direction: str) -> np.ndarray:
    """Running best of ``values`` (NaN for failed trials is ignored).

    Args:
        values: Objective values in trial order.
        direction: ``"minimize"`` or ``"maximize"``.
    """
    sign = -1.0 if direction == "maximize" else 1.0
    filled = np.where(np.isfinite(values), sign * np.asarray(values, dtype=float), np.inf)
    return sign * np.minimum.accumulate(filled)


def task_bounds(
    problem: Problem,
    task: str,
    cache_dir: str | os.PathLike[str],
    n_samples: int = BOUND_SAMPLES,
    seed: int = 0,
) -> Bounds:
    """Return (and cache) the random-search bounds of ``task``.

    Args:
        problem: The problem the task belongs to.
        task: Task id.
        cache_dir: Directory of the JSON cache (``bounds-<problem>.json``).
        n_samples: Number of random configurations evaluated on a cache miss.
        seed: Seed for the random configurations.
    """
    static = problem.static_bounds(task)
    if static is not None:
        return Bounds(static[0], static[1], problem.direction)
    path = Path(cache_dir) / f"bounds-{problem.name}.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    entry = cache.get(task)
    if entry is None or entry["n_samples"] < n_samples:
        values = problem.random_values(task, n_samples, seed)
        optimum = problem.known_optimum(task)
        if optimum is not None:
            values = np.append(values, optimum)
        maximize = problem.direction == "maximize"
        entry = {
            "best": float(values.max() if maximize else values.min()),
            "worst": float(values.min() if maximize else values.max()),
            "n_samples": n_samples,
            "known_optimum": optimum,
        }
        cache[task] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    return Bounds(entry["best"], entry["worst"], problem.direction)
