"""A grown space in miniature: priors that held a parameter the target tunes.

Three prior studies (TPE) tuned ``a`` and ``c`` and held ``b`` at 0.25; the target tunes all
three, and its best ``b`` is 0.3. Prints the mean best regret over seeds at 1 / 3 / 5 / 10 / 20
trials for MetaBOSampler learning the held value, told it (``prior_defaults``), and without
priors, and the held value it learned. Regret is the best value itself (the optimum is 0).

Usage::

    python -m benchmarks.bench_held_values --seeds 3
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import optuna


HELD = 0.25
BUDGETS = (1, 3, 5, 10, 20)


def _value(shift: float, a: float, b: float, c: float) -> float:
    return (a - shift) ** 2 + (c - 0.6) ** 2 + 2 * (b - 0.3) ** 2


def _priors(storage: Any) -> None:
    for i, shift in enumerate([0.4, 0.5, 0.6]):
        study = optuna.create_study(
            storage=storage, study_name=f"p{i}", sampler=optuna.samplers.TPESampler(seed=i)
        )
        study.optimize(_prior_objective(shift), n_trials=30)


def _prior_objective(shift: float) -> Any:
    def objective(trial: optuna.Trial) -> float:
        return _value(shift, trial.suggest_float("a", 0, 1), HELD, trial.suggest_float("c", 0, 1))

    return objective


def _target(trial: optuna.Trial) -> float:
    a, b, c = (trial.suggest_float(n, 0, 1) for n in "abc")
    return _value(0.55, a, b, c)


def main() -> None:
    """Runs the three variants and prints a Markdown table."""
    from optuna_metabo import MetaBOSampler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    curves: dict[str, list[np.ndarray]] = {}
    learned: list[float] = []
    for seed in range(args.seeds):
        storage = optuna.storages.InMemoryStorage()
        _priors(storage)
        variants: dict[str, dict[str, Any]] = {
            "learned held value": dict(prior_storage=storage),
            "prior_defaults={'b': 0.25}": dict(prior_storage=storage, prior_defaults={"b": HELD}),
            "no priors": {},
        }
        for label, kwargs in variants.items():
            sampler = MetaBOSampler(seed=seed, **kwargs)
            study = optuna.create_study(sampler=sampler)
            study.optimize(_target, n_trials=max(BUDGETS))
            best = np.minimum.accumulate([t.values[0] for t in study.trials])
            curves.setdefault(label, []).append(best[[b - 1 for b in BUDGETS]])
            if label == "learned held value":
                learned.append(sampler.prior_summary()["used"][0]["lacked"]["b"]["learned_value"])
    print("| variant | " + " | ".join(f"@{b}" for b in BUDGETS) + " |")
    print("|---|" + "---:|" * len(BUDGETS))
    for label, rows in curves.items():
        mean = np.mean(rows, axis=0)
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    print(f"\nlearned held value of b (truth {HELD}): " + ", ".join(f"{v:.3f}" for v in learned))


if __name__ == "__main__":
    main()
