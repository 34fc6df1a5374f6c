"""Step 1 of the transfer workflow: tune one model family on several tasks, keep the history.

Each task (a dataset or a variant of one) becomes one study, named ``<family>-<dataset>``, in
one storage (default ``sqlite:///history.db``). Later, ``examples.tune_with_priors`` starts a
new task from these studies with ``MetaBOSampler(prior_studies=["<family>-*"])``.

Running the command again tops every study up to ``--n-trials`` finished trials, so an
interrupted run resumes where it stopped.

Examples::

    python -m examples.build_history                                 # cnn on 6 digits variants
    python -m examples.build_history --family bert --n-trials 15     # offline text topics
    python -m examples.build_history --family resnet --datasets mnist fashion_mnist cifar10 \\
        --max-train-samples 10000 --device cuda
    python -m examples.build_history --family bert --datasets reviews=reviews.csv \\
        tickets=tickets.jsonl                                          # local files
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import optuna

from examples import families
from examples.common import cli


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Builds the parser; the options of the family given in ``argv`` are included.

    Args:
        argv: Command-line arguments, read for ``--family`` only.

    Returns:
        The parser.
    """
    parser, module, family = families.workflow_parser(
        "python -m examples.build_history", __doc__, argv
    )
    group = parser.add_argument_group("history")
    group.add_argument(
        "--datasets",
        nargs="+",
        default=list(module.HISTORY_DATASETS),
        help="tasks to tune: dataset names, or name=file1,file2 for local files",
    )
    group.add_argument("--n-trials", type=int, default=20, help="finished trials per study")
    group.add_argument("--storage", default="sqlite:///history.db", help="Optuna storage URL")
    group.add_argument("--sampler", choices=cli.SAMPLERS, default="tpe")
    group.add_argument("--pruner", choices=cli.PRUNERS, default="median")
    group.add_argument("--max-train-samples", type=int, help="subsample each training split")
    group.add_argument("--max-eval-samples", type=int, help="subsample each validation split")
    group.add_argument("--text-column", help="text column of local files (default: found)")
    group.add_argument("--label-column", help="label column of local files (default: found)")
    families.add_family_arguments(parser, family, data=False)
    return parser


def build_history(args: argparse.Namespace) -> list[optuna.Study]:
    """Tunes ``args.family`` on each of ``args.datasets``, one study per task.

    Args:
        args: Parsed arguments of :func:`build_parser`.

    Returns:
        The studies, in the order of ``args.datasets``.
    """
    studies = []
    for index, spec in enumerate(args.datasets):
        dataset, data_files = families.parse_dataset_spec(spec)
        name = families.study_name(args.family, dataset)
        study = optuna.create_study(
            study_name=name,
            storage=args.storage,
            direction="maximize",
            sampler=cli.create_sampler(args.sampler, args.seed + index),
            pruner=cli.create_pruner(args.pruner),
            load_if_exists=True,
        )
        finished = len(study.get_trials(deepcopy=False, states=_FINISHED))
        remaining = max(args.n_trials - finished, 0)
        print(f"[{name}] {finished} finished trials; running {remaining} more.", flush=True)
        if remaining:
            objective = families.objective_from_args(
                args.family, args, dataset=dataset, data_files=data_files
            )
            study.optimize(objective, n_trials=remaining)
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            print(f"[{name}] best {args.metric}: {study.best_value:.4f}", flush=True)
        studies.append(study)
    return studies


_FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


def main(argv: Sequence[str] | None = None) -> list[optuna.Study]:
    """Parses ``argv`` and builds the history; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The studies.
    """
    args = build_parser(argv).parse_args(argv)
    cli.apply_runtime_arguments(args)
    studies = build_history(args)
    print(
        f"History of {len(studies)} studies in {args.storage}. Next: python -m "
        f"examples.tune_with_priors --family {args.family} --prior-storage {args.storage}"
    )
    print(f"Inspect it with: {cli.dashboard_command(args.storage)}")
    return studies


if __name__ == "__main__":
    main()
