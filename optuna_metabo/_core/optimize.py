"""Maximizing an acquisition function over the unit cube of a mixed search space.

Multi-start: a scrambled Sobol design plus caller-given starts (the best prior and target
configurations) are scored, the best few are refined jointly with L-BFGS-B on the continuous
columns, then each discrete parameter (integer, stepped or categorical) is improved by exhaustive
search over its options, coordinate by coordinate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.optimize
import torch

from optuna_metabo._core.search_space import SearchSpace


AcquisitionFunction = Callable[[torch.Tensor], torch.Tensor]
# L-BFGS-B stops once an iteration raises the summed acquisition by less than this, relative:
# the log EI of the refined points then agrees with a run to full precision to about 1e-3.
_REFINE_FTOL = 1e-7


def evaluate(acqf: AcquisitionFunction, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Acquisition values of rows ``x`` ``(n, d)`` without gradients: ``(n,)``."""
    values = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            batch = torch.from_numpy(x[start : start + chunk])
            values.append(acqf(batch).cpu().numpy())
    result = np.concatenate(values) if values else np.zeros(0)
    return np.where(np.isfinite(result), result, -np.inf)


def _refine_continuous(
    acqf: AcquisitionFunction, x: np.ndarray, columns: np.ndarray, max_iter: int
) -> np.ndarray:
    """Jointly runs L-BFGS-B from every row of ``x`` ``(k, d)`` over ``columns``."""
    if len(columns) == 0:
        return x
    fixed = torch.from_numpy(x.copy())

    def negative_sum(flat: np.ndarray) -> tuple[float, np.ndarray]:
        moving = torch.from_numpy(flat.reshape(len(x), len(columns))).requires_grad_(True)
        full = fixed.clone()
        full[:, columns] = moving
        values = acqf(full)  # (k,)
        total = -torch.where(torch.isfinite(values), values, torch.zeros_like(values)).sum()
        total.backward()
        assert moving.grad is not None
        return float(total.detach()), moving.grad.numpy().reshape(-1).copy()

    start = x[:, columns].reshape(-1)
    try:
        result = scipy.optimize.minimize(
            negative_sum,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * len(start),
            options={"maxiter": max_iter, "ftol": _REFINE_FTOL},
        )
        refined = np.clip(result.x, 0.0, 1.0)
    except (RuntimeError, ValueError, FloatingPointError):
        return x  # The caller keeps the unrefined starts; they are already valid points.
    out = x.copy()
    out[:, columns] = refined.reshape(len(x), len(columns))
    return out


def _search_discrete(
    acqf: AcquisitionFunction, x: np.ndarray, space: SearchSpace, sweeps: int = 2
) -> np.ndarray:
    """Coordinate-wise exhaustive search over each discrete parameter, for each row.

    Rows are independent; every row's options are scored in one batch.
    """
    x = x.copy()
    rows = np.arange(len(x))
    for _ in range(sweeps):
        for columns, options in space.discrete_choices():
            trial = np.repeat(x, len(options), axis=0)  # (k * o, d), row-major by row of x
            trial[:, columns] = np.tile(options, (len(x), 1))
            values = evaluate(acqf, trial).reshape(len(x), len(options))  # (k, o)
            x = trial.reshape(len(x), len(options), -1)[rows, np.argmax(values, axis=1)]
    return x


def _top_distinct(x: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    chosen: list[int] = []
    for i in order:
        if all(not np.allclose(x[i], x[j]) for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return x[chosen]


def optimize_acquisition(
    acqf: AcquisitionFunction,
    space: SearchSpace,
    starts: np.ndarray,
    rng: np.random.RandomState,
    n_sobol: int = 512,
    n_local: int = 5,
    max_iter: int = 50,
    n_ahead: int = 0,
    exclude: np.ndarray | None = None,
    canonical: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """Returns the best point found, shape ``(d,)``, and its acquisition value.

    Args:
        acqf: Maps ``(m, d)`` tensors to ``(m,)`` values to maximize.
        space: The search space, for its continuous columns and discrete options.
        starts: Extra starting rows ``(k, d)``, already feasible.
        rng: Random source for the Sobol design.
        n_sobol: Size of the Sobol design.
        n_local: Number of local refinements.
        max_iter: L-BFGS-B iterations per refinement.
        n_ahead: Return the ``n_ahead``-th best distinct point instead (0: the best), so that
            workers that start at the same time do not all pick the same point.
        exclude: Points ``(t, d)`` not to return, such as the configurations already
            evaluated; one of them comes back only if every scored point is among them.
        canonical: Maps rows to a canonical form of the same configuration (coordinates the
            objective ignores set alike), applied before comparing with ``exclude``.
    """
    candidates = np.concatenate([space.sample_sobol(n_sobol, rng), starts.reshape(-1, space.dim)])
    values = evaluate(acqf, candidates)
    local = _top_distinct(candidates, values, n_local)
    local = _refine_continuous(acqf, local, space.continuous_columns, max_iter)
    local = _search_discrete(acqf, space.snap(local), space)
    pool = np.concatenate([local, candidates])
    pool_values = np.concatenate([evaluate(acqf, local), values])
    if canonical is not None:
        pool = canonical(pool)
    fresh = rows_not_in(pool, exclude)
    if fresh.any():
        pool, pool_values = pool[fresh], pool_values[fresh]
    return _nth_best(pool, pool_values, n_ahead)


# Two configurations closer than this in every normalized column count as the same one: a
# step of 1e-4 of a parameter's range changes no training run that was pruned or failed.
SAME_CONFIGURATION = 1e-4


def rows_not_in(
    x: np.ndarray, exclude: np.ndarray | None, atol: float = SAME_CONFIGURATION
) -> np.ndarray:
    """Mask of the rows of ``x`` ``(n, d)`` that differ from every row of ``exclude`` by more
    than ``atol`` in some column."""
    if exclude is None or len(exclude) == 0:
        return np.ones(len(x), dtype=bool)
    distance = np.abs(x[:, None, :] - exclude[None, :, :]).max(axis=2)  # (n, t)
    return distance.min(axis=1) > atol


def best_candidate(
    acqf: AcquisitionFunction, candidates: np.ndarray, n_ahead: int = 0
) -> tuple[np.ndarray, float]:
    """The best (or ``n_ahead``-th best) row of a finite candidate set ``(n, d)`` and its value."""
    return _nth_best(candidates, evaluate(acqf, candidates), n_ahead)


def _nth_best(x: np.ndarray, values: np.ndarray, n_ahead: int) -> tuple[np.ndarray, float]:
    """The ``n_ahead``-th best distinct row (the last one if there are fewer) and its value."""
    chosen = _top_distinct(x, values, n_ahead + 1)
    index = int(np.flatnonzero((x == chosen[-1]).all(axis=1))[0])
    return x[index], float(values[index])
