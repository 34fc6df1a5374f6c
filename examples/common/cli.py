"""Command-line pieces shared by the example scripts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import math

import optuna
import torch


SAMPLERS = ("tpe", "metabo", "gp", "random")
PRUNERS = ("median", "hyperband", "none")


def add_data_arguments(parser: argparse.ArgumentParser, default_dataset: str) -> None:
    """Adds ``--dataset``, ``--data-files`` and the other data options.

    Args:
        parser: The parser to extend.
        default_dataset: Default of ``--dataset`` (an offline dataset, so it works anywhere).
    """
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default=default_dataset,
        help="hub dataset (e.g. mnist, cifar10, imdb, ag_news, glue/sst2, or path:config), "
        "or offline data: digits[-variant], stdlib_docs[-topics], tweets-<topic>[-3class]; "
        "with --data-files, a label "
        f"for the study name (default: {default_dataset})",
    )
    group.add_argument(
        "--data-files", nargs="+", help="local CSV, JSON(-lines) or parquet training files"
    )
    group.add_argument("--validation-files", nargs="+", help="local validation files")
    group.add_argument("--text-column", help="text column of local files (default: found)")
    group.add_argument("--label-column", help="label column of local files (default: found)")
    group.add_argument("--max-train-samples", type=int, help="subsample the training split")
    group.add_argument("--max-eval-samples", type=int, help="subsample the validation split")


def add_runtime_arguments(parser: argparse.ArgumentParser, default_max_epochs: int) -> None:
    """Adds ``--device``, ``--seed``, ``--max-epochs`` and other training options.

    Args:
        parser: The parser to extend.
        default_max_epochs: Default upper bound of the ``epochs`` hyperparameter.
    """
    group = parser.add_argument_group("training")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--seed", type=int, default=0, help="seed of samplers and training")
    group.add_argument(
        "--max-epochs",
        type=int,
        default=default_max_epochs,
        help=f"upper bound of the epochs hyperparameter (default: {default_max_epochs})",
    )
    group.add_argument("--metric", choices=("accuracy", "f1"), default="accuracy")
    group.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    group.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's)")
    group.add_argument("--verbose", action="store_true", help="print one line per epoch")


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--n-trials``, ``--storage``, ``--sampler``, ``--pruner`` and the prior options.

    Args:
        parser: The parser to extend.
    """
    group = parser.add_argument_group("study")
    group.add_argument("--n-trials", type=int, default=20)
    group.add_argument("--timeout", type=float, help="stop the study after this many seconds")
    group.add_argument("--storage", default="sqlite:///history.db", help="Optuna storage URL")
    group.add_argument("--study-name", help="default: <family>-<dataset>")
    group.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    group.add_argument("--pruner", choices=PRUNERS, default="median")
    group.add_argument(
        "--prior-studies",
        nargs="+",
        help="MetaBO prior study names or globs, e.g. 'cnn-*' (with --sampler metabo)",
    )
    group.add_argument("--prior-storage", help="storage of the prior studies (default: --storage)")


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Applies process-wide options (``--num-threads``) and quiets dataset progress bars.

    Args:
        args: Parsed arguments.
    """
    import datasets

    datasets.disable_progress_bars()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)


def create_sampler(
    name: str,
    seed: int | None,
    *,
    prior_studies: Sequence[str] | None = None,
    prior_storage: str | None = None,
) -> optuna.samplers.BaseSampler:
    """Creates a sampler by name.

    Args:
        name: ``tpe``, ``metabo``, ``gp`` or ``random``.
        seed: Seed of the sampler.
        prior_studies: Names or globs of the prior studies (``metabo`` only).
        prior_storage: Storage of the prior studies (``metabo`` only).

    Returns:
        The sampler.
    """
    if name == "metabo":
        from optuna_metabo import MetaBOSampler  # Imported lazily: optional for the examples.

        return MetaBOSampler(
            list(prior_studies) if prior_studies else None, prior_storage=prior_storage, seed=seed
        )
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"Unknown sampler {name!r}; use one of {SAMPLERS}.")


def create_pruner(name: str) -> optuna.pruners.BasePruner:
    """Creates a pruner by name.

    Args:
        name: ``median``, ``hyperband`` or ``none``.

    Returns:
        The pruner.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"Unknown pruner {name!r}; use one of {PRUNERS}.")


def best_so_far(study: optuna.Study) -> list[float]:
    """Returns the best completed value after each trial (``nan`` before the first one).

    Args:
        study: A maximizing study.

    Returns:
        One value per trial, in trial order.
    """
    best, curve = -math.inf, []
    for trial in study.get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            best = max(best, trial.value)
        curve.append(best if math.isfinite(best) else math.nan)
    return curve


def dashboard_command(storage: str) -> str:
    """Returns the shell command that opens ``storage`` in optuna-dashboard.

    Args:
        storage: The storage URL.

    Returns:
        The command.
    """
    return f"optuna-dashboard {storage}"
