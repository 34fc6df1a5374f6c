"""Pareto fronts, hypervolumes and the box decomposition of the non-dominated region.

All functions work on arrays of objective vectors ``(n, m)`` where every objective is to be
minimized, and a reference point ``(m,)`` that bounds the region that counts.
"""

from __future__ import annotations

import numpy as np


def nondominated_mask(y: np.ndarray) -> np.ndarray:
    """Which rows of ``y`` ``(n, m)`` no other row dominates: ``(n,)``; of equal rows, the first.

    Args:
        y: Objective vectors, lower is better.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=bool)
    no_worse = (y[:, None, :] <= y[None, :, :]).all(axis=2)  # (n, n): row i no worse than j
    better = (y[:, None, :] < y[None, :, :]).any(axis=2)  # (n, n)
    dominated = (no_worse & better).any(axis=0)  # j is dominated by some i
    equal = no_worse & no_worse.T
    earlier_equal = np.tril(equal, k=-1).any(axis=1)  # an equal row comes before
    return np.asarray(~dominated & ~earlier_equal)


def nondominated_boxes(front: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint boxes whose union is the region below ``reference`` that ``front`` does not
    dominate: lower and upper corners ``(b, m)``, lower corners possibly ``-inf``.

    The first ``m - 1`` objectives are cut into a grid at the front's coordinates; over each
    grid cell the non-dominated part is one box along the last objective, up to the lowest
    last objective of the points that dominate the whole cell. There are
    ``(n + 1) ** (m - 1)`` cells for ``n`` points, so callers keep ``n`` small for ``m > 2``.

    Args:
        front: Mutually non-dominated points ``(n, m)``; points not below ``reference`` in every
            objective are ignored.
        reference: The reference point ``(m,)``.
    """
    front = np.asarray(front, dtype=float).reshape(-1, len(reference))
    front = front[(front < reference).all(axis=1)]
    m = len(reference)
    edges = [
        np.concatenate([[-np.inf], np.unique(front[:, k]), [reference[k]]]) for k in range(m - 1)
    ]
    index = np.stack(
        np.meshgrid(*[np.arange(len(e) - 1) for e in edges], indexing="ij"), axis=-1
    ).reshape(-1, m - 1)  # (cells, m - 1)
    lower = np.stack([edges[k][index[:, k]] for k in range(m - 1)], axis=1)  # (cells, m - 1)
    upper = np.stack([edges[k][index[:, k] + 1] for k in range(m - 1)], axis=1)
    covers = (front[None, :, : m - 1] <= lower[:, None, :]).all(axis=2)  # (cells, n)
    last = np.where(covers, front[None, :, m - 1], reference[m - 1]).min(axis=1, initial=np.inf)
    last = np.minimum(last, reference[m - 1])  # (cells,)
    keep = (upper > lower).all(axis=1) & (last > -np.inf)
    lower_full = np.concatenate([lower, np.full((len(lower), 1), -np.inf)], axis=1)
    upper_full = np.concatenate([upper, last[:, None]], axis=1)
    return lower_full[keep], upper_full[keep]


def hypervolume(y: np.ndarray, reference: np.ndarray) -> float:
    """The volume dominated by ``y`` ``(n, m)`` and bounded by ``reference`` ``(m,)``.

    Args:
        y: Objective vectors, lower is better; dominated ones and those not below the
            reference in every objective add nothing.
        reference: The reference point.
    """
    reference = np.asarray(reference, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1, len(reference))
    y = y[(y < reference).all(axis=1)]
    if len(y) == 0:
        return 0.0
    front = y[nondominated_mask(y)]
    if len(reference) == 1:
        return float(reference[0] - front.min())
    if len(reference) == 2:
        order = np.argsort(front[:, 0])
        x0, x1 = front[order, 0], front[order, 1]
        widths = np.diff(np.concatenate([x0, [reference[0]]]))
        return float((widths * (reference[1] - x1)).sum())
    ideal = front.min(axis=0)
    lower, upper = nondominated_boxes(front, reference)
    clipped = np.clip(upper - np.maximum(lower, ideal), 0.0, None).prod(axis=1)
    return float(np.prod(reference - ideal) - clipped.sum())


_MAX_EXACT_SUBSETS = 10


def hypervolume_improvement(
    points: np.ndarray, base: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """How much each of ``points`` ``(c, m)`` alone adds to the hypervolume of ``base``
    ``(s, m)``: ``(c,)``.

    By inclusion-exclusion over the subsets ``T`` of ``base``'s front,
    ``HVI(p) = sum_T (-1)^|T| prod_k (r_k - max(p_k, max_T t_k))^+``, for all points at once;
    a front of more than ``_MAX_EXACT_SUBSETS`` points is handled one point at a time.

    Args:
        points: Candidate objective vectors, lower is better.
        base: The vectors already there.
        reference: The reference point ``(m,)``.
    """
    reference = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    base = np.asarray(base, dtype=float).reshape(-1, len(reference))
    front = base[nondominated_mask(base)] if len(base) else base
    if len(front) > _MAX_EXACT_SUBSETS:
        before = hypervolume(front, reference)
        return np.array([hypervolume(np.vstack([front, p]), reference) - before for p in points])
    members = (np.arange(1 << len(front))[:, None] >> np.arange(len(front))) & 1  # (2^s, s)
    corner = np.where(members[:, :, None] == 1, front[None], -np.inf).max(axis=1, initial=-np.inf)
    sign = np.where(members.sum(axis=1) % 2 == 0, 1.0, -1.0)  # (2^s,)
    upper = np.maximum(points[:, None, :], corner[None])  # (c, 2^s, m)
    volume = np.clip(reference - upper, 0.0, None).prod(axis=2)  # (c, 2^s)
    return np.maximum(volume @ sign, 0.0)
