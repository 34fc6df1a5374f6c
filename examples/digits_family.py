"""The digits CNN family: a real-training transfer problem that runs on a CPU in seconds.

Every task trains the CNN of :mod:`examples.image_cnn` on a variant of scikit-learn's bundled
8x8 digits (real data, no network): digit subsets, fewer training examples, added pixel noise.
A trial takes about 0.5-5 s on one CPU core. The objective is to be maximized (best validation
accuracy over the epochs), is deterministic for a given seed on the CPU, and supports pruning.

Importable API (e.g. for the benchmark harness)::

    from examples.digits_family import TASKS, make_objective

    objective = make_objective("digits-odd", max_epochs=8, seed=0)
    study = optuna.create_study(direction="maximize", study_name=study_name("digits-odd"))
    study.optimize(objective, n_trials=20)

Search space (14 parameters): ``learning_rate`` log 1e-4..1e-1, ``batch_size`` {32, 64, 128},
``epochs`` 1..max_epochs, ``weight_decay`` log 1e-6..1e-2, ``momentum`` 0.5..0.99,
``optimizer`` {Adam, SGD, RMSprop} (the CNN family's ``adaptive`` choice is left out, so the
problem and its measured figures stay as they were), ``n_conv_layers`` 1..3, ``base_filters``
8..64 (log, int), ``dense_units`` 16..256 (log, int), ``dropout_rate`` 0..0.6, ``lr_plateau``
{True, False}, ``lr_plateau_factor`` 0.1..0.7, ``lr_plateau_patience`` 0..2,
``early_stopping_patience`` 1..4.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from examples.common.data import load_task_data
from examples.image_cnn import CNNObjective
from examples.image_cnn import FAMILY
from examples.image_cnn import HISTORY_DATASETS
from examples.image_cnn import NEW_DATASET


#: Tasks of the default history (``python -m examples.build_history``).
HISTORY_TASKS: list[str] = list(HISTORY_DATASETS)
#: Tasks held out of the default history, to be tuned with it as priors.
NEW_TASKS: list[str] = [NEW_DATASET, "digits", "digits-odd-n200"]
#: Choices of ``optimizer`` in this problem (the CNN family's, less ``adaptive``).
DIGITS_OPTIMIZERS: tuple[str, ...] = ("Adam", "SGD", "RMSprop")
#: All tasks of the family.
TASKS: list[str] = HISTORY_TASKS + NEW_TASKS


def study_name(task: str) -> str:
    """Returns the history study name of a task, ``cnn-<task>``.

    Args:
        task: A task of :data:`TASKS` (or any digits variant name).

    Returns:
        The study name, matched by the prior glob ``cnn-*``.
    """
    return f"{FAMILY}-{task}"


def make_objective(
    task: str, *, max_epochs: int = 8, seed: int = 0, device: str = "cpu"
) -> Callable[[optuna.Trial], float]:
    """Returns the objective of a digits task (direction: maximize).

    Args:
        task: A task of :data:`TASKS`, or any digits variant name such as
            ``digits-3to7-n400-noise25`` (see :func:`examples.common.data.parse_digits_variant`).
        max_epochs: Upper bound of the ``epochs`` hyperparameter.
        seed: Seed of model initialization and batch shuffling (the data split is fixed).
        device: ``cpu`` (default, deterministic), ``cuda`` or ``auto``.

    Returns:
        ``objective(trial) -> best validation accuracy``; it reports the accuracy after each
        epoch (``trial.report``) and raises :class:`optuna.TrialPruned` when pruned.
    """
    return CNNObjective(
        load_task_data(task, "image"),
        optimizers=DIGITS_OPTIMIZERS,
        max_epochs=max_epochs,
        seed=seed,
        device=device,
    )
