"""Pareto fronts and exact hypervolumes for the benchmark metrics.

The benchmarks keep their own implementation, independent of the sampler's, so that a metric
never depends on the code it judges. Every objective is minimized; fronts are small (at most
a few hundred points), so a plain recursion over slices is fast enough.
"""

from __future__ import annotations

import numpy as np


def nondominated_mask(y: np.ndarray) -> np.ndarray:
    """Which rows of ``y`` ``(n, m)`` no other row dominates ``(n,)``; of equal rows, the first.

    Args:
        y: Objective vectors, lower is better.
    """
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    keep = np.ones(len(y), dtype=bool)
    for i, row in enumerate(y):
        dominated = ((y <= row).all(axis=1) & (y < row).any(axis=1)).any()
        repeated = (y[:i] == row).all(axis=1).any()
        keep[i] = not dominated and not repeated
    return keep


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume that ``points`` ``(n, m)`` dominate below ``reference`` ``(m,)``, exactly.

    The region is cut into slabs along the last objective, between consecutive values of it;
    each slab's volume is its depth times the hypervolume, in the other objectives, of the
    points at or below it (a recursion down to one objective).

    Args:
        points: Objective vectors, lower is better; those not below ``reference`` in every
            objective add nothing.
        reference: The reference point.
    """
    reference = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    points = points[(points < reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    if len(reference) == 1:
        return float(reference[0] - points[:, 0].min())
    points = points[np.argsort(points[:, -1], kind="stable")]
    tops = np.append(points[1:, -1], reference[-1])
    total = 0.0
    for i, top in enumerate(tops):
        depth = top - points[i, -1]
        if depth > 0:
            total += depth * hypervolume(points[: i + 1, :-1], reference[:-1])
    return total
