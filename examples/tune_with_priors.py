"""Step 2 of the transfer workflow: tune a new task with MetaBO priors and with TPE side by side.

MetaBO reads the history of ``examples.build_history`` (``--prior-storage``, studies matching
``--prior-studies``, default ``<family>-*``) and starts the new task where those studies ended;
TPE starts from scratch. For each seed both run ``--n-trials`` trials of the same objective, in
studies named ``tune-<family>-<dataset>-<sampler>-seed<k>`` (kept out of ``<family>-*``). The
script prints the best-so-far validation metric against the number of trials, the trials each
sampler needed to reach ``--target``, and the optuna-dashboard command (MetaBO studies get the
transfer note and plots of ``optuna_metabo.DashboardCallback``).

Examples::

    python -m examples.build_history                      # once: the cnn history on digits
    python -m examples.tune_with_priors --seeds 0 1 2 --target 0.9
    python -m examples.tune_with_priors --family bert --dataset stdlib_docs --n-trials 15
    python -m examples.tune_with_priors --family resnet --dataset cifar10 --device cuda
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import fnmatch
import json
import math
from pathlib import Path
from typing import Any

import optuna

from examples import families
from examples.common import cli
from optuna_metabo import DashboardCallback


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Builds the parser; the options of the family given in ``argv`` are included.

    Args:
        argv: Command-line arguments, read for ``--family`` only.

    Returns:
        The parser.
    """
    parser, module, family = families.workflow_parser(
        "python -m examples.tune_with_priors", __doc__, argv
    )
    families.add_family_arguments(parser, family)
    parser.set_defaults(dataset=module.NEW_DATASET)
    group = parser.add_argument_group("comparison")
    group.add_argument("--n-trials", type=int, default=20, help="trials per sampler and seed")
    group.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one MetaBO and one TPE study each"
    )
    group.add_argument("--samplers", nargs="+", choices=cli.SAMPLERS, default=["metabo", "tpe"])
    group.add_argument("--prior-storage", default="sqlite:///history.db")
    group.add_argument(
        "--prior-studies", nargs="+", help="names or globs of the priors (default: <family>-*)"
    )
    group.add_argument(
        "--storage",
        default="sqlite:///tune_with_priors.db",
        help="storage of the new studies (may be the prior storage)",
    )
    group.add_argument("--pruner", choices=cli.PRUNERS, default="median")
    group.add_argument(
        "--target",
        type=float,
        nargs="+",
        default=[],
        help="report the trials each sampler needs to reach these metric values",
    )
    group.add_argument("--summary-json", type=Path, help="write curves and results here")
    return parser


def resolve_prior_studies(patterns: Sequence[str], prior_storage: str, exclude: str) -> list[str]:
    """Returns the prior patterns to give MetaBO, leaving out the new task's own study.

    If the history holds a study of the new task itself (``exclude``), transfer from it would
    be leakage: the patterns are then expanded to explicit names without it.

    Args:
        patterns: Study names or globs.
        prior_storage: Storage of the prior studies.
        exclude: Name of the new task's history study.

    Returns:
        ``patterns`` unchanged, or the matching names without ``exclude``.

    Raises:
        SystemExit: If no study of the history matches.
    """
    names = optuna.get_all_study_names(prior_storage)
    matches = sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))
    if exclude in matches:
        print(f"Leaving the new task's own history study {exclude!r} out of the priors.")
        matches.remove(exclude)
        patterns = matches
    if not matches:
        raise SystemExit(
            f"No study in {prior_storage} matches {list(patterns)}; run "
            "`python -m examples.build_history` first."
        )
    print(f"Priors: {len(matches)} studies: {', '.join(matches)}")
    return list(patterns)


def trials_to_target(curve: Sequence[float], target: float) -> int | None:
    """Returns the 1-based trial at which ``curve`` first reaches ``target`` (``None``: never).

    Args:
        curve: Best-so-far values, one per trial.
        target: The metric to reach.

    Returns:
        The number of trials needed, or ``None``.
    """
    return next((i + 1 for i, v in enumerate(curve) if not math.isnan(v) and v >= target), None)


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the comparison studies and returns their curves.

    Args:
        args: Parsed arguments of :func:`build_parser`.

    Returns:
        ``{"curves": {sampler: {seed: [...]}}, "trials_to_target": {target: {sampler: {seed:
        n}}}, ...}``; ``n`` is ``None`` when the target was not reached.
    """
    patterns = args.prior_studies or [f"{args.family}-*"]
    if "metabo" in args.samplers:
        patterns = resolve_prior_studies(
            patterns, args.prior_storage, families.study_name(args.family, args.dataset)
        )
    curves: dict[str, dict[int, list[float]]] = {s: {} for s in args.samplers}
    for seed in args.seeds:
        objective = families.objective_from_args(args.family, args, seed=seed)
        for sampler_name in args.samplers:
            name = f"tune-{args.family}-{args.dataset}-{sampler_name}-seed{seed}"
            study = optuna.create_study(
                study_name=name,
                storage=args.storage,
                direction="maximize",
                sampler=cli.create_sampler(
                    sampler_name, seed, prior_studies=patterns, prior_storage=args.prior_storage
                ),
                pruner=cli.create_pruner(args.pruner),
                load_if_exists=True,
            )
            remaining = max(args.n_trials - len(study.trials), 0)
            print(f"[{name}] running {remaining} trials.", flush=True)
            shown = [DashboardCallback()] if sampler_name == "metabo" else []
            study.optimize(objective, n_trials=remaining, callbacks=shown)
            curves[sampler_name][seed] = cli.best_so_far(study)[: args.n_trials]
    summary: dict[str, Any] = {
        "family": args.family,
        "dataset": args.dataset,
        "prior_storage": args.prior_storage,
        "prior_studies": list(patterns),
        "metric": args.metric,
        "curves": curves,
    }
    summary["trials_to_target"] = {
        target: {
            s: {seed: trials_to_target(c, target) for seed, c in by_seed.items()}
            for s, by_seed in curves.items()
        }
        for target in args.target
    }
    return summary


def format_report(summary: dict[str, Any], n_trials: int) -> str:
    """Formats the best-so-far table (mean over seeds) and the trials-to-target lines.

    Args:
        summary: The result of :func:`compare`.
        n_trials: Trials per study.

    Returns:
        The report text.
    """
    curves: dict[str, dict[int, list[float]]] = summary["curves"]
    samplers = list(curves)
    lines = [
        f"Best-so-far validation {summary['metric']} on {summary['dataset']} "
        f"(mean over seeds {sorted(next(iter(curves.values())))}):",
        "trial  " + "  ".join(f"{s:>8}" for s in samplers),
    ]
    for t in range(n_trials):
        row = []
        for s in samplers:
            values = [c[t] for c in curves[s].values() if t < len(c) and not math.isnan(c[t])]
            row.append(f"{sum(values) / len(values):8.4f}" if values else f"{'-':>8}")
        lines.append(f"{t + 1:5d}  " + "  ".join(row))
    for target, by_sampler in summary["trials_to_target"].items():
        lines.append(f"Trials to reach {summary['metric']} >= {target}:")
        for s, by_seed in by_sampler.items():
            shown = ", ".join(
                f"seed {seed}: {n if n is not None else f'>{n_trials}'}"
                for seed, n in by_seed.items()
            )
            lines.append(f"  {s:>8}: {shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses ``argv`` and runs the comparison; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The summary of :func:`compare`.
    """
    args = build_parser(argv).parse_args(argv)
    cli.apply_runtime_arguments(args)
    summary = compare(args)
    print(format_report(summary, args.n_trials))
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
        print(f"Summary written to {args.summary_json}")
    print(f"Inspect the studies with: {cli.dashboard_command(args.storage)}")
    return summary


if __name__ == "__main__":
    main()
