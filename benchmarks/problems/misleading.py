"""Misleading priors: LCBench targets whose prior studies optimized the negated metric.

Each prior study maximizes ``-val_accuracy`` (it minimized the accuracy), so its best
configurations are among the target's worst; the target maximizes ``val_accuracy`` as in
``lcbench``. The priors keep the family's direction (the harness creates every prior study
with the problem's direction) and record the negated value: to a sampler that orients each
study by its own direction this is the same history as a study that minimized
``val_accuracy``, and warm-start TPE enqueues each prior's best, its lowest accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
import os

import optuna

from benchmarks.problems.lcbench import LCBench


#: Problems whose priors optimized the negated metric.
MISLEADING = ("lcbench_misleading",)


class LCBenchMisleading(LCBench):
    """LCBench (34 tasks, the same 8 targets) whose priors maximized ``-val_accuracy``.

    Args:
        data_dir: YAHPO data directory (see :func:`~benchmarks.problems.yahpo.yahpo_dir`).
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(data_dir, name="lcbench_misleading")

    def prior_objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """The negated target objective of ``task``: ``-val_accuracy``.

        Args:
            task: Task id.
        """
        objective = self.objective(task)

        def _negated(trial: optuna.Trial) -> float:
            return -objective(trial)

        return _negated
