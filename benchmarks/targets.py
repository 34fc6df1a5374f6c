"""The few-trial targets, checked against baselines measured in the same run.

Each line states one target of the few-trials issue, the figure the stored runs give for it
and whether it is met. Every figure is paired over (target, seed) instances:

- at 3, 5 and 10 trials, MetaBOSampler's regret is below warm-start TPE's by at least two
  standard errors of the paired difference;
- at 5 trials, its mean regret is at most that of the best prior incumbent re-evaluated on the
  target (the oracle that knows which of the prior studies' best configurations is best);
- its mean regret curve reaches GPSampler's final mean regret within 15 trials;
- at the last trial, its mean regret is at most GPSampler's (on the synthetic families, at
  most 1.1 times).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Protocol

import numpy as np


Instance = tuple[str, str, int]  # (group, target, seed)
WARM_START_BUDGETS = (3, 5, 10)
ORACLE_BUDGET = 5
REACH_WITHIN = 15


class RunLike(Protocol):
    """What the checks read from a stored run (see ``benchmarks.report.Run``)."""

    group: str
    target: str
    seed: int
    sampler: str
    regret: np.ndarray


def _by_instance(runs: Sequence[RunLike], sampler: str) -> dict[Instance, np.ndarray]:
    return {(r.group, r.target, r.seed): r.regret for r in runs if r.sampler == sampler}


def _paired(a: Mapping[Instance, float], b: Mapping[Instance, float]) -> tuple[float, float, int]:
    """Mean and standard error of ``a - b`` over the instances both have."""
    keys = sorted(set(a) & set(b))
    diff = np.array([a[k] - b[k] for k in keys])
    if len(diff) < 2:
        return math.nan, math.nan, len(diff)
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff))), len(diff)


def _at(curves: Mapping[Instance, np.ndarray], budget: int) -> dict[Instance, float]:
    return {k: float(c[budget - 1]) for k, c in curves.items() if len(c) >= budget}


def _mark(met: bool) -> str:
    return "met" if met else "**not met**"


def target_rows(
    runs: Sequence[RunLike],
    oracle: Mapping[Instance, float],
    reference: str = "metabo",
    final_tolerance: float = 1.0,
) -> list[tuple[str, str, str]]:
    """``(target, figure, verdict)`` for each few-trial target the runs can check.

    Args:
        runs: Runs of one problem group with regret attached.
        oracle: Regret of the best prior incumbent re-evaluated on the target, per instance.
        reference: The sampler under test.
        final_tolerance: The last trial's target is at most this times GPSampler's regret.
    """
    ours = _by_instance(runs, reference)
    rows: list[tuple[str, str, str]] = []
    warm = _by_instance(runs, "warm_tpe")
    if ours and warm:
        for budget in WARM_START_BUDGETS:
            mean, se, n = _paired(_at(ours, budget), _at(warm, budget))
            if n >= 2:
                figure = f"{mean:+.3f} ± {se:.3f} ({n} pairs)"
                met = mean < 0 and -mean >= 2 * se
                rows.append((f"@{budget}: below warm_tpe by 2 SE", figure, _mark(met)))
    if ours and oracle:
        mean, se, n = _paired(_at(ours, ORACLE_BUDGET), oracle)
        if n >= 2:
            figure = f"{mean:+.3f} ± {se:.3f} ({n} pairs)"
            rows.append(
                (f"@{ORACLE_BUDGET}: at most the best prior incumbent", figure, _mark(mean <= 0))
            )
    gp = _by_instance(runs, "gp")
    keys = sorted(set(ours) & set(gp))
    if len(keys) >= 2:
        length = min(min(len(ours[k]), len(gp[k])) for k in keys)
        our_mean = np.mean([ours[k][:length] for k in keys], axis=0)
        gp_final = float(np.mean([gp[k][length - 1] for k in keys]))
        hit = np.flatnonzero(our_mean <= gp_final)
        reached = int(hit[0]) + 1 if hit.size else None
        figure = f"trial {reached}" if reached else f"not within {length}"
        rows.append(
            (
                f"reaches gp@{length} within {REACH_WITHIN} trials",
                figure,
                _mark(reached is not None and reached <= REACH_WITHIN),
            )
        )
        ratio = float(our_mean[-1]) / max(gp_final, 1e-12)
        figure = f"{our_mean[-1]:.2g} vs {gp_final:.2g} ({ratio:.2f}x)"
        bound = "gp" if final_tolerance == 1.0 else f"{final_tolerance:g}x gp"
        met = our_mean[-1] <= final_tolerance * gp_final
        rows.append((f"@{length}: at most {bound}", figure, _mark(met)))
    return rows


def target_table(
    runs: Sequence[RunLike],
    oracle: Mapping[Instance, float],
    reference: str = "metabo",
    final_tolerance: float = 1.0,
) -> str:
    """Markdown table of :func:`target_rows`.

    Args:
        runs: Runs of one problem group with regret attached.
        oracle: Regret of the best prior incumbent re-evaluated on the target, per instance.
        reference: The sampler under test.
        final_tolerance: See :func:`target_rows`.
    """
    rows = target_rows(runs, oracle, reference, final_tolerance)
    if not rows:
        return "Not available: the runs lack the baselines the targets are stated against."
    lines = [f"| target ({reference}) | figure | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {f} | {v} |" for t, f, v in rows]
    return "\n".join(lines)
