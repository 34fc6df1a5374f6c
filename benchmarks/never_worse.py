"""The targets of "Transfer that never costs" (issue 25), against baselines of the same run.

Every figure is paired over (target, seed) instances; SE is the standard error of the paired
difference:

- **never worse** (real families): at no budget from 3 to the last trial is MetaBOSampler's
  regret above warm-start TPE's by more than 1 SE, and at 10 trials it is below by at least
  2 SE (the multi-objective report checks the same against its front warm start);
- **oracle** (LCBench): at 5 trials, its regret is at most that of the best prior incumbent
  re-evaluated on the target;
- **misleading priors** (priors that optimized the negated metric): its mean regret is at
  most 1.5x GPSampler's at 5, 10 and 20 trials and at most GPSampler's at 40;
- **negative transfer** (the synthetic ``negative`` family): at 40 trials at most 2x
  GPSampler's;
- **no loss elsewhere** (given the runs of the previous version): at every reported budget,
  not above the previous version's regret by more than 1 SE.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from benchmarks.problems.misleading import MISLEADING
from benchmarks.targets import _at
from benchmarks.targets import _by_instance
from benchmarks.targets import _mark
from benchmarks.targets import _paired
from benchmarks.targets import Instance
from benchmarks.targets import RunLike


PAIRED_BUDGETS = (3, 5, 10, 20, 40)
NEVER_WORSE_FROM = 3
AHEAD_BUDGET = 10
ORACLE_BUDGET = 5
#: (budget, most regret relative to GPSampler's) on the misleading-prior families.
MISLEADING_LIMITS = ((5, 1.5), (10, 1.5), (20, 1.5), (40, 1.0))
NEGATIVE_LIMIT = (40, 2.0)
ORACLE_PROBLEMS = ("lcbench",)
NEGATIVE_PROBLEMS = ("negative",)
Row = tuple[str, str, str]  # (target, figure, verdict)


@dataclass(frozen=True)
class Paired:
    """Mean and standard error of a paired difference ``reference - baseline``.

    Args:
        mean: Mean difference (negative favours the reference).
        se: Standard error of the mean difference.
        n: Number of pairs.
    """

    mean: float
    se: float
    n: int

    def behind(self) -> bool:
        """Whether the reference is behind by more than 1 SE."""
        return self.mean > self.se

    def ahead(self) -> bool:
        """Whether the reference is ahead by at least 2 SE."""
        return self.mean < 0 and -self.mean >= 2 * self.se

    def __str__(self) -> str:
        return f"{self.mean:+.3f} ± {self.se:.3f}"


def paired(runs: Sequence[RunLike], reference: str, baseline: str, budget: int) -> Paired:
    """The paired difference of regret ``reference - baseline`` after ``budget`` trials.

    Args:
        runs: Runs of one problem group with regret attached.
        reference: The sampler under test.
        baseline: The sampler it is compared with.
        budget: Trials.
    """
    ours = _at(_by_instance(runs, reference), budget)
    return Paired(*_paired(ours, _at(_by_instance(runs, baseline), budget)))


def _last_trial(runs: Sequence[RunLike], samplers: Sequence[str]) -> int:
    lengths = [len(r.regret) for r in runs if r.sampler in samplers]
    return min(lengths) if lengths else 0


def _has(runs: Sequence[RunLike], *samplers: str) -> bool:
    return all(any(r.sampler == s for r in runs) for s in samplers)


def paired_budget_table(runs: Sequence[RunLike], reference: str, baseline: str) -> str:
    """Markdown table of ``reference - baseline`` at :data:`PAIRED_BUDGETS`, with a verdict.

    Args:
        runs: Runs of one problem group with regret attached.
        reference: The sampler under test.
        baseline: The sampler it is compared with (warm-start TPE, the front warm start).
    """
    last = _last_trial(runs, (reference, baseline))
    budgets = [b for b in PAIRED_BUDGETS if b <= last]
    if not budgets or not _has(runs, reference, baseline):
        return f"Not available: the runs lack {reference} or {baseline}."
    lines = [f"| {reference} minus {baseline} | " + " | ".join(f"n={b}" for b in budgets) + " |"]
    lines.append("|---|" + "---:|" * len(budgets))
    diffs = [paired(runs, reference, baseline, budget) for budget in budgets]
    lines.append("| mean ± SE (pairs) | " + " | ".join(_figure(d) for d in diffs) + " |")
    lines.append("| verdict | " + " | ".join(_verdict(d) for d in diffs) + " |")
    return "\n".join(lines)


def _figure(diff: Paired) -> str:
    return f"{diff} ({diff.n})" if diff.n >= 2 else f"– ({diff.n})"


def _verdict(diff: Paired) -> str:
    if diff.n < 2:
        return "–"
    return "**behind > 1 SE**" if diff.behind() else "ahead 2 SE" if diff.ahead() else "tie"


def never_worse_rows(runs: Sequence[RunLike], reference: str, baseline: str) -> list[Row]:
    """Rows of the never-worse target: never behind ``baseline`` by more than 1 SE from 3
    trials to the last, and ahead by 2 SE at 10.

    Args:
        runs: Runs of one problem group with regret attached.
        reference: The sampler under test.
        baseline: Warm-start TPE (or the multi-objective front warm start).
    """
    last = _last_trial(runs, (reference, baseline))
    if last < NEVER_WORSE_FROM or not _has(runs, reference, baseline):
        return []
    diffs = {n: paired(runs, reference, baseline, n) for n in range(NEVER_WORSE_FROM, last + 1)}
    diffs = {n: d for n, d in diffs.items() if d.n >= 2}
    if not diffs:
        return []
    worst = max(diffs, key=lambda n: diffs[n].mean - diffs[n].se)
    behind = [n for n, d in diffs.items() if d.behind()]
    figure = f"worst n={worst}: {diffs[worst]}"
    if behind:
        figure += f"; behind at {len(behind)} of {len(diffs)} budgets"
    target = f"n={NEVER_WORSE_FROM}..{last}: never behind {baseline} by > 1 SE"
    rows = [(target, figure, _mark(not behind))]
    if AHEAD_BUDGET in diffs:
        diff = diffs[AHEAD_BUDGET]
        rows.append(
            (f"@{AHEAD_BUDGET}: ahead of {baseline} by 2 SE", str(diff), _mark(diff.ahead()))
        )
    return rows


def oracle_row(
    runs: Sequence[RunLike], oracle: Mapping[Instance, float], reference: str
) -> list[Row]:
    """The row of the oracle target: at 5 trials, at most the best prior incumbent.

    Args:
        runs: Runs of one problem group with regret attached.
        oracle: Regret of the best prior incumbent re-evaluated on the target, per instance.
        reference: The sampler under test.
    """
    ours = _at(_by_instance(runs, reference), ORACLE_BUDGET)
    diff = Paired(*_paired(ours, oracle))
    if diff.n < 2:
        return []
    target = f"@{ORACLE_BUDGET}: at most the best prior incumbent"
    return [(target, str(diff), _mark(diff.mean <= 0))]


def ratio_rows(
    runs: Sequence[RunLike], reference: str, baseline: str, limits: Sequence[tuple[int, float]]
) -> list[Row]:
    """Rows ``mean regret of reference / baseline <= limit`` at each ``(budget, limit)``.

    Args:
        runs: Runs of one problem group with regret attached.
        reference: The sampler under test.
        baseline: GPSampler.
        limits: ``(budget, limit)`` pairs; budgets beyond the runs are left out.
    """
    ours, base = _by_instance(runs, reference), _by_instance(runs, baseline)
    keys = sorted(set(ours) & set(base))
    rows = []
    for budget, limit in limits:
        pairs = [
            (ours[k][budget - 1], base[k][budget - 1])
            for k in keys
            if len(ours[k]) >= budget and len(base[k]) >= budget
        ]
        if len(pairs) < 2:
            continue
        a, b = np.mean(pairs, axis=0)
        ratio = float(a) / max(float(b), 1e-12)
        bound = baseline if limit == 1.0 else f"{limit:g}x {baseline}"
        figure = f"{a:.3g} vs {b:.3g} ({ratio:.2f}x, {len(pairs)} pairs)"
        rows.append((f"@{budget}: at most {bound}", figure, _mark(a <= limit * b)))
    return rows


def before_rows(runs: Sequence[RunLike], reference: str, before: str) -> list[Row]:
    """Rows of the no-loss target: at each reported budget, not behind the previous version
    of ``reference`` (runs named ``before``) by more than 1 SE.

    Args:
        runs: Runs of one problem group, the previous version's among them.
        reference: The sampler under test.
        before: The sampler name of the previous version's runs.
    """
    last = _last_trial(runs, (reference, before))
    rows = []
    for budget in [b for b in PAIRED_BUDGETS if b <= last]:
        diff = paired(runs, reference, before, budget)
        if diff.n >= 2:
            target = f"@{budget}: not behind {before} by > 1 SE"
            rows.append((target, str(diff), _mark(not diff.behind())))
    return rows


def seconds_row(seconds: Mapping[str, float], reference: str) -> list[Row]:
    """An informational row: median sampler seconds per trial of ``reference`` and the ratio
    to each other sampler given (harness timings: noisy; the cost target is measured by
    ``benchmarks.bench_overhead``).

    Args:
        seconds: Median seconds per trial by sampler.
        reference: The sampler under test.
    """
    if not math.isfinite(seconds.get(reference, math.nan)):
        return []
    ours = seconds[reference]
    parts = [f"{reference} {ours:.3f} s"]
    parts += [
        f"{s} {v:.3f} s ({ours / v:.2f}x)"
        for s, v in seconds.items()
        if s != reference and math.isfinite(v) and v > 0
    ]
    target = "median sampler seconds per trial, last half of each run (harness)"
    return [(target, "; ".join(parts), "info")]


def issue_rows(
    problem: str,
    family: str,
    runs: Sequence[RunLike],
    oracle: Mapping[Instance, float],
    reference: str = "metabo",
    before: str | None = None,
) -> list[Row]:
    """Every target of the issue that applies to one problem group.

    Args:
        problem: Problem name of the group.
        family: Its family (``"synthetic"`` for the synthetic ones).
        runs: Runs of the group with regret attached.
        oracle: Regret of the best prior incumbent re-evaluated, per instance.
        reference: The sampler under test.
        before: Sampler name of the previous version's runs among ``runs``, if any.
    """
    rows: list[Row] = []
    if problem in MISLEADING:
        rows += ratio_rows(runs, reference, "gp", MISLEADING_LIMITS)
    elif family != "synthetic":
        rows += never_worse_rows(runs, reference, "warm_tpe")
    if problem in ORACLE_PROBLEMS:
        rows += oracle_row(runs, oracle, reference)
    if problem in NEGATIVE_PROBLEMS:
        rows += ratio_rows(runs, reference, "gp", (NEGATIVE_LIMIT,))
    if before is not None:
        rows += before_rows(runs, reference, before)
    return rows


def rows_table(rows: Sequence[tuple[str, ...]], header: Sequence[str]) -> str:
    """A Markdown table of ``rows``.

    Args:
        rows: Table rows, each as long as ``header``.
        header: Column names.
    """
    if not rows:
        return "Not available: the runs lack the samplers these targets are stated against."
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
