"""rpart decision trees on 117 OpenML tasks through the YAHPO Gym ``rbv2_rpart`` surrogate.

The objective is ``acc`` (0-1, maximized) at full fidelity: ``trainsize = 1.0``, ``repl = 10``
and the imputation held at ``impute.median``. See :mod:`benchmarks.problems.yahpo` for the data
directory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks.problems.base import Problem
from benchmarks.problems.yahpo import scenario_available
from benchmarks.problems.yahpo import Surrogate


PARAMS = ("cp", "maxdepth", "minbucket", "minsplit")
OUTPUTS = ("acc", "bac", "auc", "brier", "f1", "logloss", "timetrain", "timepredict", "memory")
IMPUTE = "impute.median"
TRAINSIZE, REPL = 1.0, 10


def rbv2_rpart_available(path: str | os.PathLike[str] | None = None) -> bool:
    """Return whether the ``rbv2_rpart`` surrogate files are present.

    Args:
        path: Data directory, resolved like :func:`~benchmarks.problems.yahpo.yahpo_dir`.
    """
    return scenario_available("rbv2_rpart", path)


class RPart(Problem):
    """Leave-one-task-out transfer on the 117 ``rbv2_rpart`` tasks (accuracy, maximized).

    Args:
        data_dir: YAHPO data directory (see :func:`~benchmarks.problems.yahpo.yahpo_dir`).
        metric: Output column to optimize (maximized).
    """

    family = "rbv2_rpart"

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, metric: str = "acc"
    ) -> None:
        super().__init__("rbv2_rpart", direction="maximize")
        self.surrogate = Surrogate("rbv2_rpart", data_dir)
        self._ids = self.surrogate.choices("task_id")
        self._code = self.surrogate.codes["task_id"]
        self._impute = self.surrogate.codes["num.impute.selected.cpo"][IMPUTE]
        self._col = OUTPUTS.index(metric)

    def tasks(self) -> list[str]:
        """Return the 117 OpenML task ids."""
        return list(self._ids)

    def default_targets(self) -> list[str]:
        """Eight fixed targets spread over the task list (every fifteenth task)."""
        return self._ids[::15][:8]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define ``cp`` (log), ``maxdepth``, ``minbucket`` and ``minsplit``."""
        return {name: self.surrogate.suggest(trial, name) for name in PARAMS}

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Predict the accuracy of ``params`` on ``task``."""
        return float(self.evaluate_many(task, [params])[0])

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Batched surrogate prediction.

        Args:
            task: OpenML task id.
            params: List of configurations.
        """
        return self.outputs(task, params)[:, self._col]

    def outputs(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Every surrogate output at full fidelity, ``(n, 9)`` in the order of ``OUTPUTS``.

        Args:
            task: OpenML task id.
            params: List of configurations.
        """
        x_cat = np.tile([self._code[task], self._impute], (len(params), 1))
        x_cont = np.array([[p[name] for name in PARAMS] + [TRAINSIZE, REPL] for p in params])
        return self.surrogate.predict(x_cat, x_cont).astype(float)
