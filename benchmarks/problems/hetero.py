"""Heterogeneous histories: prior studies tuned in another search space than the target.

:class:`HeldSpace` wraps a problem. In a *grown* target space the priors held parameters at
plain default values that the target tunes (:meth:`~HeldSpace.prior_defaults`); in a *shrunk*
one the target holds parameters that the priors tuned (:meth:`~HeldSpace.fixed_params`).

Held parameters were chosen by a one-at-a-time sensitivity measurement on the surrogates: per
task, 50 uniformly random base configurations; each parameter in turn is swept over a
20-point grid (uniform in its own, possibly log, scale) with the others kept; the variance of
the objective along the sweep, averaged over base configurations, is divided by the
objective's variance over 2,000 random configurations, then averaged over all tasks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks.problems.base import HoldingTrial
from benchmarks.problems.base import Problem


class HeldSpace(Problem):
    """``inner`` with some parameters held by the priors or by the target.

    Args:
        inner: The problem whose tasks, space and objective are used.
        name: Problem name.
        prior_defaults: Values at which the priors held parameters that the target tunes.
        fixed_params: Values at which the target holds parameters that the priors tuned.
    """

    def __init__(
        self,
        inner: Problem,
        name: str,
        prior_defaults: dict[str, Any] | None = None,
        fixed_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, inner.direction)
        self.inner = inner
        self.family = inner.family
        self._prior_defaults = dict(prior_defaults or {})
        self._fixed = dict(fixed_params or {})

    def tasks(self) -> list[str]:
        """Tasks of ``inner``."""
        return self.inner.tasks()

    def all_targets(self) -> list[str]:
        """Targets of ``inner``."""
        return self.inner.all_targets()

    def default_targets(self) -> list[str]:
        """Default targets of ``inner``."""
        return self.inner.default_targets()

    def prior_pool(self, target: str) -> list[str]:
        """Prior pool of ``inner``.

        Args:
            target: The target task id.
        """
        return self.inner.prior_pool(target)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The space of ``inner`` without the parameters the target holds."""
        return self.inner.suggest(HoldingTrial(trial, self._fixed))

    def prior_suggest(self, trial: Any) -> dict[str, Any]:
        """The space of ``inner`` without the parameters the priors held."""
        return self.inner.suggest(HoldingTrial(trial, self._prior_defaults))

    def prior_defaults(self) -> dict[str, Any]:
        """Values at which the priors held parameters that the target tunes."""
        return dict(self._prior_defaults)

    def fixed_params(self) -> dict[str, Any]:
        """Values at which the target holds parameters that the priors tuned."""
        return dict(self._fixed)

    def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fill the held parameters missing from a target or prior configuration.

        Args:
            params: Parameters of a target or prior trial.
        """
        return {**self._prior_defaults, **self._fixed, **params}

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Evaluate ``inner`` at the completed configuration."""
        return self.inner.evaluate(task, self.complete(params))

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Batched :meth:`evaluate` through ``inner``.

        Args:
            task: Task id.
            params: List of configurations.
        """
        return self.inner.evaluate_many(task, [self.complete(p) for p in params])

    def known_optimum(self, task: str) -> float | None:
        """The optimum of ``inner`` when the target space holds nothing."""
        return None if self._fixed else self.inner.known_optimum(task)

    def static_bounds(self, task: str) -> tuple[float, float] | None:
        """The static bounds of ``inner`` when the target space holds nothing."""
        return None if self._fixed else self.inner.static_bounds(task)


class Hartmann3Grown(HeldSpace):
    """Hartmann-3 tasks (as ``hartmann3``) whose priors held ``x2`` at the center, 0.5.

    ``x2`` is the most important coordinate of Hartmann-3 (sensitivity as in the module
    docstring, unshifted function: x2 0.96, x1 0.45, x0 0.10); its optimum is near 0.85.
    """

    def __init__(self) -> None:
        from benchmarks.problems.synthetic import HartmannFamily

        super().__init__(HartmannFamily(3), "hartmann3_grown", prior_defaults={"x2": 0.5})


class LCBenchGrown(HeldSpace):
    """LCBench whose priors tuned six parameters and held ``param``; the target tunes all 7.

    Sensitivity of ``val_accuracy`` (module docstring; mean over the 34 tasks):
    learning_rate 0.45, num_layers 0.37, batch_size 0.28, weight_decay 0.16, momentum 0.10,
    max_units 0.07, max_dropout 0.05. The most important, ``learning_rate``, is held at 1e-3
    (PyTorch's SGD and scikit-learn's MLP default; best value of the tasks: median 0.017);
    the least important, ``max_dropout``, at 0.5 (the textbook dropout rate).

    Args:
        param: ``"learning_rate"`` or ``"max_dropout"``.
        data_dir: YAHPO data directory.
    """

    HELD = {"learning_rate": 1e-3, "max_dropout": 0.5}

    def __init__(self, param: str, data_dir: str | os.PathLike[str] | None = None) -> None:
        from benchmarks.problems.lcbench import LCBench

        held = {param: self.HELD[param]}
        super().__init__(LCBench(data_dir), f"lcbench_grown_{param}", prior_defaults=held)


class LCBenchShrunk(HeldSpace):
    """LCBench whose priors tuned all 7 parameters; the target holds ``momentum`` at 0.9.

    Args:
        data_dir: YAHPO data directory.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        from benchmarks.problems.lcbench import LCBench

        fixed = {"momentum": 0.9}
        super().__init__(LCBench(data_dir), "lcbench_shrunk", fixed_params=fixed)


class RPartGrown(HeldSpace):
    """``rbv2_rpart`` whose priors held ``cp`` at rpart's default 0.01; the target tunes all 4.

    Sensitivity of ``acc`` (module docstring; mean over the 117 tasks): cp 0.89, minbucket
    0.06, maxdepth 0.06, minsplit 0.02; ``cp`` matters most on 115 of 117 tasks. The best
    ``cp`` of the tasks has median 0.0015, so the default is plausible but not the optimum.

    Args:
        data_dir: YAHPO data directory.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        from benchmarks.problems.rbv2_rpart import RPart

        super().__init__(RPart(data_dir), "rbv2_rpart_grown", prior_defaults={"cp": 0.01})
