"""Normalized regret and the per-task bounds cache.

For a task with best known value ``y*`` and worst known value ``y-`` (in the direction of
optimization), the normalized regret of a run after ``n`` trials is

    r(n) = |y* - y_best(n)| / |y* - y-|,

clipped to [0, 1], where ``y_best(n)`` is the best value among its first ``n`` trials: 0 means
the best known value was found (or beaten), 1 means nothing better than the worst known value.
The bounds come from the problem alone, never from stored runs, so a report does not change
when runs are added: ``y-`` is the worst of ``n_samples`` uniformly random configurations,
``y*`` the best of them refined by a seeded local search (or the analytic optimum where it is
known). They are computed once per task and cached as JSON, keyed by the method.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
from typing import Any

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

    def regret(self, best_so_far: np.ndarray) -> np.ndarray:
        """Normalized regret of best-so-far values, clipped to [0, 1]: a value better than the
        best known one has regret 0, one worse than the worst known one regret 1.

        Args:
            best_so_far: Best value after each trial.
        """
        sign = -1.0 if self.direction == "maximize" else 1.0
        span = abs(self.best - self.worst) or 1.0
        gap = sign * (np.asarray(best_so_far, dtype=float) - self.best)
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


#: Local refinement of the best random configurations: rounds, independent searches (one from
#: each of the best random configurations, so that they stay in different basins), and
#: configurations drawn near each search's incumbent per round; the radius shrinks
#: geometrically.
REFINE_ROUNDS = 40
REFINE_STARTS = 16
REFINE_DRAWS = 32
REFINE_RADII = (0.2, 0.002)
#: Changes whenever the estimate changes, so that cached bounds of another method are redone.
BOUNDS_METHOD = f"random+local:{REFINE_ROUNDS}x{REFINE_STARTS}x{REFINE_DRAWS}:{REFINE_RADII}"


def estimate_bounds(
    problem: Problem, task: str, n_samples: int = BOUND_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The best and worst known values of ``task``, from the problem alone: ``(best, worst)``.

    The worst is the worst of ``n_samples`` uniformly random configurations. The best is the
    best of ``REFINE_STARTS`` seeded local searches, one from each of the best random
    configurations: each round draws ``REFINE_DRAWS`` configurations near a search's incumbent
    and moves it to the best of them if that is better, with a radius shrinking from 20% to
    0.2% of each parameter's range. Where the problem knows its optimum, that is the best
    (unless the search beats its rounding).

    Args:
        problem: The problem the task belongs to.
        task: Task id.
        n_samples: Number of random configurations.
        seed: Seed of the random configurations and of the local search.
    """
    sign = -1.0 if problem.direction == "maximize" else 1.0  # sign * value: lower is better

    def scores(configs: list[dict[str, Any]]) -> np.ndarray:
        values = sign * np.asarray(problem.evaluate_many(task, configs), dtype=float)
        return np.where(np.isfinite(values), values, np.inf)

    configs = problem.random_configurations(n_samples, seed)
    random_scores = scores(configs)
    worst = float(np.max(random_scores[np.isfinite(random_scores)]))
    starts = np.argsort(random_scores, kind="stable")[:REFINE_STARTS]
    incumbents, incumbent_scores = [configs[i] for i in starts], random_scores[starts]
    rng = np.random.default_rng([seed, 1])
    for radius in np.geomspace(*REFINE_RADII, REFINE_ROUNDS):
        near = [problem.configurations_near(c, REFINE_DRAWS, radius, rng) for c in incumbents]
        near_scores = scores([c for group in near for c in group]).reshape(len(near), -1)
        for k, group in enumerate(near):
            j = int(np.argmin(near_scores[k]))
            if near_scores[k, j] < incumbent_scores[k]:
                incumbents[k], incumbent_scores[k] = group[j], near_scores[k, j]
    best = float(np.min(incumbent_scores))
    optimum = problem.known_optimum(task)
    if optimum is not None:  # exact up to its rounding, which the search may beat by a hair
        best = min(best, sign * float(optimum))
    return sign * best, sign * worst


def task_bounds(
    problem: Problem,
    task: str,
    cache_dir: str | os.PathLike[str],
    n_samples: int = BOUND_SAMPLES,
    seed: int = 0,
) -> Bounds:
    """Return (and cache) the bounds of ``task`` (see :func:`estimate_bounds`).

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
    key = {"method": BOUNDS_METHOD, "n_samples": n_samples, "seed": seed}
    entry = cache.get(task)
    if entry is None or any(entry.get(k) != v for k, v in key.items()):
        best, worst = estimate_bounds(problem, task, n_samples, seed)
        entry = {"best": best, "worst": worst, **key, "known_optimum": problem.known_optimum(task)}
        cache[task] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    return Bounds(entry["best"], entry["worst"], problem.direction)
