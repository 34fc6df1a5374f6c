"""Prints a hash of the parameters MetaBOSampler suggests on a fixed problem.

A refactor that leaves the method alone leaves this hash alone. The problem mixes a log float,
a stepped float, an int and a categorical parameter; three prior studies of shifted tasks are
written by a seeded random sampler, then ``MetaBOSampler(seed=0)`` runs 14 target trials (the
prior design, the model phase and the negative-transfer guard from trial 10 on).

Usage: ``python scripts/suggestion_fingerprint.py [--trials N] [--verbose]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math

import optuna

from optuna_metabo import MetaBOSampler
from optuna_metabo import USER_ATTR_SOURCE


def _objective(shift: float) -> optuna.study.study.ObjectiveFuncType:
    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.05)
        layers = trial.suggest_int("layers", 1, 6)
        activation = trial.suggest_categorical("activation", ["relu", "tanh", "gelu"])
        penalty = {"relu": 0.0, "tanh": 0.3, "gelu": 0.1 + 0.2 * shift}[activation]
        return (
            (math.log10(lr) + 2.5 + shift) ** 2
            + (dropout - 0.2 - 0.1 * shift) ** 2 * 4
            + 0.05 * (layers - 3 - round(2 * shift)) ** 2
            + penalty
        )

    return objective


def fingerprint(n_trials: int = 14, verbose: bool = False) -> str:
    """The SHA-256 of the suggested parameters and their sources, in trial order.

    Args:
        n_trials: Target trials.
        verbose: Print each trial's parameters and source.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.InMemoryStorage()
    for i, shift in enumerate((0.0, 0.3, -0.4)):
        prior = optuna.create_study(
            storage=storage,
            study_name=f"prior-{i}",
            sampler=optuna.samplers.RandomSampler(seed=i),
        )
        prior.optimize(_objective(shift), n_trials=20)
    target = optuna.create_study(
        storage=storage, study_name="target", sampler=MetaBOSampler(prior_storage=storage, seed=0)
    )
    target.optimize(_objective(0.15), n_trials=n_trials)
    record = [(t.params, t.user_attrs.get(USER_ATTR_SOURCE)) for t in target.trials]
    if verbose:
        for number, (params, source) in enumerate(record):
            print(number, source, json.dumps(params, sort_keys=True))
    payload = json.dumps(record, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=14)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    print(fingerprint(args.trials, args.verbose))


if __name__ == "__main__":
    main()
