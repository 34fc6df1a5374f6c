"""Per-task output transforms (``output_transform``): standardization or a Gaussian copula.

As BoTorch's MultiTaskGP docs advise, each task is put on a common scale before the joint fit,
so a task with large raw values does not dominate. ``affine_back`` maps model output back to
a task's raw units.
"""

from __future__ import annotations

import numpy as np


TRANSFORMS = ("standardize", "copula")
# Values already on a common scale (constraints, scaled jointly over all tasks) stay as they are.
IDENTITY = "identity"


def transform_task_values(
    values: np.ndarray, kind: str, noise: np.ndarray | None = None
) -> np.ndarray:
    """Maps one task's values ``(n,)`` (lower is better) to a standard scale.

    Args:
        values: Raw values, sign-flipped for minimization.
        kind: ``"standardize"`` (zero mean, unit variance), ``"copula"`` (ranks mapped through
            the normal quantile function, robust to outliers and skew) or ``IDENTITY``.
        noise: Known extra variance of each value ``(n,)``; the scale comes from the measured
            values (zero extra variance) alone, so imputed ones do not move it.
    """
    return transform_task(values, np.zeros(len(values)) if noise is None else noise, kind)[0]


def transform_task(
    values: np.ndarray, noise: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """``transform_task_values`` and the known extra variances ``(n,)`` in the new units."""
    if kind not in TRANSFORMS and kind != IDENTITY:
        raise ValueError(f"output_transform must be one of {TRANSFORMS}, not {kind!r}.")
    if len(values) == 0 or kind == IDENTITY:
        return values.astype(float), noise.astype(float)
    measured = values[noise == 0] if (noise == 0).any() else values
    std = float(np.std(measured))
    std = std if std > 1e-12 else 1.0
    if kind == "copula":
        from scipy.special import ndtri  # SciPy's stats module takes ~0.5 s to import.
        from scipy.stats import rankdata

        quantiles = (rankdata(values) - 0.5) / len(values)
        return ndtri(quantiles), noise / std**2
    return (values - np.mean(measured)) / std, noise / std**2


def affine_back(standardized: np.ndarray, raw: np.ndarray) -> tuple[float, float]:
    """Least-squares ``raw ~ offset + scale * standardized``, to report model output in raw units.

    Args:
        standardized: Transformed values ``(n,)``.
        raw: The raw values they came from ``(n,)``.

    Returns:
        ``(offset, scale)``; ``(mean, 1)`` when fewer than two distinct values exist.
    """
    if len(raw) == 0:
        return 0.0, 1.0
    if len(raw) < 2 or np.ptp(standardized) < 1e-12:
        return float(np.mean(raw)), 1.0
    scale, offset = np.polyfit(standardized, raw, 1)
    return float(offset), float(scale)
