"""Which rows of a task to keep under a cap: about half its best, half a random spread."""

from __future__ import annotations

import numpy as np


def subsample_indices(y: np.ndarray, max_points: int, rng: np.random.RandomState) -> np.ndarray:
    """Sorted indices of at most ``max_points`` entries: about half the best, half a spread.

    The entries are taken in a fixed priority order that alternates the next best entry with
    the next entry of a random permutation, so a smaller cap keeps a subset of what a larger
    one keeps. Refits whose cap shrinks by a point (the target gained a trial) then see almost
    the same rows, and a warm start from the previous fit stays close to the optimum.

    Args:
        y: Values, lower is better, shape ``(n,)``.
        max_points: The cap.
        rng: Random source for the spread.
    """
    if len(y) <= max_points:
        return np.arange(len(y))
    alternating = np.column_stack([np.argsort(y, kind="stable"), rng.permutation(len(y))])
    alternating = alternating.reshape(-1)  # (2n,): best, random, next best, next random, ...
    _, first_seen = np.unique(alternating, return_index=True)
    priority = alternating[np.sort(first_seen)]  # each entry once, in alternating order
    return np.sort(priority[:max_points])
