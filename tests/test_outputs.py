from __future__ import annotations

import math

import numpy as np
import pytest

from optuna_metabo._history.outputs import check_constraint_values
from optuna_metabo._history.outputs import constraint_key_order
from optuna_metabo._history.outputs import match_outputs
from optuna_metabo._history.outputs import prior_output_tasks
from optuna_metabo._history.outputs import PriorStudy
from optuna_metabo._history.outputs import TargetOutputs
from optuna_metabo._history.priors import SkippedPrior
from optuna_metabo._vocabulary import trial_constraints


def _study(
    name: str,
    values: list[list[float]],
    metric_names: tuple[str, ...] | None = None,
    constraints: dict[str, list[float]] | None = None,
) -> PriorStudy:
    params = [{"x": 0.1 * i} for i in range(len(values))]
    recorded = {k: np.array(v) for k, v in (constraints or {}).items()}
    y = np.array(values)
    return PriorStudy(name, params, y, np.ones(y.shape[1]), metric_names, recorded, len(y))


def test_named_metrics_match_by_name_in_any_order() -> None:
    prior = _study("p", [[1.0, 2.0, 3.0]], ("latency", "memory", "accuracy"))
    target = TargetOutputs(("accuracy", "latency"), 2)
    match = match_outputs(prior, target)
    assert not isinstance(match, SkippedPrior)
    assert match.columns == (2, 0) and match.by == "name"
    assert match.describe(target, prior) == "accuracy <- accuracy, latency <- latency (by name)"
    tasks = prior_output_tasks([prior], target)[0]
    np.testing.assert_allclose(tasks[0][0].values, [3.0])
    np.testing.assert_allclose(tasks[1][0].values, [1.0])


def test_single_objective_prior_informs_only_the_objective_it_names() -> None:
    prior = _study("p", [[0.5], [0.2]], ("accuracy",))
    target = TargetOutputs(("accuracy", "latency"), 2)
    per_output, skipped, matched = prior_output_tasks([prior], target)
    assert [len(t) for t in per_output] == [1, 0] and skipped == []
    assert matched == {"p": "accuracy <- accuracy (by name)"}


def test_unmatched_names_and_unnamed_count_mismatch_are_skipped_with_reasons() -> None:
    target = TargetOutputs(("accuracy", "latency"), 2)
    other = match_outputs(_study("q", [[1.0]], ("loss",)), target)
    assert isinstance(other, SkippedPrior)
    assert "none of its metrics (loss) matches the target's (accuracy, latency)" in other.reason
    unnamed = match_outputs(_study("u", [[1.0]]), target)
    assert isinstance(unnamed, SkippedPrior)
    assert "1 objective(s) and the target 2" in unnamed.reason
    assert "set_metric_names" in unnamed.reason


def test_unnamed_metrics_match_by_position_when_the_counts_agree() -> None:
    match = match_outputs(_study("p", [[1.0, 2.0]]), TargetOutputs(None, 2))
    assert not isinstance(match, SkippedPrior)
    assert match.columns == (0, 1) and match.by == "position"
    # A single-objective prior of a single-objective target, whether or not one is named.
    assert not isinstance(
        match_outputs(_study("p", [[1.0]]), TargetOutputs(("acc",), 1)), SkippedPrior
    )


def test_constraints_match_by_key_and_only_finite_values_are_kept() -> None:
    prior = _study(
        "p",
        [[1.0], [2.0], [3.0]],
        constraints={"0": [0.5, math.nan, -1.0], "memory": [1.0, 2.0, 3.0]},
    )
    target = TargetOutputs(None, 1, ("0", "time"))
    per_output, _, matched = prior_output_tasks([prior], target)
    assert [len(t) for t in per_output] == [1, 1, 0]
    np.testing.assert_allclose(per_output[1][0].values, [0.5, -1.0])
    assert per_output[1][0].params == [{"x": 0.0}, {"x": 0.2}]
    assert matched["p"] == "0 <- 0, constraint 0 (by position)"


def test_trial_constraints_read_both_storage_formats_in_a_stable_order() -> None:
    attrs = {"constraints": [0.5, -1.0], "constraints:memory": 2.0, "other": 1}
    assert trial_constraints(attrs) == {"0": 0.5, "1": -1.0, "memory": 2.0}
    assert constraint_key_order(["memory", "10", "2", "a"]) == ("2", "10", "a", "memory")


def test_constraint_values_are_checked_as_optuna_does() -> None:
    assert check_constraint_values([0, -1.5], 3, 2) == (0.0, -1.5)
    with pytest.raises(ValueError, match="cannot be NaN"):
        check_constraint_values([math.nan], 3, None)
    with pytest.raises(ValueError, match="returned 1 values for trial 3 but 2"):
        check_constraint_values([1.0], 3, 2)
    with pytest.raises(ValueError, match="sequence of floats"):
        check_constraint_values(1.0, 3, None)
    with pytest.raises(ValueError, match="non-number"):
        check_constraint_values(["a"], 3, None)
