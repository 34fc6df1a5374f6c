"""Matching prior trials to the target space and encoding them: bounds, choices, parameters
the prior lacks, duplicates. No storage is involved."""

from __future__ import annotations

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution

from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._history.priors import encode_task
from optuna_metabo._history.priors import EncodedPrior
from optuna_metabo._history.priors import PriorTask
from optuna_metabo._history.priors import SkippedPrior


X = FloatDistribution(0.0, 1.0)


def _task(xs: list[float], values: list[float], name: str = "bert-imdb") -> PriorTask:
    distributions: dict[str, BaseDistribution] = {"x": X}
    params = [{"x": x} for x in xs]
    return PriorTask(name, params, np.array(values, dtype=float), len(xs) + 2, distributions)


def test_encode_task_handles_bounds_choices_and_missing_params() -> None:
    task = _task([i / 5 for i in range(6)], [-float(i) for i in range(6)])
    narrow = SearchSpace({"x": FloatDistribution(0.0, 0.5)})
    encoded = encode_task(task, narrow, 100, np.random.RandomState(0))
    assert isinstance(encoded, EncodedPrior)
    # x in {0, .2, .4, .6} fit in [0, 0.5] with the 0.25 margin (0.6 -> 1.2); 0.8 and 1.0 do not.
    np.testing.assert_allclose(np.sort(encoded.x[:, 0]), [0.0, 0.4, 0.8, 1.2])
    np.testing.assert_allclose(np.sort(encoded.y), [-3.0, -2.0, -1.0, 0.0])
    assert (encoded.n_available, encoded.n_total) == (4, 8)
    grown = SearchSpace({"x": X, "extra": CategoricalDistribution(["a", "b"])})
    used = encode_task(task, grown, 100, np.random.RandomState(0))
    assert isinstance(used, EncodedPrior) and used.match.lacked == {"extra": "unknown"}
    assert np.isnan(used.x[:, grown.columns_of("extra")]).all()
    assert list(used.unknown_columns) == list(grown.columns_of("extra"))
    too_little = SearchSpace(
        {"x": X, "extra": CategoricalDistribution(["a", "b"]), "more": FloatDistribution(0, 1)}
    )
    skipped = encode_task(task, too_little, 100, np.random.RandomState(0))
    assert (
        isinstance(skipped, SkippedPrior) and "shares only 1 of the target's 3" in skipped.reason
    )
    kind = SearchSpace({"x": CategoricalDistribution(["low", "high"])})
    mismatch = encode_task(task, kind, 100, np.random.RandomState(0))
    assert isinstance(mismatch, SkippedPrior) and "shares only 0" in mismatch.reason


def test_prior_defaults_fill_a_parameter_the_prior_never_tuned() -> None:
    task = _task([0.0, 0.5], [1.0, 2.0])
    grown = SearchSpace({"x": X, "y": FloatDistribution(0.0, 10.0)})
    encoded = encode_task(task, grown, 100, np.random.RandomState(0), {"y": 2.5})
    assert isinstance(encoded, EncodedPrior)
    assert encoded.match.lacked == {"y": "default"} and len(encoded.unknown_columns) == 0
    np.testing.assert_allclose(encoded.x[:, grown.columns_of("y")[0]], [0.25, 0.25])


def test_duplicate_configurations_are_averaged_into_one_point() -> None:
    task = _task([0.5, 0.1, 0.5, 0.5], [1.0, 7.0, 3.0, 2.0])
    encoded = encode_task(task, SearchSpace({"x": X}), 100, np.random.RandomState(0))
    assert isinstance(encoded, EncodedPrior)
    order = np.argsort(encoded.x[:, 0])
    np.testing.assert_allclose(encoded.x[order, 0], [0.1, 0.5])
    np.testing.assert_allclose(encoded.y[order], [7.0, 2.0])
    assert encoded.n_available == 2
    assert [p["x"] for p in np.array(encoded.params)[order]] == [0.1, 0.5]


def test_none_of_the_trials_inside_the_target_space_is_a_skip() -> None:
    task = _task([0.9, 1.0], [1.0, 2.0])
    far = SearchSpace({"x": FloatDistribution(-10.0, -9.0)})
    skipped = encode_task(task, far, 100, np.random.RandomState(0))
    assert isinstance(skipped, SkippedPrior)
    assert skipped.reason == "none of its trials lies inside the target search space"
