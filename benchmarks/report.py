"""Aggregate stored benchmark runs into a Markdown report and PNG regret plots.

Usage: ``python -m benchmarks.report --storage sqlite:///benchmarks/.cache/bench.db --name
lcbench --problems lcbench`` writes ``<out>/<name>.md`` and ``<out>/<name>-<problem>.png``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from benchmarks import CACHE_DIR
from benchmarks import DEFAULT_STORAGE
from benchmarks import RESULTS_DIR
from benchmarks.never_worse import issue_rows
from benchmarks.never_worse import paired_budget_table
from benchmarks.never_worse import rows_table
from benchmarks.never_worse import seconds_row
from benchmarks.problems import get_problem
from benchmarks.problems import Problem
from benchmarks.problems import SYNTHETIC
from benchmarks.regret import best_so_far
from benchmarks.regret import BOUND_SAMPLES
from benchmarks.regret import Bounds
from benchmarks.regret import BOUNDS_METHOD
from benchmarks.regret import task_bounds
from benchmarks.runner import COMPLETE
from benchmarks.runner import get_storage
from benchmarks.runner import STORAGE_ENV
from benchmarks.samplers import BASELINES
from benchmarks.samplers import SAMPLERS
from benchmarks.samplers import SECONDS_ATTR
from benchmarks.targets import target_table


BUDGETS = (1, 3, 5, 10, 20, 40, 100, 200, 300, 1000)


@dataclass
class Run:
    """One stored run.

    Args:
        group: ``problem`` or ``problem [protocol]`` when several protocols are stored.
        problem: Problem name.
        target: Target task id.
        sampler: Sampler name.
        seed: Seed.
        budget: Trial budget of the protocol.
        values: Objective values in trial order.
        seconds: Sampler seconds per trial.
    """

    group: str
    problem: str
    target: str
    sampler: str
    seed: int
    budget: int
    values: np.ndarray
    seconds: np.ndarray
    protocol: str = ""
    regret: np.ndarray = field(default_factory=lambda: np.zeros(0))
    prior_studies: list[str] = field(default_factory=list)
    bounds: Bounds | None = None


def load_runs(
    storage: str, problems: Sequence[str] | None = None, samplers: Sequence[str] | None = None
) -> list[Run]:
    """Load complete runs from ``storage``.

    Args:
        storage: Storage URL.
        problems: Keep only these problems (all when ``None``).
        samplers: Keep only these samplers (all when ``None``).
    """
    store = get_storage(storage)
    runs, protocols = [], defaultdict(set)
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        attrs = summary.user_attrs
        if attrs.get("bench:role") != "run" or not attrs.get(COMPLETE):
            continue
        if (problems and attrs["bench:problem"] not in problems) or (
            samplers and attrs["bench:sampler"] not in samplers
        ):
            continue
        trials = store.get_all_trials(
            store.get_study_id_from_name(summary.study_name), deepcopy=False
        )
        done = [t for t in trials if t.state.is_finished()]
        values = [t.value if t.state == TrialState.COMPLETE else math.nan for t in done]
        seconds = [t.user_attrs.get(SECONDS_ATTR, math.nan) for t in done]
        protocols[attrs["bench:problem"]].add(attrs["bench:protocol"])
        run = Run(
            attrs["bench:problem"],
            attrs["bench:problem"],
            attrs["bench:target"],
            attrs["bench:sampler"],
            attrs["bench:seed"],
            attrs["bench:budget"],
            np.array(values, dtype=float),
            np.array(seconds, dtype=float),
            attrs["bench:protocol"],
            prior_studies=list(attrs.get("bench:prior_studies", [])),
        )
        runs.append(run)
    for run in runs:  # show the protocol only where a problem has several
        if len(protocols[run.problem]) > 1:
            run.group = f"{run.problem} [{run.protocol}]"
    return runs


def attach_regret(runs: list[Run], cache_dir: str | os.PathLike[str], n_samples: int) -> None:
    """Compute each run's normalized regret curve (see :mod:`benchmarks.regret`).

    The bounds of a task come from the problem alone (cached), never from the runs, so a run's
    regret does not change when other runs are added.

    Args:
        runs: Runs; ``regret`` is filled in place.
        cache_dir: Bounds cache directory.
        n_samples: Random configurations per task for the bounds.
    """
    by_task: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        by_task[(run.problem, run.target)].append(run)
    for (problem_name, target), task_runs in by_task.items():
        problem = get_problem(problem_name)
        bounds = task_bounds(problem, target, cache_dir, n_samples)
        for run in task_runs:
            run.bounds = bounds
            curve = bounds.regret(best_so_far(run.values, problem.direction))
            pad = max(run.budget - len(curve), 0)
            run.regret = np.concatenate([curve, np.full(pad, curve[-1] if len(curve) else 1.0)])


def beyond_bounds(runs: list[Run]) -> list[Run]:
    """The runs that found a better value than their task's best known value (regret 0).

    Args:
        runs: Runs with regret bounds attached (:func:`attach_regret`).
    """
    beyond = []
    for run in runs:
        if run.bounds is None or not np.isfinite(run.values).any():
            continue
        sign = -1.0 if run.bounds.direction == "maximize" else 1.0
        if sign * np.nanmin(sign * run.values) < sign * run.bounds.best:
            beyond.append(run)
    return beyond


def _order(names: set[str]) -> list[str]:
    known = [s for s in SAMPLERS if s in names]
    return known + sorted(names - set(known))


def _num(x: float) -> str:
    return f"{x:.3f}" if x == 0 or abs(x) >= 0.001 else f"{x:.0e}"


def _fmt(mean: float, se: float) -> str:
    return f"{_num(mean)} ± {_num(se)}"


def _budgets(runs: list[Run]) -> list[int]:
    top = min(r.budget for r in runs)
    return [b for b in BUDGETS if b <= top] or [top]


def regret_table(runs: list[Run]) -> str:
    """Mean normalized regret ± standard error at each budget, one row per sampler.

    Args:
        runs: Runs of one group.
    """
    budgets = _budgets(runs)
    rows, means = [], {}
    for sampler in _order({r.sampler for r in runs}):
        mat = np.array([r.regret[: budgets[-1]] for r in runs if r.sampler == sampler])
        means[sampler] = [mat[:, b - 1].mean() for b in budgets]
        ses = [
            mat[:, b - 1].std(ddof=1) / math.sqrt(len(mat)) if len(mat) > 1 else 0.0
            for b in budgets
        ]
        rows.append((sampler, len(mat), means[sampler], ses))
    best = [min(means[s][i] for s in means) for i in range(len(budgets))]
    lines = ["| sampler | runs | " + " | ".join(f"n={b}" for b in budgets) + " |"]
    lines.append("|---|---:|" + "---:|" * len(budgets))
    for sampler, n, mean, se in rows:
        cells = [
            f"**{_fmt(m, s)}**" if math.isclose(m, best[i]) else _fmt(m, s)
            for i, (m, s) in enumerate(zip(mean, se))
        ]
        lines.append(f"| {sampler} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(runs: list[Run], reference: str = "metabo") -> str:
    """Paired differences ``reference - other`` in regret, mean ± SE over shared instances.

    A negative mean favours ``reference``; ``*`` marks a difference of at least two standard
    errors either way.

    Args:
        runs: Runs of one group.
        reference: The sampler every other one is compared with.
    """
    budgets = _budgets(runs)
    instances = [i for i in _instances(runs).values() if reference in i]
    others = [s for s in _order({r.sampler for r in runs}) if s != reference]
    lines = [f"| {reference} minus | pairs | " + " | ".join(f"n={b}" for b in budgets) + " |"]
    lines.append("|---|---:|" + "---:|" * len(budgets))
    for other in others:
        pairs = [i for i in instances if other in i]
        if len(pairs) < 2:
            continue
        diff = np.array(
            [[i[reference].regret[b - 1] - i[other].regret[b - 1] for b in budgets] for i in pairs]
        )
        mean, se = diff.mean(axis=0), diff.std(axis=0, ddof=1) / math.sqrt(len(pairs))
        cells = [
            _fmt(m, e) + (" *" if abs(m) >= 2 * e and m != 0 else "") for m, e in zip(mean, se)
        ]
        lines.append(f"| {other} | {len(pairs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(runs: list[Run], baseline: str = "gp") -> str:
    """Each sampler's mean regret divided by ``baseline``'s at each budget.

    Args:
        runs: Runs of one group.
        baseline: The sampler in the denominator.
    """
    budgets = _budgets(runs)

    def means(sampler: str) -> np.ndarray:
        mat = np.array([r.regret[: budgets[-1]] for r in runs if r.sampler == sampler])
        return mat[:, [b - 1 for b in budgets]].mean(axis=0)

    base = means(baseline)
    lines = [f"| sampler / {baseline} | " + " | ".join(f"n={b}" for b in budgets) + " |"]
    lines.append("|---|" + "---:|" * len(budgets))
    for sampler in _order({r.sampler for r in runs if r.sampler != baseline}):
        ratio = means(sampler) / np.maximum(base, 1e-12)
        lines.append(f"| {sampler} | " + " | ".join(f"{v:.2f}" for v in ratio) + " |")
    return "\n".join(lines)


def _instances(runs: list[Run]) -> dict[tuple[str, str, int], dict[str, Run]]:
    inst: dict[tuple[str, str, int], dict[str, Run]] = defaultdict(dict)
    for run in runs:
        inst[(run.group, run.target, run.seed)][run.sampler] = run
    return inst


def rank_table(runs: list[Run]) -> str:
    """Average rank (1 = lowest regret, ties averaged) per budget over (target, seed) pairs.

    Args:
        runs: Runs of one or several groups.
    """
    from scipy.stats import rankdata

    budgets = _budgets(runs)
    samplers = _order({r.sampler for r in runs})
    ranks: dict[str, list[list[float]]] = {s: [] for s in samplers}
    for by_sampler in _instances(runs).values():
        names = [s for s in samplers if s in by_sampler]
        mat = np.array([[by_sampler[s].regret[b - 1] for b in budgets] for s in names])
        rk = np.apply_along_axis(rankdata, 0, mat)
        for s, row in zip(names, rk):
            ranks[s].append(list(row))
    lines = ["| sampler | instances | " + " | ".join(f"n={b}" for b in budgets) + " |"]
    lines.append("|---|---:|" + "---:|" * len(budgets))
    for s in samplers:
        avg = np.mean(ranks[s], axis=0)
        lines.append(f"| {s} | {len(ranks[s])} | " + " | ".join(f"{a:.2f}" for a in avg) + " |")
    return "\n".join(lines)


def reach_table(runs: list[Run]) -> str:
    """Trials each sampler needs to reach each baseline's final regret on the same instance.

    Args:
        runs: Runs of one or several groups.
    """
    samplers = _order({r.sampler for r in runs})
    baselines = [b for b in BASELINES if b in samplers]
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for by_sampler in _instances(runs).values():
        for base in baselines:
            if base not in by_sampler:
                continue
            target = by_sampler[base].regret[-1]
            for s, run in by_sampler.items():
                hit = np.nonzero(run.regret <= target + 1e-12)[0]
                cells[(s, base)].append(float(hit[0] + 1) if hit.size else math.inf)
    lines = ["| sampler | " + " | ".join(f"to reach {b}@end" for b in baselines) + " |"]
    lines.append("|---|" + "---:|" * len(baselines))
    for s in samplers:
        row = [_reach_cell(np.array(cells[(s, base)])) for base in baselines]
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _reach_cell(vals: np.ndarray) -> str:
    if vals.size == 0:
        return "–"
    med = float(np.median(vals))
    text = ">budget" if math.isinf(med) else f"{med:g}"
    return f"{text} ({np.isfinite(vals).mean():.0%})"


def seconds_table(runs: list[Run]) -> str:
    """Median sampler seconds per trial, per sampler and group.

    Args:
        runs: Runs of one or several groups.
    """
    groups = sorted({r.group for r in runs})
    lines = ["| sampler | " + " | ".join(groups) + " | all |"]
    lines.append("|---|" + "---:|" * (len(groups) + 1))
    for s in _order({r.sampler for r in runs}):
        row = []
        for g in [*groups, None]:
            secs = [r.seconds for r in runs if r.sampler == s and (g is None or r.group == g)]
            vals = np.concatenate(secs) if secs else np.array([])
            vals = vals[np.isfinite(vals)]
            row.append(f"{np.median(vals):.4f}" if vals.size else "–")
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def bootstrap_ci(
    mat: np.ndarray, n_boot: int = 1000, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap confidence interval of the mean over runs (rows), per column.

    Unlike mean ± 1.96 SE it never extends below zero, which suits a log-scale regret plot.

    Args:
        mat: Regret curves, one row per run.
        n_boot: Bootstrap resamples (seeded, so plots are reproducible).
        level: Confidence level.
    """
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(mat), size=(n_boot, len(mat)))
    means = mat[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def plot_group(runs: list[Run], path: Path, title: str, ylabel: str = "normalized regret") -> None:
    """Plot mean normalized regret vs trials with 95% bootstrap confidence bands of the mean.

    Args:
        runs: Runs of one group.
        path: PNG file to write.
        title: Figure title.
        ylabel: What the regret curves measure (y axis label, before the scale note).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = min(r.budget for r in runs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    x = np.arange(1, budget + 1)
    for sampler in _order({r.sampler for r in runs}):
        mat = np.array([r.regret[:budget] for r in runs if r.sampler == sampler])
        low, high = bootstrap_ci(mat)
        line = "--" if sampler in BASELINES or sampler == "meta_learn_tpe" else "-"
        ax.plot(x, np.maximum(mat.mean(axis=0), 1e-4), line, label=f"{sampler} (n={len(mat)})")
        ax.fill_between(x, np.maximum(low, 1e-4), np.maximum(high, 1e-4), alpha=0.2)
    save_figure(fig, ax, path, "trials on the target task", f"{ylabel} (log, floor 1e-4)", title)


def save_figure(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Finish a figure of mean curves with bootstrap bands (log y axis, grid, legend), write
    it and close it.

    Args:
        fig: The matplotlib figure.
        ax: Its axes.
        path: PNG file to write.
        xlabel: The x axis label.
        ylabel: The y axis label.
        title: Figure title.
    """
    import matplotlib.pyplot as plt

    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, title="mean; band: 95% bootstrap CI", title_fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def report_header(title: str, command: str, produced_by: str = "Runs produced by:") -> list[str]:
    """The first Markdown lines of a report: its title and the quoted command, if any.

    Args:
        title: The report's title.
        command: The command that produced the runs (no quote when empty).
        produced_by: The line that introduces the command.
    """
    md = [f"# {title}", ""]
    if command:
        md += [produced_by, "", f"```\n{command}\n```", ""]
    return md


def write_report(out: Path, name: str, md: list[str]) -> Path:
    """Write the Markdown lines ``md`` to ``<out>/<name>.md``; return its path.

    Args:
        out: Output directory.
        name: Report name (file stem).
        md: The report's lines.
    """
    path = out / f"{name}.md"
    path.write_text("\n".join(md))
    return path


DEFINITIONS = """\
- **Normalized regret** of a run after n trials on target task t:
  `r(n) = |y*_t - y_best(n)| / |y*_t - y-_t|`, clipped to [0, 1], where `y_best(n)` is the
  best value among the run's first n trials, `y*_t` the best known and `y-_t` the worst known
  value of t. The bounds come from the problem, never from the runs, so adding runs changes
  no number: `y-_t` is the worst of {n_samples} uniformly random configurations, `y*_t` the
  best of them refined by seeded local searches, or the analytic optimum where known
  (method `{method}`), computed once per task and cached as JSON. 0 = best known value found
  (or beaten), 1 = no better than the worst known value.
- **mean ± SE**: mean over (target, seed) runs and its standard error (std / sqrt(runs)).
  Bold: the lowest mean in the column. Plots show the mean curve with a 95% percentile
  bootstrap confidence band of the mean (log scale, floored at 1e-4).
- **Average rank**: per (target, seed) instance, samplers are ranked by regret at n trials
  (1 = best, ties averaged), then averaged over instances.
- **Trials to reach X@end**: on each instance, the first trial at which the sampler's regret
  is at most baseline X's regret after the full budget; the median over instances, with the
  share of instances where it was reached (`>budget`: median not reached).
- **Sampler seconds per trial**: wall time spent inside the sampler (search-space inference,
  sampling, before/after-trial hooks), not in the objective; median over all trials.
- **Protocol** `k<K>-p<P><sampler>-b<B>`: leave one task out; K prior tasks drawn per
  (target, seed) from the other tasks, each a P-trial study by the prior sampler (seeded);
  B trials on the target. All samplers of a (target, seed) see the same prior studies.
"""


REUSE_FLOOR = (
    "the regret of the best prior configuration re-evaluated on the target (regret bounds as "
    "above; parameters the priors held take their held values, parameters the target holds "
    "take the target's). A sampler that only re-uses prior configurations cannot get below it."
)


def _prior_configurations(
    problem: Problem, store: BaseStorage, names: list[str]
) -> tuple[list[Any], list[Any]]:
    """Each prior study's best configuration and every completed one, mapped to the target."""
    incumbents, everything = [], []
    for name in names:
        study = optuna.load_study(study_name=name, storage=store)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if done:
            incumbents.append(problem.prior_to_target(study.best_trial.params))
            everything += [problem.prior_to_target(t.params) for t in done]
    return incumbents, everything


def reuse_floors(runs: list[Run], storage: str) -> dict[str, dict[tuple[str, str, int], float]]:
    """Regret of the prior studies' configurations re-evaluated on the target, per instance.

    A sampler that only re-uses prior configurations can do no better than the best of them,
    so this is the floor of warm-starting by reuse; getting below it takes new configurations.

    Args:
        runs: Runs with regret bounds attached (:func:`attach_regret`).
        storage: Storage URL holding the prior studies.

    Returns:
        ``{"incumbents": {...}, "all": {...}}``: for each (group, target, seed) instance with
        priors, the regret of the best of the prior studies' best configurations, and of all
        their completed configurations.
    """
    store = get_storage(storage)
    floors: dict[str, dict[tuple[str, str, int], float]] = {"incumbents": {}, "all": {}}
    for key, instance in _instances(runs).items():
        run = next((r for r in instance.values() if r.prior_studies and r.bounds), None)
        if run is None or run.bounds is None:
            continue
        problem = get_problem(run.problem)
        configurations = _prior_configurations(problem, store, run.prior_studies)
        for kind, params in zip(("incumbents", "all"), configurations):
            if params:
                try:
                    values = problem.evaluate_many(run.target, params)
                except NotImplementedError:  # e.g. real training, only through its objective
                    return floors
                best = best_so_far(values, problem.direction)[-1:]
                floors[kind][key] = float(run.bounds.regret(best)[0])
    return floors


def reuse_floor_table(floors: dict[str, dict[tuple[str, str, int], float]]) -> str:
    """Markdown table of :func:`reuse_floors` (mean ± SE over instances).

    Args:
        floors: What :func:`reuse_floors` returns.
    """
    if not floors["all"]:
        return (
            "Not available: no runs with prior studies, or a problem that only evaluates "
            "configurations through its objective."
        )
    lines = ["| re-evaluated on the target | instances | regret |", "|---|---:|---:|"]
    labels = {"incumbents": "each prior study's best", "all": "every prior trial"}
    for kind, values in floors.items():
        array = np.array(list(values.values()))
        se = array.std(ddof=1) / math.sqrt(len(array)) if len(array) > 1 else 0.0
        lines.append(f"| {labels[kind]} | {len(array)} | {_fmt(float(array.mean()), se)} |")
    return "\n".join(lines)


ISSUE_25 = """\
The targets of issue 25 that the runs can check, each paired over the (target, seed)
instances (definitions in `benchmarks/never_worse.py`): on real families MetaBOSampler is
never behind warm-start TPE by more than 1 SE from 3 trials on and ahead by 2 SE at 10; on
LCBench at 5 trials at most the best prior incumbent re-evaluated; with priors that optimized
the negated metric at most 1.5x GPSampler at 5, 10 and 20 trials and at most GPSampler at 40;
on the synthetic negative-transfer family at most 2x GPSampler at 40; with `--before`, not
behind the previous version by more than 1 SE. The seconds rows are harness timings (noisy);
the cost target is measured by `python -m benchmarks.bench_overhead`."""
BEFORE = "metabo@before"


def load_before(
    storage: str, runs: list[Run], cache_dir: str | os.PathLike[str], n_samples: int
) -> list[Run]:
    """The previous version's ``metabo`` runs of the problems and protocols of ``runs``,
    renamed :data:`BEFORE` and grouped like ``runs``, with regret attached.

    Args:
        storage: Storage URL of the previous version's runs.
        runs: The runs of the report.
        cache_dir: Bounds cache directory.
        n_samples: Random configurations per task for the bounds.
    """
    groups = {(r.problem, r.protocol): r.group for r in runs}
    previous = load_runs(storage, sorted({r.problem for r in runs}), ["metabo"])
    previous = [r for r in previous if (r.problem, r.protocol) in groups]
    for run in previous:
        run.group, run.sampler = groups[(run.problem, run.protocol)], BEFORE
    attach_regret(previous, cache_dir, n_samples)
    return previous


def _median_seconds(runs: list[Run], sampler: str) -> float:
    """Median seconds per trial over the last half of each run (the model phase)."""
    secs = [r.seconds[len(r.seconds) // 2 :] for r in runs if r.sampler == sampler]
    vals = np.concatenate(secs) if secs else np.array([])
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else math.nan


def _issue_rows(
    sub: list[Run],
    previous: list[Run],
    floors: dict[str, dict[tuple[str, str, int], float]],
) -> list[tuple[str, str, str]]:
    """The issue-25 rows of one group (``sub``), with the previous version's runs if any."""
    if not any(r.sampler == "metabo" for r in sub):
        return []
    mine = [r for r in previous if r.group == sub[0].group]
    problem = get_problem(sub[0].problem)
    both = sub + mine
    rows = issue_rows(
        problem.name, problem.family, both, floors["incumbents"], before=BEFORE if mine else None
    )
    seconds = {s: _median_seconds(both, s) for s in ("metabo", "gp", BEFORE)}
    return rows + seconds_row(seconds, "metabo")


def build_report(
    storage: str,
    out_dir: str | os.PathLike[str] = RESULTS_DIR,
    name: str = "report",
    problems: Sequence[str] | None = None,
    samplers: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] = CACHE_DIR,
    n_samples: int = BOUND_SAMPLES,
    command: str = "",
    before: str | None = None,
) -> Path:
    """Write ``<out_dir>/<name>.md`` and one ``<name>-<group>.png`` per problem group.

    Args:
        storage: Benchmark storage URL.
        out_dir: Output directory.
        name: Report name (file stem).
        problems: Problems to include (all stored when ``None``).
        samplers: Samplers to include (all stored when ``None``).
        cache_dir: Bounds cache directory.
        n_samples: Random configurations per task for regret bounds.
        command: The command that produced the runs, quoted in the report.
        before: Storage URL of the previous version's ``metabo`` runs, for the no-loss
            target of issue 25 (paired by problem, protocol, target and seed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(storage, problems, samplers)
    if not runs:
        raise SystemExit(f"No complete benchmark runs in {storage} for the selection.")
    attach_regret(runs, cache_dir, n_samples)
    previous = load_before(before, runs, cache_dir, n_samples) if before else []
    md = report_header(f"Benchmark report: {name}", command)
    md += [f"{len(runs)} runs, optuna {optuna.__version__}.", "", "## Definitions", ""]
    md += [DEFINITIONS.format(n_samples=n_samples, method=BOUNDS_METHOD)]
    beyond = beyond_bounds(runs)
    which = sorted({f"{r.sampler} on {r.problem} {r.target}" for r in beyond})
    md += [
        f"Runs that beat their task's best known value (regret 0 from then on): {len(beyond)} "
        f"of {len(runs)}" + (f" ({', '.join(which)})" if which else "") + ".",
        "",
    ]
    requested = samplers or list(SAMPLERS)
    skipped = [(s, SAMPLERS[s].unavailable()) for s in requested if s in SAMPLERS]
    skipped = [(s, why) for s, why in skipped if why]
    if skipped:
        md += ["## Samplers skipped", ""]
        md += [f"- `{s}`: {why}" for s, why in skipped] + [""]
    md += ["## Samplers", ""]
    md += [
        f"- `{s}`: {SAMPLERS[s].description}"
        for s in _order({r.sampler for r in runs})
        if s in SAMPLERS
    ]
    groups = sorted({r.group for r in runs})
    md += ["", "## All problems", "", "### Average rank", "", rank_table(runs), ""]
    md += ["### Trials to reach each baseline's final regret", "", reach_table(runs), ""]
    md += ["### Median sampler seconds per trial", "", seconds_table(runs), ""]
    floors_of = {g: reuse_floors([r for r in runs if r.group == g], storage) for g in groups}
    issue = {
        g: _issue_rows([r for r in runs if r.group == g], previous, floors_of[g]) for g in groups
    }
    summary = [(g, *row) for g in groups for row in issue[g]]
    md += ["## Transfer that never costs (issue 25)", "", ISSUE_25, ""]
    md += [rows_table(summary, ("problem", "target", "figure", "verdict")), ""]
    for group in groups:
        sub = [r for r in runs if r.group == group]
        slug = "".join(c if c.isalnum() else "-" for c in group).strip("-")
        png = out / f"{name}-{slug}.png"
        plot_group(sub, png, f"{name}: {group}")
        targets = sorted({r.target for r in sub})
        seeds = sorted({r.seed for r in sub})
        md += [f"## {group}", ""]
        md += [f"Protocol `{sub[0].protocol}`; targets {', '.join(targets)}; seeds {seeds}.", ""]
        md += [f"![normalized regret, {group}]({png.name})", ""]
        md += ["Mean normalized regret ± SE:", "", regret_table(sub), ""]
        if any(r.sampler == "metabo" for r in sub):
            md += ["Paired differences (`*`: at least 2 SE):", "", paired_table(sub), ""]
        if {"metabo", "warm_tpe"} <= {r.sampler for r in sub}:
            table = paired_budget_table(sub, "metabo", "warm_tpe")
            md += ["Paired against warm-start TPE (issue 25):", "", table, ""]
        if issue[group]:
            md += ["Targets of issue 25:", ""]
            md += [rows_table(issue[group], ("target", "figure", "verdict")), ""]
        if any(r.sampler == "gp" for r in sub):
            md += ["Mean regret relative to GPSampler:", "", ratio_table(sub), ""]
        md += ["Average rank:", "", rank_table(sub), ""]
        md += ["Trials to reach each baseline's final regret:", "", reach_table(sub), ""]
        floors = floors_of[group]
        md += [f"Prior reuse floor: {REUSE_FLOOR}", "", reuse_floor_table(floors), ""]
        if any(r.sampler == "metabo" for r in sub):
            oracle = floors["incumbents"]
            tolerance = 1.1 if sub[0].problem in SYNTHETIC else 1.0
            md += ["Few-trial targets:", "", target_table(sub, oracle, "metabo", tolerance), ""]
    return write_report(out, name, md)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE))
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--name", default="report")
    parser.add_argument(
        "--problems", default=None, help="comma list, 'synthetic', 'hetero' or 'all'"
    )
    parser.add_argument("--samplers", default=None, help="comma list (default: all stored)")
    parser.add_argument("--cache-dir", default=str(CACHE_DIR))
    parser.add_argument("--bound-samples", type=int, default=BOUND_SAMPLES)
    parser.add_argument("--command", default="", help="command quoted in the report")
    parser.add_argument(
        "--before", default=None, help="storage URL of the previous version's metabo runs"
    )
    args = parser.parse_args(argv)
    from benchmarks.runner import expand_problems

    problems = expand_problems(args.problems) if args.problems else None
    samplers = args.samplers.split(",") if args.samplers else None
    path = build_report(
        args.storage,
        args.out,
        args.name,
        problems,
        samplers,
        args.cache_dir,
        args.bound_samples,
        args.command,
        args.before,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
