"""LCBench trained epoch by epoch under a pruner, and LCBench with configurations that fail.

Both read the YAHPO Gym LCBench surrogate (:mod:`benchmarks.problems.lcbench`), which predicts
``val_accuracy`` at any epoch 1..52, and live in a registry of their own
(:data:`LC_PROBLEMS`, :func:`get_lc_problem`), so the single-objective runner and report never
pick them up; :mod:`benchmarks.lc_runner` runs them.

- ``lcbench_lc`` (learning curves): the objective reports the surrogate's ``val_accuracy`` at
  epoch ``e`` with ``trial.report(value, e)`` for ``e = 1, 2, ...`` and stops when
  ``trial.should_prune()``; a trial that reaches epoch 52 returns its epoch-52 value. Each
  trial stores the epochs it trained in the user attribute ``lc:epochs``, the cost of a run.
  Prior studies ran under ``HyperbandPruner(min_resource=1, max_resource=52,
  reduction_factor=3)``.
- ``lcbench_fail`` / ``lcbench_fail_clean`` (failures): ``val_accuracy`` at epoch 52, except
  where a configuration fails. Training runs out of memory (the objective raises
  ``RuntimeError("CUDA out of memory")``; runs use ``catch=(RuntimeError,)``) when the memory
  model ``num_layers * max_units * (3 * max_units + 2 * batch_size)`` (weights, gradients and
  momentum buffers of each layer, forward and backward activations of a batch) exceeds
  :data:`MEMORY_BUDGET`, and it diverges (the objective returns NaN) when
  ``learning_rate / batch_size`` exceeds :data:`DIVERGENCE_RATIO`. The target fails this way
  on both problems; the priors of ``lcbench_fail`` hit the same wall, those of
  ``lcbench_fail_clean`` never fail (plain epoch-52 ``val_accuracy``).

About 40% of uniformly random configurations fail, and about half of each task's best 1% do
(:func:`failure_shares` prints the figures), so the wall cuts through the good region.
"""

from __future__ import annotations

from collections.abc import Callable
import math
import os
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from benchmarks.problems.base import build_once
from benchmarks.problems.lcbench import LCBench
from benchmarks.problems.lcbench import MAX_EPOCH
from benchmarks.problems.lcbench import PARAMS


EPOCHS_ATTR = "lc:epochs"
FAILURE_ATTR = "lc:failure"
MEMORY_BUDGET = 1.5e6
DIVERGENCE_RATIO = 1e-3
OOM_MESSAGE = "CUDA out of memory"


def hyperband() -> optuna.pruners.BasePruner:
    """The pruner of the learning-curve priors (and of the ``*_hb`` arms)."""
    return optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=MAX_EPOCH, reduction_factor=3
    )


class LCBenchCurves(LCBench):
    """LCBench trained epoch by epoch; the cost of a trial is the epochs it trained.

    Args:
        data_dir: YAHPO data directory (see :func:`~benchmarks.problems.yahpo.yahpo_dir`).
    """

    role = "lc_run"
    cost_unit = "epochs"
    #: A report checkpoint: one full training.
    checkpoint_unit = MAX_EPOCH
    catch: tuple[type[Exception], ...] = ()

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(data_dir, name="lcbench_lc")

    def curves(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """``val_accuracy`` (percent) after each epoch 1..52, shape ``(n, 52)``.

        Args:
            task: OpenML task id.
            params: Configurations.
        """
        epochs = np.arange(1, MAX_EPOCH + 1, dtype=float)
        rows = np.array([[p[name] for name in PARAMS] for p in params], dtype=float)
        x_cont = np.concatenate(  # (n * 52, 8): every epoch of every configuration
            [np.tile(epochs, len(params))[:, None], np.repeat(rows, MAX_EPOCH, axis=0)], axis=1
        )
        x_cat = np.full((len(x_cont), 1), self._code[task])
        accuracy = self.surrogate.predict(x_cat, x_cont)[:, self._col].astype(float)
        return accuracy.reshape(len(params), MAX_EPOCH)

    def objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """Train epoch by epoch, reporting each epoch's value and stopping when pruned."""

        def _objective(trial: optuna.Trial) -> float:
            curve = self.curves(task, [self.suggest(trial)])[0]
            for epoch, value in enumerate(curve, 1):
                trial.report(float(value), epoch)
                if epoch < MAX_EPOCH and trial.should_prune():
                    trial.set_user_attr(EPOCHS_ATTR, epoch)
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            trial.set_user_attr(EPOCHS_ATTR, MAX_EPOCH)
            return float(curve[-1])

        return _objective

    def prior_pruner(self) -> optuna.pruners.BasePruner:
        """The pruner the prior studies ran under."""
        return hyperband()

    def cost(self, trial: FrozenTrial) -> float:
        """The epochs ``trial`` trained.

        Args:
            trial: A finished trial of this problem's objective.
        """
        return float(trial.user_attrs.get(EPOCHS_ATTR, 0))

    def bounds_problem(self) -> LCBench:
        """The problem whose regret bounds apply: plain LCBench (epoch-52 ``val_accuracy``)."""
        from benchmarks.problems import get_problem

        problem = get_problem("lcbench")
        assert isinstance(problem, LCBench)
        return problem


def failure_kinds(params: list[dict[str, Any]]) -> list[str | None]:
    """How each configuration fails: ``"oom"``, ``"nan"`` (diverged) or ``None``.

    Args:
        params: LCBench configurations.
    """
    kinds: list[str | None] = []
    for p in params:
        memory = p["num_layers"] * p["max_units"] * (3 * p["max_units"] + 2 * p["batch_size"])
        if memory > MEMORY_BUDGET:
            kinds.append("oom")
        elif p["learning_rate"] / p["batch_size"] > DIVERGENCE_RATIO:
            kinds.append("nan")
        else:
            kinds.append(None)
    return kinds


class LCBenchFailures(LCBench):
    """LCBench whose configurations run out of memory or diverge (see the module docstring).

    :meth:`evaluate_many` gives NaN for a failing configuration, so the regret bounds
    (:mod:`benchmarks.regret`) are those of the configurations that do not fail.

    Args:
        name: ``"lcbench_fail"`` or ``"lcbench_fail_clean"``.
        prior_wall: Whether the prior studies fail like the target.
        data_dir: YAHPO data directory.
    """

    role = "fail_run"
    cost_unit = "trials"
    checkpoint_unit = 1
    catch: tuple[type[Exception], ...] = (RuntimeError,)

    def __init__(
        self, name: str, prior_wall: bool, data_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(data_dir, name=name)
        self.prior_wall = prior_wall

    def accuracy(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Epoch-52 ``val_accuracy`` as if no configuration failed, ``(n,)``.

        Args:
            task: OpenML task id.
            params: Configurations.
        """
        return super().evaluate_many(task, params)

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Epoch-52 ``val_accuracy``; NaN where the configuration fails."""
        values = self.accuracy(task, params)
        failed = np.array([k is not None for k in failure_kinds(params)], dtype=bool)
        return np.where(failed, math.nan, values)

    def objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """Raise ``RuntimeError`` on out-of-memory, return NaN on divergence."""

        def _objective(trial: optuna.Trial) -> float:
            params = self.suggest(trial)
            kind = failure_kinds([params])[0]
            if kind is not None:
                trial.set_user_attr(FAILURE_ATTR, kind)
            if kind == "oom":
                raise RuntimeError(OOM_MESSAGE)
            return math.nan if kind == "nan" else float(self.accuracy(task, [params])[0])

        return _objective

    def prior_objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """The target's objective with the wall; plain epoch-52 ``val_accuracy`` without."""
        if self.prior_wall:
            return self.objective(task)

        def _objective(trial: optuna.Trial) -> float:
            return float(self.accuracy(task, [self.suggest(trial)])[0])

        return _objective

    def prior_pruner(self) -> optuna.pruners.BasePruner:
        """No pruning: every prior trial trains to the end or fails."""
        return optuna.pruners.NopPruner()

    def cost(self, trial: FrozenTrial) -> float:
        """One per trial.

        Args:
            trial: A finished trial.
        """
        return 1.0

    def bounds_problem(self) -> LCBenchFailures:
        """The problem whose regret bounds apply: the target's, shared by both variants."""
        problem = get_lc_problem("lcbench_fail")
        assert isinstance(problem, LCBenchFailures)
        return problem


def failure_shares(n: int = 2000, seed: int = 0) -> dict[str, float]:
    """How much the wall cuts: shares over ``n`` uniformly random configurations.

    Returns:
        ``random_fail`` and ``random_oom``/``random_nan`` (shares of random configurations that
        fail, by kind), ``top_fail`` (the share of each task's best 1% of them that fail,
        averaged over tasks) and ``top_fail_majority`` (the share of tasks where most of the
        best 1% fail).

    Args:
        n: Random configurations.
        seed: Seed of the draw.
    """
    problem = get_lc_problem("lcbench_fail")
    assert isinstance(problem, LCBenchFailures)
    configs = problem.random_configurations(n, seed)
    kinds = np.array([k or "" for k in failure_kinds(configs)])
    failed = kinds != ""
    top_fail = []
    for task in problem.tasks():
        values = problem.accuracy(task, configs)
        top = values >= np.quantile(values, 0.99)
        top_fail.append(float(failed[top].mean()))
    return {
        "random_fail": float(failed.mean()),
        "random_oom": float((kinds == "oom").mean()),
        "random_nan": float((kinds == "nan").mean()),
        "top_fail": float(np.mean(top_fail)),
        "top_fail_majority": float(np.mean(np.array(top_fail) > 0.5)),
    }


LCProblem = LCBenchCurves | LCBenchFailures
LC_PROBLEMS: dict[str, Callable[[], LCProblem]] = {
    "lcbench_lc": LCBenchCurves,
    "lcbench_fail": lambda: LCBenchFailures("lcbench_fail", prior_wall=True),
    "lcbench_fail_clean": lambda: LCBenchFailures("lcbench_fail_clean", prior_wall=False),
}
_CACHE: dict[str, LCProblem] = {}


def get_lc_problem(name: str) -> LCProblem:
    """Build (once per process) and return the learning-curve or failure problem ``name``.

    Args:
        name: A key of :data:`LC_PROBLEMS`.
    """
    return build_once(name, LC_PROBLEMS, _CACHE)
