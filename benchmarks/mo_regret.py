"""Hypervolume regret of multi-objective runs and feasible regret of constrained runs.

**Hypervolume regret.** Every objective is oriented to minimization and scaled per task,
``z = (s * y - low) / (high - low)`` with ``s = -1`` for maximized objectives. On the real
families ``low`` and ``high`` are the 1% and 99% quantiles of ``s * y`` over
``REFERENCE_SAMPLES`` uniformly random configurations, so the bulk of the space lies in
``[0, 1]``; on the synthetic families they are the known front's ideal and nadir points. The
reference point is ``REFERENCE_POINT = 1.1`` in every scaled objective. The reference front is
the non-dominated set of the random configurations together with every configuration a
seeded local search around the front evaluated (the known front on the synthetic families,
with its exact hypervolume). Then

    r(n) = (HV_ref - HV(first n trials)) / HV_ref,

clipped to ``[0, 1]``: 0 = the reference front's hypervolume reached (or beaten), 1 = nothing
below the reference point. It never increases with ``n``. Infeasible trials count for nothing.

**Feasible regret** (one objective with constraints): the normalized regret of the best
*feasible* value so far (:mod:`benchmarks.regret`), with bounds from feasible configurations
only (random configurations and the local search of :func:`benchmarks.regret.estimate_bounds`
with infeasible ones set aside); 1 until the first feasible trial.

Reference fronts and bounds come from the problem alone (never from runs) and are cached as
JSON per task in ``<cache>/mo-reference-<problem>.json`` / ``bounds-<problem>.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pareto import hypervolume
from benchmarks.pareto import nondominated_mask
from benchmarks.problems.base import Problem
from benchmarks.problems.multi_objective import MOProblem
from benchmarks.regret import best_so_far
from benchmarks.regret import Bounds
from benchmarks.regret import task_bounds


REFERENCE_POINT = 1.1
REFERENCE_SAMPLES = 2000
SCALE_QUANTILES = (0.01, 0.99)
#: Front refinement: rounds, front points searched around per round, draws near each; the
#: radius shrinks geometrically over the rounds.
FRONT_ROUNDS = 40
FRONT_CENTERS = 48
FRONT_DRAWS = 16
FRONT_RADII = (0.2, 0.002)
REFERENCE_METHOD = (
    f"random+front-search:{FRONT_ROUNDS}x{FRONT_CENTERS}x{FRONT_DRAWS}:{FRONT_RADII}"
    f":q{SCALE_QUANTILES}:ref{REFERENCE_POINT}"
)


@dataclass
class Reference:
    """Scaling and reference front of one task.

    Args:
        low: Per objective, the scaled 0 (oriented to minimization).
        high: Per objective, the scaled 1.
        signs: ``-1`` for maximized objectives, ``+1`` for minimized ones.
        hypervolume: Hypervolume of the reference front in scaled units.
        front: The reference front in scaled units (empty where it is known analytically).
    """

    low: np.ndarray
    high: np.ndarray
    signs: np.ndarray
    hypervolume: float
    front: np.ndarray

    @property
    def point(self) -> np.ndarray:
        """The reference point in scaled units."""
        return np.full(len(self.low), REFERENCE_POINT)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Scale raw objective values ``(n, m)`` (lower is better after scaling).

        Args:
            values: Raw objective values in the study's directions.
        """
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        return (self.signs * np.asarray(values, dtype=float) - self.low) / span

    def regret_curve(self, values: np.ndarray, feasible: np.ndarray | None = None) -> np.ndarray:
        """Hypervolume regret after each trial: ``(n,)``, non-increasing, in ``[0, 1]``.

        Args:
            values: Raw objective values ``(n, m)`` in trial order (NaN rows: failed).
            feasible: Which trials are feasible (all when ``None``); others count for nothing.
        """
        z = self.scale(np.asarray(values, dtype=float).reshape(len(values), -1))
        ok = np.isfinite(z).all(axis=1)
        if feasible is not None:
            ok &= np.asarray(feasible, dtype=bool)
        curve, front = [], np.zeros((0, z.shape[1]))
        hv = 0.0
        for i in range(len(z)):
            if ok[i] and (z[i] < self.point).all():
                front = np.vstack([front, z[i]])
                front = front[nondominated_mask(front)]
                hv = hypervolume(front, self.point)
            curve.append(hv)
        gap = (self.hypervolume - np.array(curve)) / max(self.hypervolume, 1e-300)
        return np.clip(gap, 0.0, 1.0)


def _oriented(problem: MOProblem, task: str, configs: list[dict[str, Any]]) -> np.ndarray:
    values = problem.signs * problem.values(task, configs)
    con = problem.constraints(task, configs)
    feasible = (con <= 0).all(axis=1) & np.isfinite(values).all(axis=1)
    return np.where(feasible[:, None], values, np.inf)


def estimate_reference(
    problem: MOProblem, task: str, n_samples: int = REFERENCE_SAMPLES, seed: int = 0
) -> Reference:
    """Scale and reference front of ``task`` from the problem alone (see the module doc).

    The front search keeps a pool of evaluated points; each round it draws ``FRONT_DRAWS``
    configurations near each of up to ``FRONT_CENTERS`` points of the pool's current front
    (evenly spread along the first objective) and adds them to the pool.

    Args:
        problem: The problem.
        task: Task id.
        n_samples: Random configurations (scaling and the start of the pool).
        seed: Seed of the random configurations and of the search.
    """
    signs = problem.signs
    known = problem.known_scale(task)
    point = np.full(len(signs), REFERENCE_POINT)
    if known is not None:
        low, high = known
        hv = problem.known_hypervolume(task, point)
        if hv is not None:
            return Reference(low, high, signs, hv, np.zeros((0, len(signs))))
    configs = problem.random_configurations(n_samples, seed)
    values = _oriented(problem, task, configs)
    finite = values[np.isfinite(values).all(axis=1)]
    if known is None:
        low, high = np.quantile(finite, SCALE_QUANTILES, axis=0)
    span = np.where(high > low, high - low, 1.0)
    mask = np.isfinite(values).all(axis=1)
    pool_configs = [c for c, ok in zip(configs, mask) if ok]
    pool = (values[mask] - low) / span
    keep = nondominated_mask(pool)
    pool_configs, pool = [c for c, k in zip(pool_configs, keep) if k], pool[keep]
    rng = np.random.default_rng([seed, 2])
    for radius in np.geomspace(*FRONT_RADII, FRONT_ROUNDS):
        order = np.argsort(pool[:, 0], kind="stable")
        pick = order[np.unique(np.linspace(0, len(order) - 1, FRONT_CENTERS).round().astype(int))]
        near = [
            c
            for i in pick
            for c in problem.configurations_near(pool_configs[i], FRONT_DRAWS, radius, rng)
        ]
        new = _oriented(problem, task, near)
        ok = np.isfinite(new).all(axis=1)
        pool_configs += [c for c, k in zip(near, ok) if k]
        pool = np.vstack([pool, (new[ok] - low) / span])
        keep = nondominated_mask(pool)
        pool_configs, pool = [c for c, k in zip(pool_configs, keep) if k], pool[keep]
    hv = hypervolume(pool, point)
    return Reference(np.asarray(low), np.asarray(high), signs, hv, pool)


def task_reference(
    problem: MOProblem,
    task: str,
    cache_dir: str | os.PathLike[str],
    n_samples: int = REFERENCE_SAMPLES,
    seed: int = 0,
) -> Reference:
    """Return (and cache) :func:`estimate_reference` of ``task``.

    Args:
        problem: The problem.
        task: Task id.
        cache_dir: Directory of ``mo-reference-<problem>.json``.
        n_samples: Random configurations on a cache miss.
        seed: Seed of the estimate.
    """
    path = Path(cache_dir) / f"mo-reference-{problem.name}.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    key = {"method": REFERENCE_METHOD, "n_samples": n_samples, "seed": seed}
    entry = cache.get(task)
    if entry is None or any(entry.get(k) != v for k, v in key.items()):
        ref = estimate_reference(problem, task, n_samples, seed)
        entry = {**key, "low": ref.low.tolist(), "high": ref.high.tolist()}
        entry |= {"hypervolume": ref.hypervolume, "front": ref.front.round(6).tolist()}
        cache[task] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=None, sort_keys=True))
        tmp.replace(path)
    front = np.array(entry["front"], dtype=float).reshape(-1, len(problem.directions))
    return Reference(
        np.array(entry["low"]), np.array(entry["high"]), problem.signs, entry["hypervolume"], front
    )


class FeasibleView(Problem):
    """The first objective of a constrained problem, NaN where a configuration is infeasible,
    so that :func:`benchmarks.regret.estimate_bounds` only counts feasible configurations.

    Args:
        problem: The constrained problem.
    """

    def __init__(self, problem: MOProblem) -> None:
        super().__init__(problem.name, problem.directions[0])
        self.problem = problem

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The problem's space."""
        return self.problem.suggest(trial)

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """The first objective, NaN where infeasible."""
        values = self.problem.values(task, params)[:, 0]
        feasible = (self.problem.constraints(task, params) <= 0).all(axis=1)
        return np.where(feasible, values, np.nan)


def feasible_bounds(
    problem: MOProblem, task: str, cache_dir: str | os.PathLike[str], n_samples: int = 2000
) -> Bounds:
    """Best and worst feasible values of ``task`` (cached in ``bounds-<problem>.json``).

    Args:
        problem: A single-objective problem with constraints.
        task: Task id.
        cache_dir: Cache directory.
        n_samples: Random configurations on a cache miss.
    """
    return task_bounds(FeasibleView(problem), task, cache_dir, n_samples)


def feasible_regret_curve(bounds: Bounds, values: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Normalized regret of the best feasible value after each trial (1 before any).

    Args:
        bounds: Feasible bounds of the task.
        values: Objective values in trial order (NaN: failed).
        feasible: Which trials are feasible.
    """
    masked = np.where(np.asarray(feasible, dtype=bool), np.asarray(values, dtype=float), np.nan)
    return bounds.regret(best_so_far(masked, bounds.direction))


def infeasible_share(feasible: np.ndarray, n: int) -> float:
    """Share of the first ``n`` trials that were infeasible.

    Args:
        feasible: Which trials are feasible, in trial order.
        n: Number of first trials counted.
    """
    head = np.asarray(feasible, dtype=bool)[:n]
    return float(1.0 - head.mean()) if len(head) else 0.0
