"""Pareto fronts and hypervolumes of objective vectors, every objective minimized.

``nondominated_mask(values)`` tells which rows no other row dominates; ``hypervolume(front,
reference)`` is the volume a front dominates below a reference point (exact). Flip the sign of
a maximized objective first. These are the functions the sampler itself uses.
"""

from __future__ import annotations

from optuna_metabo._core.pareto import hypervolume
from optuna_metabo._core.pareto import nondominated_mask


__all__ = ["hypervolume", "nondominated_mask"]
