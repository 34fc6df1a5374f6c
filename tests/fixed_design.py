"""Prior studies made by a fixed design, so that tests of our method never depend on another
sampler's random stream (TPE, GPSampler and CMA-ES change their draws between Optuna releases).

``DesignSampler`` draws every parameter from a NumPy ``RandomState`` seeded by the study seed,
the trial number and the parameter name, and maps the draw to the distribution with the
arithmetic below. NumPy freezes ``RandomState``'s stream, so the same seed gives the same
studies with every Optuna, NumPy and SciPy release.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import math
from typing import Any
import zlib

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from optuna.trial import TrialState


def design_value(distribution: BaseDistribution, u: float) -> Any:
    """The value of ``distribution`` at quantile ``u`` in ``[0, 1)`` of a uniform design.

    Args:
        distribution: An Optuna distribution.
        u: A uniform draw.
    """
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(u * len(distribution.choices))]
    if isinstance(distribution, IntDistribution):
        n_values = (distribution.high - distribution.low) // distribution.step + 1
        return distribution.low + distribution.step * int(u * n_values)
    assert isinstance(distribution, FloatDistribution)
    low, high = distribution.low, distribution.high
    if distribution.log:
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    if distribution.step is not None:
        n_values = int(round((high - low) / distribution.step)) + 1
        return float(min(high, low + distribution.step * int(u * n_values)))
    return float(low + u * (high - low))


class DesignSampler(BaseSampler):
    """Samples each parameter independently from a seeded, version-stable uniform design.

    Args:
        seed: The design's seed.
        constraints_func: Stores each finished trial's constraint values under the system
            attribute ``"constraints"``, as Optuna's samplers do.
    """

    def __init__(
        self,
        seed: int = 0,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
    ) -> None:
        self._seed = seed
        self._constraints_func = constraints_func

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        key = [self._seed, trial.number, zlib.crc32(param_name.encode())]
        u = float(np.random.RandomState(key).uniform())
        return design_value(param_distribution, u)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if self._constraints_func is not None and state == TrialState.COMPLETE:
            constraints = [float(c) for c in self._constraints_func(trial)]
            study._storage.set_trial_system_attr(trial._trial_id, "constraints", constraints)
