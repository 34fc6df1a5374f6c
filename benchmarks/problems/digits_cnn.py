"""Smoke problem: the real-training digits CNN family of ``examples/`` (``examples.image_cnn``).

Tasks are offline variants of scikit-learn's digits (``digits-0to4``, ``digits-odd``, ...); the
target is the examples' new task (``digits-n300-noise50``) and priors come from the history
tasks. Each trial trains a small CNN on the CPU, so this problem is for smoke runs only; it is
never part of ``--problems all``. The objective (best validation accuracy, maximized) is
bounded by [0, 1], which are used as regret bounds instead of random sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from benchmarks.problems.base import Problem


def examples_available() -> str | None:
    """Return why ``examples.image_cnn`` cannot be imported, or ``None`` when it can."""
    try:
        from examples.common.data import load_task_data  # noqa: F401
        import examples.image_cnn  # noqa: F401
    except Exception as exc:
        return f"examples.image_cnn is not importable ({type(exc).__name__}: {exc})"
    return None


class DigitsCNN(Problem):
    """Leave-one-out transfer over the digits CNN family of ``examples/``.

    Args:
        max_epochs: Upper bound of the ``epochs`` hyperparameter.
        max_train_samples: Training examples kept per task (keeps trials short).
    """

    family = "real-training"

    def __init__(self, max_epochs: int = 2, max_train_samples: int | None = 300) -> None:
        super().__init__("digits_cnn", direction="maximize")
        reason = examples_available()
        if reason:
            raise ImportError(reason)
        from examples import image_cnn

        self._module = image_cnn
        self._history = list(image_cnn.HISTORY_DATASETS)
        self._target = image_cnn.NEW_DATASET
        self.max_epochs = max_epochs
        self.max_train_samples = max_train_samples
        self._objectives: dict[str, Callable[[optuna.Trial], float]] = {}

    def tasks(self) -> list[str]:
        """History tasks plus the new task."""
        return [*self._history, self._target]

    def all_targets(self) -> list[str]:
        """Only the examples' new task is a target."""
        return [self._target]

    def prior_pool(self, target: str) -> list[str]:
        """Priors come from the history tasks."""
        return [t for t in self._history if t != target]

    def static_bounds(self, task: str) -> tuple[float, float] | None:
        """Accuracy lies in [0, 1]."""
        return (1.0, 0.0)

    def objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """The examples' CNN objective on ``task`` (built once per process).

        Args:
            task: A digits task name.
        """
        if task not in self._objectives:
            from examples.common.data import load_task_data

            data = load_task_data(task, "image", max_train_samples=self.max_train_samples)
            self._objectives[task] = self._module.OBJECTIVE(
                data, max_epochs=self.max_epochs, device="cpu", seed=0, amp=False
            )
        return self._objectives[task]

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Not available: the objective trains a network through an Optuna trial."""
        raise NotImplementedError("DigitsCNN is evaluated through objective() only")
