"""Report of the learning-curve and failure benchmarks (issue 24) from the stored runs.

Usage::

    python -m benchmarks.lc_report --protocol curves     # benchmarks/results/learning-curves.md
    python -m benchmarks.lc_report --protocol failures   # benchmarks/results/failures.md

The options are those of ``python -m benchmarks.lc_runner`` (they select the stored runs of
that protocol: problems, arms, targets, seeds, budget, priors); ``--name`` and ``--out`` set
the report file. Metrics are defined in :mod:`benchmarks.lc_metrics`; every figure is
computed from the stored runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from benchmarks import CACHE_DIR
from benchmarks import RESULTS_DIR
from benchmarks.lc_metrics import best_completed_by_cost
from benchmarks.lc_metrics import failed_count
from benchmarks.lc_metrics import is_completed
from benchmarks.lc_metrics import is_failed
from benchmarks.lc_metrics import REPEAT_TOLERANCE
from benchmarks.lc_metrics import repeats
from benchmarks.lc_runner import parse_protocol
from benchmarks.lc_runner import protocol_of
from benchmarks.lc_runner import protocol_parser
from benchmarks.lc_samplers import ARMS
from benchmarks.problems.learning_curves import FAILURE_ATTR
from benchmarks.problems.learning_curves import failure_shares
from benchmarks.problems.learning_curves import get_lc_problem
from benchmarks.problems.learning_curves import LCProblem
from benchmarks.regret import BOUND_SAMPLES
from benchmarks.regret import Bounds
from benchmarks.regret import task_bounds
from benchmarks.report import _fmt
from benchmarks.report import bootstrap_ci
from benchmarks.report import report_header
from benchmarks.report import save_figure
from benchmarks.report import write_report
from benchmarks.runner import COMPLETE
from benchmarks.runner import get_storage
from benchmarks.runner import Protocol
from benchmarks.runner import resolve_targets
from benchmarks.samplers import SECONDS_ATTR


CHECKPOINTS = (1, 2, 3, 5, 10, 20)
#: A coarser tolerance than a repeat's: trials this close to a pruned or failed one are
#: counted too (as "near repeats"), since a change this small rarely changes the outcome.
NEAR_TOLERANCE = 1e-3
PRIOR_DESIGN = 5
NAMES = {"curves": "learning-curves", "failures": "failures"}


@dataclass
class LCRun:
    """One stored run with its metrics.

    Args:
        problem: Problem name.
        target: Target task id.
        arm: Arm name.
        seed: Seed.
        unit: Cost of one checkpoint unit (52 epochs, or one trial).
        regret: Normalized regret of the best completed trial once each cost ``1..budget`` is
            spent, ``(budget,)``.
        trials: The run's finished trials, in order.
        repeats: Numbers of the trials that repeat a pruned or failed configuration.
        near_repeats: Those within ``NEAR_TOLERANCE`` of one (repeats included).
        prior_studies: The prior studies' names.
    """

    problem: str
    target: str
    arm: str
    seed: int
    unit: int
    regret: np.ndarray
    trials: list[FrozenTrial]
    repeats: list[int]
    near_repeats: list[int]
    prior_studies: list[str]

    def at(self, checkpoint: int) -> float:
        """Regret after ``checkpoint`` units (clipped to the budget)."""
        return float(self.regret[min(checkpoint * self.unit, len(self.regret)) - 1])


@dataclass
class Selection:
    """Which stored runs a report reads.

    Args:
        protocol: The runs' protocol (its tag selects them).
        problems: Problem names.
        arms: Arm names (all stored when ``None``).
        targets: Target selection (see :func:`benchmarks.runner.resolve_targets`).
        seeds: Number of seeds (``0..seeds-1``).
    """

    protocol: Protocol
    problems: Sequence[str]
    arms: Sequence[str] | None = None
    targets: str | Sequence[str] | None = None
    seeds: int = 3

    def keeps(self, attrs: dict[str, Any]) -> bool:
        """Whether a run study with these user attributes is selected."""
        if attrs.get("bench:role") not in ("lc_run", "fail_run") or not attrs.get(COMPLETE):
            return False
        problem = attrs["bench:problem"]
        if problem not in self.problems or attrs["bench:protocol"] != self.protocol.tag:
            return False
        if self.arms and attrs["bench:sampler"] not in self.arms:
            return False
        targets = resolve_targets(get_lc_problem(problem), self.targets)
        return attrs["bench:target"] in targets and attrs["bench:seed"] < self.seeds


def load_lc_runs(
    storage: str,
    selection: Selection,
    cache_dir: str | os.PathLike[str] = CACHE_DIR,
    n_samples: int = BOUND_SAMPLES,
) -> list[LCRun]:
    """Load the selected complete runs with their metrics.

    Args:
        storage: Storage URL.
        selection: Which runs.
        cache_dir: Regret bounds cache directory.
        n_samples: Random configurations per task for the bounds.
    """
    store = get_storage(storage)
    runs = []
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        if not selection.keeps(summary.user_attrs):
            continue
        study_id = store.get_study_id_from_name(summary.study_name)
        trials = [t for t in store.get_all_trials(study_id) if t.state.is_finished()]
        problem = get_lc_problem(summary.user_attrs["bench:problem"])
        bounds = task_bounds(
            problem.bounds_problem(), summary.user_attrs["bench:target"], cache_dir, n_samples
        )
        budget = selection.protocol.budget
        runs.append(_with_metrics(problem, summary.user_attrs, trials, budget, bounds))
    return runs


def _with_metrics(
    problem: LCProblem,
    attrs: dict[str, Any],
    trials: list[FrozenTrial],
    budget: int,
    bounds: Bounds,
) -> LCRun:
    costs = np.array([problem.cost(t) for t in trials])  # (n,)
    best = best_completed_by_cost(trials, costs, budget, problem.direction)  # (budget,)
    regret = np.where(np.isnan(best), 1.0, bounds.regret(np.nan_to_num(best)))
    return LCRun(
        attrs["bench:problem"],
        attrs["bench:target"],
        attrs["bench:sampler"],
        attrs["bench:seed"],
        problem.checkpoint_unit,
        regret,
        trials,
        repeats(trials),
        repeats(trials, NEAR_TOLERANCE),
        list(attrs.get("bench:prior_studies", [])),
    )


def _order(runs: list[LCRun]) -> list[str]:
    present = {r.arm for r in runs}
    return [a for a in ARMS if a in present] + sorted(present - set(ARMS))


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    se = array.std(ddof=1) / math.sqrt(len(array)) if len(array) > 1 else 0.0
    return float(array.mean()), float(se)


def checkpoints(runs: list[LCRun]) -> list[int]:
    """The checkpoints of :data:`CHECKPOINTS` within every run's budget.

    Args:
        runs: Runs of one problem.
    """
    units = min(len(r.regret) // r.unit for r in runs)
    return [c for c in CHECKPOINTS if c <= units]


def _header(label: str, count: str, runs: list[LCRun]) -> list[str]:
    cps = checkpoints(runs)
    cells = " | ".join(f"@{c}" for c in cps)
    return [f"| {label} | {count} | {cells} |", "|---|---:|" + "---:|" * len(cps)]


def regret_table(runs: list[LCRun]) -> str:
    """Mean regret ± SE at each checkpoint, one row per arm (bold: lowest mean).

    Args:
        runs: Runs of one problem.
    """
    means = {
        a: [_mean_se([r.at(c) for r in runs if r.arm == a]) for c in checkpoints(runs)]
        for a in _order(runs)
    }
    best = [min(m[i][0] for m in means.values()) for i in range(len(checkpoints(runs)))]
    lines = _header("arm", "runs", runs)
    for arm, cells in means.items():
        n = sum(r.arm == arm for r in runs)
        text = [
            f"**{_fmt(m, s)}**" if math.isclose(m, best[i]) else _fmt(m, s)
            for i, (m, s) in enumerate(cells)
        ]
        lines.append(f"| {arm} | {n} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _pairs(runs: list[LCRun], a: str, b: str) -> list[tuple[LCRun, LCRun]]:
    by_key: dict[tuple[str, int], dict[str, LCRun]] = defaultdict(dict)
    for r in runs:
        by_key[(r.target, r.seed)][r.arm] = r
    return [(i[a], i[b]) for _, i in sorted(by_key.items()) if a in i and b in i]


def paired(runs: list[LCRun], a: str, b: str, checkpoint: int) -> tuple[float, float, int]:
    """Mean and SE of ``regret(a) - regret(b)`` at ``checkpoint`` over paired runs.

    Args:
        runs: Runs of one problem.
        a: Arm.
        b: Arm it is compared with.
        checkpoint: Checkpoint in units (full trainings or trials).
    """
    diff = [x.at(checkpoint) - y.at(checkpoint) for x, y in _pairs(runs, a, b)]
    if len(diff) < 2:
        return math.nan, math.nan, len(diff)
    return (*_mean_se(diff), len(diff))


def paired_table(runs: list[LCRun], reference: str) -> str:
    """Paired differences ``reference - other`` at each checkpoint (``*``: at least 2 SE).

    Args:
        runs: Runs of one problem.
        reference: The arm every other one is compared with.
    """
    lines = _header(f"{reference} minus", "pairs", runs)
    for other in [a for a in _order(runs) if a != reference]:
        cells = [paired(runs, reference, other, c) for c in checkpoints(runs)]
        if cells[0][2] < 2:
            continue
        text = [_fmt(m, s) + (" *" if abs(m) >= 2 * s and m != 0 else "") for m, s, _ in cells]
        lines.append(f"| {other} | {cells[0][2]} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _seconds(runs: list[LCRun]) -> str:
    values = [t.user_attrs.get(SECONDS_ATTR, math.nan) for r in runs for t in r.trials]
    finite = [v for v in values if math.isfinite(v)]
    return f"{np.median(finite):.4f}" if finite else "–"


def curve_stats_table(runs: list[LCRun]) -> str:
    """Per arm: trials per run, completed trials, share pruned, repeats, sampler seconds.

    Args:
        runs: Runs of the learning-curve problem.
    """
    lines = [
        "| arm | runs | trials per run | completed per run | pruned share | repeats "
        f"(runs with any) | within {NEAR_TOLERANCE:g} | sampler s/trial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in _order(runs):
        sub = [r for r in runs if r.arm == arm]
        n = [len(r.trials) for r in sub]
        done = [sum(is_completed(t) for t in r.trials) for r in sub]
        pruned = sum(t.state == TrialState.PRUNED for r in sub for t in r.trials) / sum(n)
        rep = sum(len(r.repeats) for r in sub)
        lines.append(
            f"| {arm} | {len(sub)} | {np.mean(n):.1f} | {np.mean(done):.1f} | {pruned:.2f} | "
            f"{rep} ({sum(bool(r.repeats) for r in sub)}) | "
            f"{sum(len(r.near_repeats) for r in sub)} | {_seconds(sub)} |"
        )
    return "\n".join(lines)


def failure_table(runs: list[LCRun]) -> str:
    """Per arm: failed trials (sum over runs, mean ± SE per run), after the prior design,
    by kind, and repeats.

    Args:
        runs: Runs of one failure problem.
    """
    lines = [
        f"| arm | runs | failed (sum) | failed per run | after trial {PRIOR_DESIGN} (sum) | "
        f"after trial {PRIOR_DESIGN} per run (max) | out of memory / NaN | repeats | "
        f"within {NEAR_TOLERANCE:g} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in _order(runs):
        sub = [r for r in runs if r.arm == arm]
        total = [failed_count(r.trials) for r in sub]
        after = [failed_count(r.trials, PRIOR_DESIGN) for r in sub]
        kinds = [t.user_attrs.get(FAILURE_ATTR) for r in sub for t in r.trials if is_failed(t)]
        lines.append(
            f"| {arm} | {len(sub)} | {sum(total)} | {_fmt(*_mean_se(total))} | {sum(after)} | "
            f"{_fmt(*_mean_se(after))} ({max(after)}) | {kinds.count('oom')} / "
            f"{kinds.count('nan')} | {sum(len(r.repeats) for r in sub)} | "
            f"{sum(len(r.near_repeats) for r in sub)} |"
        )
    return "\n".join(lines)


def _mark(met: bool) -> str:
    return "met" if met else "**not met**"


def curve_targets(runs: list[LCRun], reference: str) -> list[tuple[str, str, str]]:
    """``(target, figure, verdict)`` rows of the issue's learning-curve targets.

    Args:
        runs: Runs of the learning-curve problem.
        reference: The MetaBOSampler + Hyperband arm under test.
    """
    rows = []
    for base in ("tpe_hb", "warm_tpe_hb"):
        for c in (c for c in checkpoints(runs) if c >= 2):
            mean, se, n = paired(runs, reference, base, c)
            if n < 2:
                continue
            figure = f"{mean:+.3f} ± {se:.3f} ({n} pairs)"
            rows.append((f"@{c}: below {base}", figure, _mark(mean < 0)))
            if c >= 3:
                rows.append((f"@{c}: below {base} by 2 SE", figure, _mark(-mean >= 2 * se)))
    for c in (c for c in (3, 10) if c in checkpoints(runs)):
        mean, se, n = paired(runs, reference, "metabo", c)
        if n >= 2:
            figure = f"{mean:+.3f} ± {se:.3f} ({n} pairs)"
            rows.append((f"@{c}: at most metabo (no pruner)", figure, _mark(mean <= 0)))
    rows.append(_repeat_row(runs))
    return rows


def _repeat_row(runs: list[LCRun]) -> tuple[str, str, str]:
    ours = [r for r in runs if r.arm.startswith("metabo")]
    count = sum(len(r.repeats) for r in ours)
    figure = f"{count} repeats in {len(ours)} MetaBOSampler runs"
    return ("no trial repeats a pruned or failed configuration", figure, _mark(count == 0))


def failure_targets(runs: list[LCRun], reference: str) -> list[tuple[str, str, str]]:
    """``(target, figure, verdict)`` rows of the issue's failure targets on one problem.

    Args:
        runs: Runs of one failure problem.
        reference: The MetaBOSampler arm under test.
    """
    rows = []
    pairs = _pairs(runs, reference, "tpe")
    if pairs:
        ours = sum(failed_count(a.trials) for a, _ in pairs)
        tpe = sum(failed_count(b.trials) for _, b in pairs)
        figure = f"{ours} vs {tpe} failed trials over {len(pairs)} paired runs"
        rows.append(("at most half of TPE's failed trials", figure, _mark(ours <= 0.5 * tpe)))
    sub = [r for r in runs if r.arm == reference]
    if sub and sub[0].problem == "lcbench_fail":
        after = [failed_count(r.trials, PRIOR_DESIGN) for r in sub]
        mean, se = _mean_se(after)
        figure = f"{mean:.2f} ± {se:.2f} per run (max {max(after)}, {len(sub)} runs)"
        rows.append(("at most 2 failed trials after the prior design", figure, _mark(mean <= 2)))
    rows.append(_repeat_row(runs))
    return rows


def targets_table(rows: list[tuple[str, str, str]], reference: str) -> str:
    """Markdown table of target rows.

    Args:
        rows: ``(target, figure, verdict)``.
        reference: The arm under test.
    """
    lines = [f"| target ({reference}) | figure | verdict |", "|---|---|---|"]
    return "\n".join(lines + [f"| {t} | {f} | {v} |" for t, f, v in rows])


def prior_stats(runs: list[LCRun], storage: str) -> str:
    """Share of the prior studies' trials that were pruned and that failed.

    Args:
        runs: Runs of one problem.
        storage: Storage URL holding the prior studies.
    """
    store = get_storage(storage)
    names = sorted({n for r in runs for n in r.prior_studies})
    trials = [
        t
        for n in names
        for t in store.get_all_trials(store.get_study_id_from_name(n), deepcopy=False)
    ]
    if not trials:
        return "No prior studies."
    pruned = sum(t.state == TrialState.PRUNED for t in trials) / len(trials)
    failed = sum(is_failed(t) for t in trials) / len(trials)
    return (
        f"{len(names)} prior studies, {len(trials)} trials: {pruned:.0%} pruned, "
        f"{failed:.0%} failed."
    )


def plot(runs: list[LCRun], path: Path, title: str, xlabel: str) -> None:
    """Mean regret vs cost spent (in checkpoint units) with 95% bootstrap bands.

    Args:
        runs: Runs of one problem.
        path: PNG file to write.
        title: Figure title.
        xlabel: The x axis label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for arm in _order(runs):
        mat = np.array([r.regret for r in runs if r.arm == arm])
        x = np.arange(1, mat.shape[1] + 1) / runs[0].unit
        low, high = bootstrap_ci(mat)
        style = "-" if arm.startswith("metabo") else "--"
        ax.plot(x, np.maximum(mat.mean(axis=0), 1e-4), style, label=f"{arm} (n={len(mat)})")
        ax.fill_between(x, np.maximum(low, 1e-4), np.maximum(high, 1e-4), alpha=0.15)
    save_figure(fig, ax, path, xlabel, "normalized regret of best completed trial (log)", title)


DEFINITIONS = f"""\
- **Regret @c**: normalized regret (`benchmarks/regret.py`: fixed per-task bounds, clipped to
  [0, 1]) of the best *completed* trial among the trials that finished once c units were
  spent; 1 before the first completed trial. A unit is one full training (52 epochs) on the
  learning-curve problem, one trial on the failure problems. Mean ± SE over (target, seed)
  runs; bold: lowest mean.
- **Paired differences**: per (target, seed), regret of the reference arm minus the other's;
  mean ± SE over the pairs; `*`: at least 2 SE either way.
- **Failed trial**: FAIL (out of memory, raised and caught; or NaN, a diverged run) or a
  non-finite value. **After trial {PRIOR_DESIGN}**: failed among trials {PRIOR_DESIGN + 1}..end
  (MetaBOSampler's first {PRIOR_DESIGN} trials are its prior design).
- **Repeat**: a trial whose configuration is that of an earlier pruned or failed trial of the
  same run (every value within {REPEAT_TOLERANCE:g} of its range, see
  `benchmarks/lc_metrics.py`); "within {NEAR_TOLERANCE:g}": the same with that tolerance
  (repeats included).
"""


def _group_sections(
    runs: list[LCRun], problem: str, storage: str, out: Path, name: str
) -> list[str]:
    sub = [r for r in runs if r.problem == problem]
    curves = sub[0].unit > 1
    png = out / f"{name}-{problem}.png"
    xlabel = "full trainings spent (52 epochs each)" if curves else "trials"
    plot(sub, png, f"{name}: {problem}", xlabel)
    targets, seeds = sorted({r.target for r in sub}), sorted({r.seed for r in sub})
    md = [f"## {problem}", "", f"Targets {', '.join(targets)}; seeds {seeds}.", ""]
    md += [prior_stats(sub, storage), "", f"![regret, {problem}]({png.name})", ""]
    md += ["Mean regret ± SE of the best completed trial:", "", regret_table(sub), ""]
    md += [curve_stats_table(sub) if curves else failure_table(sub), ""]
    references = [a for a in _order(sub) if a.startswith("metabo_hb" if curves else "metabo")]
    for ref in references:
        md += [f"Paired differences, `{ref}` minus:", "", paired_table(sub, ref), ""]
        rows = curve_targets(sub, ref) if curves else failure_targets(sub, ref)
        md += ["Targets of issue 24:", "", targets_table(rows, ref), ""]
    return md


def build_lc_report(
    storage: str,
    selection: Selection,
    out_dir: str | os.PathLike[str] = RESULTS_DIR,
    name: str = "learning-curves",
    command: str = "",
    cache_dir: str | os.PathLike[str] = CACHE_DIR,
    n_samples: int = BOUND_SAMPLES,
) -> Path:
    """Write ``<out_dir>/<name>.md`` and one ``<name>-<problem>.png`` per problem.

    Args:
        storage: Benchmark storage URL.
        selection: Which runs.
        out_dir: Output directory.
        name: Report name (file stem).
        command: The commands that produced the runs, quoted in the report.
        cache_dir: Regret bounds cache directory.
        n_samples: Random configurations per task for the bounds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_lc_runs(storage, selection, cache_dir, n_samples)
    protocol, problems = selection.protocol, selection.problems
    if not runs:
        raise SystemExit(f"No complete runs of protocol {protocol.tag} in {storage}.")
    md = report_header(f"Benchmark report: {name}", command)
    md += [f"{len(runs)} runs, protocol `{protocol.tag}`, optuna {optuna.__version__}.", ""]
    md += ["## Definitions", "", DEFINITIONS]
    if any(p.startswith("lcbench_fail") for p in problems):
        s = failure_shares()
        md += [
            f"Failure wall: {s['random_fail']:.0%} of 2000 random configurations fail "
            f"({s['random_oom']:.0%} out of memory, {s['random_nan']:.0%} NaN); of each task's "
            f"best 1% of them, {s['top_fail']:.0%} fail on average, and most fail on "
            f"{s['top_fail_majority']:.0%} of the 34 tasks.",
            "",
        ]
    skipped = [(a, arm.unavailable()) for a, arm in ARMS.items()]
    md += [f"- `{a}` not run: {why}" for a, why in skipped if why] + [""]
    md += ["## Arms", ""]
    md += [f"- `{a}`: {ARMS[a].description}" for a in _order(runs) if a in ARMS] + [""]
    for problem in [p for p in problems if any(r.problem == p for r in runs)]:
        md += _group_sections(runs, problem, storage, out, name)
    return write_report(out, name, md)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = protocol_parser("python -m benchmarks.lc_report", __doc__ or "")
    parser.add_argument("--name", default=None, help="report file stem (default by protocol)")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--cache-dir", default=str(CACHE_DIR))
    parser.add_argument("--quiet", action="store_true", help="do not print the report")
    args = parse_protocol(parser, argv)
    selection = Selection(
        protocol_of(args), args.problems, args.samplers, args.targets, args.seeds
    )
    command = f"python -m benchmarks.lc_runner --protocol {args.protocol}"
    name = args.name or NAMES[args.protocol]
    path = build_lc_report(args.storage, selection, args.out, name, command, args.cache_dir)
    if not args.quiet:
        print(path.read_text())
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
