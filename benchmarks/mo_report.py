"""Multi-objective and constrained benchmark report: runs what is missing, then writes
``<out>/<name>.md`` and one PNG per problem.

Usage::

    python -m benchmarks.mo_report --mode quick --jobs 2      # 2 targets x 1 seed, budget 10
    python -m benchmarks.mo_report --mode full --jobs 2       # 8 targets x 3 seeds, budget 40
    python -m benchmarks.mo_report --mode full --no-run       # report stored runs only

``--mode quick`` uses 3 priors x 20 trials and writes ``mo-quick.md``; ``--mode full`` uses
10 priors x 50 trials and writes ``mo.md`` (``--name`` overrides). The metrics are defined in
:mod:`benchmarks.mo_regret`; every table is computed from the stored runs of the mode's
protocol only.
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
import sys
import time

import numpy as np
import optuna
from optuna.trial import TrialState

from benchmarks import CACHE_DIR
from benchmarks import RESULTS_DIR
from benchmarks.mo_regret import feasible_bounds
from benchmarks.mo_regret import feasible_regret_curve
from benchmarks.mo_regret import infeasible_share
from benchmarks.mo_regret import REFERENCE_METHOD
from benchmarks.mo_regret import REFERENCE_POINT
from benchmarks.mo_regret import REFERENCE_SAMPLES
from benchmarks.mo_regret import task_reference
from benchmarks.mo_runner import add_protocol_arguments
from benchmarks.mo_runner import mo_plan
from benchmarks.mo_runner import ROLE
from benchmarks.mo_runner import run_mo_all
from benchmarks.mo_samplers import MO_SAMPLERS
from benchmarks.never_worse import never_worse_rows
from benchmarks.never_worse import paired_budget_table
from benchmarks.never_worse import rows_table
from benchmarks.problems.multi_objective import CONSTRAINTS_ATTR
from benchmarks.problems.multi_objective import get_mo_problem
from benchmarks.report import _budgets
from benchmarks.report import _fmt
from benchmarks.report import _order
from benchmarks.report import paired_table
from benchmarks.report import plot_group
from benchmarks.report import rank_table
from benchmarks.report import ratio_table
from benchmarks.report import regret_table
from benchmarks.report import report_header
from benchmarks.report import Run
from benchmarks.report import seconds_table
from benchmarks.report import write_report
from benchmarks.runner import COMPLETE
from benchmarks.runner import get_storage
from benchmarks.runner import Protocol
from benchmarks.samplers import SECONDS_ATTR


MODES = {
    "quick": (Protocol(3, 20, "tpe", 10), "2", 1, "mo-quick"),
    "full": (Protocol(10, 50, "tpe", 40), None, 3, "mo"),
}


@dataclass
class MORun(Run):
    """One stored multi-objective or constrained run (``values`` is ``(n, m)``).

    Args:
        feasible: Per trial, whether every constraint value is ``<= 0``.
        constrained: Whether the problem has constraints.
    """

    feasible: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    constrained: bool = False


def load_mo_runs(
    storage: str,
    problems: Sequence[str] | None = None,
    samplers: Sequence[str] | None = None,
    protocol: str | None = None,
) -> list[MORun]:
    """Load complete multi-objective and constrained runs.

    Args:
        storage: Storage URL.
        problems: Keep only these problems (all when ``None``).
        samplers: Keep only these samplers (all when ``None``).
        protocol: Keep only this protocol tag (all when ``None``).
    """
    store = get_storage(storage)
    runs = []
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        attrs = summary.user_attrs
        if attrs.get("bench:role") != ROLE or not attrs.get(COMPLETE):
            continue
        if (problems and attrs["bench:problem"] not in problems) or (
            samplers and attrs["bench:sampler"] not in samplers
        ):
            continue
        if protocol and attrs["bench:protocol"] != protocol:
            continue
        trials = store.get_all_trials(
            store.get_study_id_from_name(summary.study_name), deepcopy=False
        )
        done = [t for t in trials if t.state.is_finished()]
        m = len(attrs["bench:directions"])
        values = [t.values if t.state == TrialState.COMPLETE else [math.nan] * m for t in done]
        feasible = [
            t.state == TrialState.COMPLETE
            and all(c <= 0 for c in t.user_attrs.get(CONSTRAINTS_ATTR, []))
            for t in done
        ]
        runs.append(
            MORun(
                attrs["bench:problem"],
                attrs["bench:problem"],
                attrs["bench:target"],
                attrs["bench:sampler"],
                attrs["bench:seed"],
                attrs["bench:budget"],
                np.array(values, dtype=float).reshape(len(done), m),
                np.array([t.user_attrs.get(SECONDS_ATTR, math.nan) for t in done]),
                attrs["bench:protocol"],
                prior_studies=list(attrs.get("bench:prior_studies", [])),
                feasible=np.array(feasible, dtype=bool),
                constrained=bool(attrs.get("bench:n_constraints", 0)),
            )
        )
    return runs


def attach_mo_regret(runs: list[MORun], cache_dir: str | os.PathLike[str]) -> None:
    """Fill each run's ``regret``: hypervolume regret, or feasible regret when the problem
    has one objective and constraints (see :mod:`benchmarks.mo_regret`).

    Args:
        runs: Runs, changed in place.
        cache_dir: Cache of the reference fronts and bounds.
    """
    by_task: dict[tuple[str, str], list[MORun]] = defaultdict(list)
    for run in runs:
        by_task[(run.problem, run.target)].append(run)
    for (name, target), task_runs in by_task.items():
        problem = get_mo_problem(name)
        if len(problem.directions) == 1:
            bounds = feasible_bounds(problem, target, cache_dir)
            for run in task_runs:
                run.bounds = bounds
                run.regret = feasible_regret_curve(bounds, run.values[:, 0], run.feasible)
        else:
            reference = task_reference(problem, target, cache_dir)
            for run in task_runs:
                run.regret = reference.regret_curve(run.values, run.feasible)
        for run in task_runs:
            pad = max(run.budget - len(run.regret), 0)
            last = run.regret[-1] if len(run.regret) else 1.0
            run.regret = np.concatenate([run.regret, np.full(pad, last)])


def infeasible_table(runs: list[MORun]) -> str:
    """Mean share of infeasible trials among the first n, ± SE, per sampler.

    Args:
        runs: Runs of one constrained problem.
    """
    budgets = _budgets(list(runs))
    lines = ["| sampler | runs | " + " | ".join(f"n={b}" for b in budgets) + " |"]
    lines.append("|---|---:|" + "---:|" * len(budgets))
    for sampler in _order({r.sampler for r in runs}):
        mine = [r for r in runs if r.sampler == sampler]
        cells = []
        for b in budgets:
            shares = np.array([infeasible_share(r.feasible, b) for r in mine])
            se = shares.std(ddof=1) / math.sqrt(len(shares)) if len(shares) > 1 else 0.0
            cells.append(_fmt(float(shares.mean()), se))
        lines.append(f"| {sampler} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DEFINITIONS = f"""\
- **Hypervolume regret** (problems with several objectives) of a run after n trials on task t:
  `r(n) = (HV_ref - HV(first n trials)) / HV_ref`, clipped to [0, 1]. Every objective is
  oriented to minimization and scaled per task, `z = (s*y - low) / (high - low)`, with `low`
  and `high` the 1% and 99% quantiles of `s*y` over {REFERENCE_SAMPLES} uniformly random
  configurations (synthetic families: the known front's ideal and nadir points). Reference
  point {REFERENCE_POINT} in every scaled objective. `HV_ref` is the hypervolume of the
  reference front: the non-dominated set of those random configurations and of every
  configuration a seeded local search around the front evaluated (synthetic: the known front,
  exact hypervolume). Method `{REFERENCE_METHOD}`; cached per task. Infeasible and failed
  trials count for nothing; r(n) never increases.
- **Feasible regret** (one objective with constraints): `|y*_t - y_best(n)| / |y*_t - y-_t|`,
  clipped to [0, 1], over the feasible trials only (1 before the first feasible trial), with
  `y*_t` / `y-_t` the best / worst feasible value of random configurations and a local search
  that sets infeasible ones aside.
- **Infeasible share**: the share of the first n trials with a constraint value above 0.
- **mean ± SE** over (target, seed) runs, bold the lowest mean; **paired differences**
  `metabo - other` over the same (target, seed), `*` at least two standard errors; **ratios**:
  mean regret of each sampler over the baseline's at the same budget; **rank**: per instance,
  1 = lowest regret, ties averaged.
- **Protocol** `k<K>-p<P><sampler>-b<B>`: leave one task out; K prior tasks per (target, seed),
  each a P-trial study by TPESampler on all objectives (MOTPE; with the constraints_func on
  constrained problems); B trials on the target; all samplers of a (target, seed) see the
  same priors.
"""


NEVER_WORSE = """\
Issue 25's never-worse target, paired over the (target, seed) instances (definitions in
`benchmarks/never_worse.py`): MetaBOSampler is never behind the front warm start (`warm_tpe`)
by more than 1 SE from 3 trials to the last, and ahead of it by 2 SE at 10 trials."""


def build_mo_report(
    storage: str,
    protocol: Protocol,
    out_dir: str | os.PathLike[str] = RESULTS_DIR,
    name: str = "mo",
    problems: Sequence[str] | None = None,
    samplers: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] = CACHE_DIR,
    command: str = "",
) -> Path:
    """Write ``<out_dir>/<name>.md`` and one ``<name>-<problem>.png`` per problem.

    Args:
        storage: Benchmark storage URL.
        protocol: Only runs of this protocol are reported.
        out_dir: Output directory.
        name: Report name (file stem).
        problems: Problems to include (all stored when ``None``).
        samplers: Samplers to include (all stored when ``None``).
        cache_dir: Cache of reference fronts and bounds.
        command: The command quoted in the report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_mo_runs(storage, problems, samplers, protocol.tag)
    if not runs:
        raise SystemExit(f"No complete multi-objective runs in {storage} for the selection.")
    attach_mo_regret(runs, cache_dir)
    title = f"Multi-objective and constrained benchmarks: {name}"
    md = report_header(title, command, "Runs and report produced by:")
    md += [f"{len(runs)} runs, protocol `{protocol.tag}`, optuna {optuna.__version__}.", ""]
    md += ["## Definitions", "", DEFINITIONS]
    requested = samplers or list(MO_SAMPLERS)
    skipped = [(s, MO_SAMPLERS[s].unavailable()) for s in requested if s in MO_SAMPLERS]
    skipped = [(s, why) for s, why in skipped if why]
    if skipped:
        md += ["## Samplers skipped", ""] + [f"- `{s}`: {why}" for s, why in skipped] + [""]
    md += ["## Samplers", ""]
    md += [f"- `{s}`: {MO_SAMPLERS[s].description}" for s in _order({r.sampler for r in runs})]
    md += ["", "### Median sampler seconds per trial", "", seconds_table(list(runs)), ""]
    groups = sorted({r.group for r in runs})
    never_worse = {
        g: never_worse_rows([r for r in runs if r.group == g], "metabo", "warm_tpe")
        for g in groups
    }
    md += ["## Never worse than the front warm start (issue 25)", "", NEVER_WORSE, ""]
    summary = [(g, *row) for g in groups for row in never_worse[g]]
    md += [rows_table(summary, ("problem", "target", "figure", "verdict")), ""]
    for group in groups:
        sub: list[Run] = [r for r in runs if r.group == group]
        problem = get_mo_problem(group)
        constrained = problem.n_constraints > 0
        metric = "feasible regret" if len(problem.directions) == 1 else "hypervolume regret"
        png = out / f"{name}-{group.replace('_', '-')}.png"
        plot_group(sub, png, f"{name}: {group}", ylabel=metric)
        objectives = ", ".join(
            f"{d} {m}" for d, m in zip(problem.directions, problem.metric_names)
        )
        md += [f"## {group}", ""]
        md += [f"Objectives: {objectives}" + (" (with constraints)" if constrained else ""), ""]
        md += [f"Targets {', '.join(sorted({r.target for r in sub}))}; "]
        md[-1] += f"seeds {sorted({r.seed for r in sub})}."
        md += ["", f"![{metric}, {group}]({png.name})", ""]
        md += [f"Mean {metric} ± SE:", "", regret_table(sub), ""]
        if constrained:
            mo_sub = [r for r in runs if r.group == group]
            md += ["Share of infeasible trials ± SE:", "", infeasible_table(mo_sub), ""]
        samplers_here = {r.sampler for r in sub}
        if "metabo" in samplers_here:
            md += ["Paired differences (`*`: at least 2 SE):", "", paired_table(sub), ""]
        if {"metabo", "warm_tpe"} <= samplers_here:
            table = paired_budget_table(sub, "metabo", "warm_tpe")
            md += ["Paired against the front warm start (issue 25):", "", table, ""]
        for base, label in (("gp", "GPSampler"), ("warm_tpe", "warm-start TPE")):
            if base in samplers_here:
                md += [f"Mean regret relative to {label}:", "", ratio_table(sub, base), ""]
        md += ["Average rank:", "", rank_table(sub), ""]
    return write_report(out, name, md)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mo_report", description=__doc__)
    add_protocol_arguments(parser)
    parser.add_argument("--mode", choices=sorted(MODES), default=None)
    parser.add_argument("--no-run", action="store_true", help="report stored runs only")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--name", default=None)
    parser.add_argument("--cache-dir", default=str(CACHE_DIR))
    args = parser.parse_args(argv)
    protocol = Protocol(args.n_priors, args.prior_trials, args.prior_sampler, args.budget)
    targets, seeds, name = args.targets, args.seeds, args.name or "mo-report"
    if args.mode:
        protocol, mode_targets, seeds, mode_name = MODES[args.mode]
        targets, name = args.targets or mode_targets, args.name or mode_name
    problems, samplers = args.problems.split(","), args.samplers.split(",")
    start = time.perf_counter()
    if not args.no_run:
        keys = mo_plan(problems, samplers, range(seeds), targets)
        results = run_mo_all(keys, protocol, args.storage, args.jobs)
        failed = [r for r in results if r.startswith("FAILED")]
        print(f"[bench] {len(keys)} runs, {len(failed)} failed", file=sys.stderr)
    command = "python -m benchmarks.mo_report " + " ".join(argv or sys.argv[1:])
    path = build_mo_report(
        args.storage, protocol, args.out, name, problems, samplers, args.cache_dir, command
    )
    print(f"{path} ({time.perf_counter() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
