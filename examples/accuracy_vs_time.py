"""Two objectives and a constraint, with transfer: accuracy against training time on digits.

Each trial trains the digits CNN of :mod:`examples.digits_family` for real and reports two
objectives, ``accuracy`` (maximize) and ``seconds`` (training time, minimize), under a
constraint on model size (``n_parameters <= --max-parameters``). First a few earlier studies
on other digits variants are built with Optuna's multi-objective TPE (the history, with the
same metric names and constraint); then the new variant is tuned with ``MetaBOSampler``, which
starts from the history's Pareto fronts. The script prints the new study's Pareto front and
the optuna-dashboard command.

Examples::

    python -m examples.accuracy_vs_time
    python -m examples.accuracy_vs_time --n-prior-trials 30 --n-trials 20 --max-epochs 8
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import time
import warnings

import optuna
from optuna.study import StudyDirection

from examples.digits_family import make_objective
from optuna_metabo import DashboardCallback
from optuna_metabo import MetaBOSampler


METRICS = ["accuracy", "seconds"]
DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
HISTORY = ("digits-0to4", "digits-5to9")


def timed_objective(task: str, max_epochs: int) -> Callable[[optuna.Trial], tuple[float, float]]:
    """The digits CNN objective of ``task`` returning ``(accuracy, training seconds)``.

    Args:
        task: A digits variant (see :mod:`examples.digits_family`).
        max_epochs: Upper bound of the ``epochs`` hyperparameter.
    """
    accuracy = make_objective(task, max_epochs=max_epochs, seed=0)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        start = time.perf_counter()
        value = accuracy(trial)
        return value, time.perf_counter() - start

    return objective


def size_constraint(max_parameters: int) -> Callable[[optuna.trial.FrozenTrial], list[float]]:
    """``n_parameters - max_parameters``: feasible (at most zero) for models small enough.

    Args:
        max_parameters: The largest allowed model.
    """

    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [float(trial.user_attrs["n_parameters"] - max_parameters)]

    return constraints


def build_history(storage: str, n_trials: int, max_epochs: int, max_parameters: int) -> None:
    """Earlier multi-objective studies ``mo-<task>``, tuned with TPE; existing ones are topped up.

    Args:
        storage: Where the studies live.
        n_trials: Completed trials per study.
        max_epochs: Upper bound of the ``epochs`` hyperparameter.
        max_parameters: The model-size limit of the constraint.
    """
    for task in HISTORY:
        study = optuna.create_study(
            storage=storage,
            study_name=f"mo-{task}",
            directions=DIRECTIONS,
            sampler=optuna.samplers.TPESampler(
                seed=0, constraints_func=size_constraint(max_parameters)
            ),
            load_if_exists=True,
        )
        study.set_metric_names(METRICS)
        missing = n_trials - len(study.trials)
        if missing > 0:
            study.optimize(timed_objective(task, max_epochs), n_trials=missing)


def main(argv: Sequence[str] | None = None) -> optuna.Study:
    """Builds the history, tunes the new task and prints its Pareto front.

    Args:
        argv: Command-line arguments (see ``--help``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///accuracy_vs_time.db")
    parser.add_argument("--task", default="digits-odd-n200", help="the new digits variant")
    parser.add_argument("--n-prior-trials", type=int, default=20)
    parser.add_argument("--n-trials", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--max-parameters", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    build_history(args.storage, args.n_prior_trials, args.max_epochs, args.max_parameters)
    sampler = MetaBOSampler(
        prior_studies=["mo-*"],
        prior_storage=args.storage,
        seed=args.seed,
        constraints_func=size_constraint(args.max_parameters),
    )
    study = optuna.create_study(
        storage=args.storage,
        study_name=f"new-{args.task}-seed{args.seed}",
        directions=DIRECTIONS,
        sampler=sampler,
        load_if_exists=True,
    )
    study.set_metric_names(METRICS)
    study.optimize(
        timed_objective(args.task, args.max_epochs),
        n_trials=args.n_trials,
        callbacks=[DashboardCallback()],
    )
    print(f"Pareto front of {study.study_name} (feasible trials, accuracy vs seconds):")
    for trial in sorted(study.best_trials, key=lambda t: t.values[1]):
        source = trial.user_attrs.get("metabo:source")
        print(
            f"  trial {trial.number:3d}  {trial.values[0]:.3f}  {trial.values[1]:6.2f} s  {source}"
        )
    print(f"\noptuna-dashboard {args.storage}")
    return study


if __name__ == "__main__":
    main()
