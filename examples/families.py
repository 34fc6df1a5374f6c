"""The model families of the examples and the command line they share.

A family module (``examples.image_cnn``, ``examples.image_resnet``, ``examples.text_bert``)
defines ``FAMILY``, ``MODALITY``, ``DEFAULT_DATASET``, ``DEFAULT_MAX_EPOCHS``,
``HISTORY_DATASETS``, ``NEW_DATASET`` and ``OBJECTIVE`` (a
:class:`~examples.common.objective.ClassificationObjective` subclass, or any class built the
same way whose instances are ``objective(trial) -> float``), and optionally
``add_model_arguments(parser)`` and ``model_kwargs(args)`` for options of its own, and
``DEFAULT_MAX_TRAIN_SAMPLES`` / ``DEFAULT_MAX_EVAL_SAMPLES`` for sample caps when none are given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import importlib
from types import ModuleType

import optuna

from examples.common import cli
from examples.common.data import load_task_data


FAMILY_MODULES = {
    "cnn": "examples.image_cnn",
    "resnet": "examples.image_resnet",
    "bert": "examples.text_bert",
    "minilm": "examples.tweets_minilm",
}


def family_module(family: str) -> ModuleType:
    """Imports the module of a family.

    Args:
        family: ``cnn``, ``resnet``, ``bert`` or ``minilm``.

    Returns:
        The family module.
    """
    if family not in FAMILY_MODULES:
        raise ValueError(f"Unknown family {family!r}; use one of {sorted(FAMILY_MODULES)}.")
    return importlib.import_module(FAMILY_MODULES[family])


def workflow_parser(
    prog: str, doc: str | None, argv: Sequence[str] | None
) -> tuple[argparse.ArgumentParser, ModuleType, str]:
    """The parser of a workflow script, with the options of the family named in ``argv``.

    Args:
        prog: Program name shown in ``--help``.
        doc: The script's docstring; its first paragraph is the description.
        argv: Command-line arguments, read for ``--family`` only.

    Returns:
        The parser, the family's module and the family name.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--family", choices=sorted(FAMILY_MODULES), default="cnn")
    family = pre.parse_known_args(argv)[0].family
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        parents=[pre],
    )
    return parser, family_module(family), family


def add_family_arguments(
    parser: argparse.ArgumentParser, family: str, *, data: bool = True
) -> None:
    """Adds the data, training and model options of ``family`` to ``parser``.

    Args:
        parser: The parser to extend.
        family: The family name.
        data: Whether to add the single-dataset options (``--dataset``, ``--data-files``, ...).
    """
    module = family_module(family)
    if data:
        cli.add_data_arguments(parser, module.DEFAULT_DATASET)
    cli.add_runtime_arguments(parser, module.DEFAULT_MAX_EPOCHS)
    if hasattr(module, "add_model_arguments"):
        module.add_model_arguments(parser)
    parser.set_defaults(
        max_train_samples=getattr(module, "DEFAULT_MAX_TRAIN_SAMPLES", None),
        max_eval_samples=getattr(module, "DEFAULT_MAX_EVAL_SAMPLES", None),
    )


def parse_dataset_spec(spec: str) -> tuple[str, list[str] | None]:
    """Splits ``name=file1,file2`` into the name and its local files (``name`` alone: none).

    Args:
        spec: A dataset name, optionally with local files.

    Returns:
        The name and the files, or ``None``.
    """
    name, _, files = spec.partition("=")
    return name, files.split(",") if files else None


def objective_from_args(
    family: str,
    args: argparse.Namespace,
    *,
    dataset: str | None = None,
    data_files: Sequence[str] | None = None,
    seed: int | None = None,
) -> Callable[[optuna.Trial], float]:
    """Loads a task and builds the family's objective from parsed arguments.

    Args:
        family: The family name.
        args: Arguments of :func:`add_family_arguments` (and :func:`cli.add_data_arguments`).
        dataset: The dataset; defaults to ``args.dataset``.
        data_files: Local data files; default to ``args.data_files``.
        seed: Seed of training and subsampling; defaults to ``args.seed``.

    Returns:
        The objective.
    """
    module = family_module(family)
    seed = args.seed if seed is None else seed
    data = load_task_data(
        dataset or args.dataset,
        module.MODALITY,
        data_files=data_files if dataset else getattr(args, "data_files", None),
        validation_files=getattr(args, "validation_files", None) if not dataset else None,
        text_column=getattr(args, "text_column", None),
        label_column=getattr(args, "label_column", None),
        max_train_samples=getattr(args, "max_train_samples", None),
        max_eval_samples=getattr(args, "max_eval_samples", None),
    )
    extra = module.model_kwargs(args) if hasattr(module, "model_kwargs") else {}
    objective: Callable[[optuna.Trial], float] = module.OBJECTIVE(
        data,
        max_epochs=args.max_epochs,
        device=args.device,
        seed=seed,
        metric=args.metric,
        amp=not args.no_amp,
        verbose=args.verbose,
        **extra,
    )
    return objective


def study_name(family: str, dataset: str) -> str:
    """Returns the history study name of a task: ``<family>-<dataset>``.

    Args:
        family: The family name.
        dataset: The dataset name (a path's file name without extension is used as is).

    Returns:
        The study name.
    """
    return f"{family}-{dataset}"


def build_parser(family: str) -> argparse.ArgumentParser:
    """Builds the parser of a family's single-study script.

    Args:
        family: The family name.

    Returns:
        The parser.
    """
    module = family_module(family)
    parser = argparse.ArgumentParser(
        prog=f"python -m {module.__name__}",
        description=(module.__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_family_arguments(parser, family)
    cli.add_study_arguments(parser)
    return parser


def run_family_cli(family: str, argv: Sequence[str] | None = None) -> optuna.Study:
    """Parses ``argv`` and runs one study of the family's objective.

    Args:
        family: The family name.
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The study.
    """
    args = build_parser(family).parse_args(argv)
    cli.apply_runtime_arguments(args)
    objective = objective_from_args(family, args)
    name = args.study_name or study_name(family, args.dataset)
    study = optuna.create_study(
        study_name=name,
        storage=args.storage,
        direction="maximize",
        sampler=cli.create_sampler(
            args.sampler,
            args.seed,
            prior_studies=args.prior_studies,
            prior_storage=args.prior_storage or args.storage,
        ),
        pruner=cli.create_pruner(args.pruner),
        load_if_exists=True,
    )
    study.optimize(objective, n_trials=args.n_trials, timeout=args.timeout)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        print(
            f"Study {name!r}: best validation {args.metric} {best.value:.4f} (trial {best.number})"
        )
        print(f"Best parameters: {best.params}")
    print(f"Inspect it with: {cli.dashboard_command(args.storage)}")
    return study
