"""LCBench tasks through the YAHPO Gym ONNX surrogate (``val_accuracy`` at epoch 52, maximized).

The data directory holds ``lcbench/model.onnx``, ``config_space.json`` and ``encoding.json``
(see :mod:`benchmarks.problems.yahpo`); ``METABO_YAHPO_DIR`` overrides its location.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks.problems.base import Problem
from benchmarks.problems.yahpo import ENV_VAR
from benchmarks.problems.yahpo import scenario_available
from benchmarks.problems.yahpo import Surrogate
from benchmarks.problems.yahpo import yahpo_dir


__all__ = ["ENV_VAR", "LCBench", "LCBenchConditional", "lcbench_available", "yahpo_dir"]
CONT_ORDER = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
PARAMS = CONT_ORDER[1:]
OUTPUTS = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)
MAX_EPOCH = 52


def lcbench_available(path: str | os.PathLike[str] | None = None) -> bool:
    """Return whether the surrogate files are present.

    Args:
        path: Data directory, resolved like :func:`yahpo_dir`.
    """
    return scenario_available("lcbench", path)


class LCBench(Problem):
    """Leave-one-task-out transfer on the 34 LCBench tasks of YAHPO Gym.

    Args:
        data_dir: YAHPO data directory (see :func:`yahpo_dir`).
        metric: Output column to optimize (maximized).
        name: Problem name (variants of the search space use their own).
    """

    family = "lcbench"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        metric: str = "val_accuracy",
        name: str = "lcbench",
    ) -> None:
        super().__init__(name, direction="maximize")
        self.surrogate = Surrogate("lcbench", data_dir)
        self.data_dir = self.surrogate.dir
        self._ids = self.surrogate.choices("OpenML_task_id")
        self._code = self.surrogate.codes["OpenML_task_id"]
        self._col = OUTPUTS.index(metric)

    def tasks(self) -> list[str]:
        """Return the 34 OpenML task ids."""
        return list(self._ids)

    def default_targets(self) -> list[str]:
        """Eight fixed targets spread over the task list (every fourth task)."""
        return self._ids[::4][:8]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define the seven LCBench hyperparameters with the ranges of ``config_space.json``."""
        return {name: self.surrogate.suggest(trial, name) for name in PARAMS}

    def raw_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Map a configuration of this problem's space to the seven surrogate inputs.

        Args:
            params: Parameters as returned by :meth:`suggest`.
        """
        return params

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Predict ``val_accuracy`` (percent) at the last epoch."""
        return float(self.evaluate_many(task, [params])[0])

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Batched surrogate prediction.

        Args:
            task: OpenML task id.
            params: List of configurations.
        """
        return self.outputs(task, params)[:, self._col]

    def outputs(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Every surrogate output at the last epoch, ``(n, 6)`` in the order of ``OUTPUTS``.

        Args:
            task: OpenML task id.
            params: List of configurations.
        """
        raw = [self.raw_params(p) for p in params]
        x_cat = np.full((len(params), 1), self._code[task])
        x_cont = np.array([[MAX_EPOCH] + [p[name] for name in PARAMS] for p in raw])
        return self.surrogate.predict(x_cat, x_cont).astype(float)


class LCBenchConditional(LCBench):
    """LCBench in a conditional space: momentum and weight decay only exist on their branch.

    ``optimizer`` is ``"sgd"`` (momentum held at 0.1, the lowest value of the surrogate) or
    ``"sgd_momentum"`` (``momentum`` tuned in 0.1 .. 0.99); ``regularize`` is ``"none"``
    (weight decay held at 1e-5, the lowest value) or ``"l2"`` (``weight_decay`` tuned in
    1e-5 .. 0.1). Priors and target share this space.

    Args:
        data_dir: YAHPO data directory (see :func:`yahpo_dir`).
    """

    #: Branch choice -> (its conditional parameter, (plain branch, tuned branch)).
    BRANCHES = {
        "optimizer": ("momentum", ("sgd", "sgd_momentum")),
        "regularize": ("weight_decay", ("none", "l2")),
    }
    OFF = {"momentum": 0.1, "weight_decay": 1e-5}

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(data_dir, name="lcbench_cond")

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define the two branch choices, their conditional parameters and the five others."""
        params: dict[str, Any] = {}
        for choice, (param, branches) in self.BRANCHES.items():
            params[choice] = trial.suggest_categorical(choice, list(branches))
            if params[choice] == branches[1]:
                params[param] = self.surrogate.suggest(trial, param)
        for name in PARAMS:
            if name not in self.OFF:
                params[name] = self.surrogate.suggest(trial, name)
        return params

    def raw_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Hold momentum and weight decay at their "off" values on the plain branches."""
        raw = {name: params[name] for name in PARAMS if name not in self.OFF}
        for choice, (param, branches) in self.BRANCHES.items():
            raw[param] = params[param] if params[choice] == branches[1] else self.OFF[param]
        return raw
