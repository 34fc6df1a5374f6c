"""The README's main job: transfer on a family of related tasks, in a local SQLite file.

It writes a few prior studies (shifted, rescaled variants of one 4-parameter problem with a
log-scale, an integer and a categorical parameter), then tunes a new member of the family with
MetaBOSampler and with TPE, prints best-so-far against trials for both, and the
optuna-dashboard command that shows all studies. The MetaBOSampler study also gets the
transfer note and plots of ``DashboardCallback``.
"""

from __future__ import annotations

from collections.abc import Callable
import math

import optuna

from optuna_metabo._dashboard.callback import DashboardCallback
from optuna_metabo._sampler import MetaBOSampler


def family_member(shift: float, scale: float) -> Callable[[optuna.Trial], float]:
    """One task of the demo family: an objective to maximize, like a validation accuracy.

    Args:
        shift: Moves the optimum; related tasks have nearby shifts.
        scale: Multiplies the objective; tasks need not share a scale.
    """

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.6)
        layers = trial.suggest_int("num_layers", 1, 6)
        optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
        loss = (math.log10(lr) + 3.0 + shift) ** 2 + 4 * (dropout - 0.2 - 0.1 * shift) ** 2
        loss += 0.15 * (layers - 3 - round(shift)) ** 2 + (0.0 if optimizer == "adam" else 0.4)
        return scale * (1.0 - loss / (1.0 + loss))

    return objective


PRIOR_TASKS = {"demo-task-a": (0.3, 1.0), "demo-task-b": (-0.4, 0.8), "demo-task-c": (0.1, 1.3)}
TARGET_TASK = ("demo-new-task", (0.0, 1.1))


def _best_so_far(study: optuna.Study) -> list[float]:
    best, out = -math.inf, []
    for trial in study.trials:
        if trial.value is not None:
            best = max(best, trial.value)
        out.append(best)
    return out


StudyCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def run_demo(
    storage: str,
    n_prior_trials: int = 30,
    n_trials: int = 15,
    seed: int = 0,
    callback: Callable[[str], StudyCallback] | None = None,
) -> dict[str, list[float]]:
    """Runs the demo and returns best-so-far curves by sampler name.

    Args:
        storage: Storage URL for priors and target studies.
        n_prior_trials: Trials per prior study (created once, reused on later runs).
        n_trials: Trials for the new task, per sampler.
        seed: Seed for all samplers.
        callback: Given a label (``"prior <name>"`` or a sampler name), returns an Optuna
            callback for that study's ``optimize``, e.g. to advance a progress bar.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def callbacks(label: str) -> list[StudyCallback]:
        return [callback(label)] if callback is not None else []

    for name, (shift, scale) in PRIOR_TASKS.items():
        prior = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        missing = n_prior_trials - len(prior.trials)
        if missing > 0:
            prior.optimize(
                family_member(shift, scale), n_trials=missing, callbacks=callbacks(f"prior {name}")
            )
    name, (shift, scale) = TARGET_TASK
    samplers: dict[str, optuna.samplers.BaseSampler] = {
        "MetaBOSampler": MetaBOSampler(list(PRIOR_TASKS), prior_storage=storage, seed=seed),
        "TPESampler": optuna.samplers.TPESampler(seed=seed),
    }
    curves = {}
    for label, sampler in samplers.items():
        study_name = f"{name}-{label}-seed{seed}"
        if _exists(storage, study_name):
            optuna.delete_study(study_name=study_name, storage=storage)
        study = optuna.create_study(
            storage=storage, study_name=study_name, direction="maximize", sampler=sampler
        )
        study_callbacks = callbacks(label)
        if isinstance(sampler, MetaBOSampler):  # its transfer note and plots
            study_callbacks.append(DashboardCallback())
        study.optimize(family_member(shift, scale), n_trials=n_trials, callbacks=study_callbacks)
        curves[label] = _best_so_far(study)
    return curves


def n_missing_prior_trials(storage: str, n_prior_trials: int) -> int:
    """How many prior trials ``run_demo`` still has to run (for a progress bar's total).

    Args:
        storage: Storage URL.
        n_prior_trials: Trials per prior study.
    """
    existing = set(optuna.study.get_all_study_names(storage=storage))
    missing = 0
    for name in PRIOR_TASKS:
        done = (
            len(optuna.load_study(study_name=name, storage=storage).trials)
            if (name in existing)
            else 0
        )
        missing += max(n_prior_trials - done, 0)
    return missing


def _exists(storage: str, study_name: str) -> bool:
    return study_name in optuna.study.get_all_study_names(storage=storage)


def format_curves(curves: dict[str, list[float]]) -> str:
    """A table of best-so-far values against trial numbers."""
    labels = list(curves)
    lines = ["trial  " + "  ".join(f"{label:>14}" for label in labels)]
    for i in range(len(next(iter(curves.values())))):
        lines.append(f"{i + 1:5d}  " + "  ".join(f"{curves[label][i]:14.4f}" for label in labels))
    return "\n".join(lines)
