"""Subsampling a task's rows: prefix-stable and biased towards the best."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np

from optuna_metabo._core.subsample import subsample_indices


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60, unique=True),
    st.integers(1, 59),
)
@settings(max_examples=60, deadline=None)
def test_subsampling_is_prefix_stable_and_keeps_the_best_half(
    values: list[float], cap: int
) -> None:
    y = np.array(values)
    keep = subsample_indices(y, cap, np.random.RandomState(0))
    assert len(keep) == min(cap, len(y)) and len(set(keep.tolist())) == len(keep)
    assert list(keep) == sorted(keep)
    best = np.argsort(y)[: math.ceil(min(cap, len(y)) / 2)]
    assert set(best.tolist()) <= set(keep.tolist())
    # One point fewer keeps a subset of the same rows: a refit sees almost the same data.
    smaller = subsample_indices(y, cap - 1, np.random.RandomState(0)) if cap > 1 else keep[:0]
    assert set(smaller.tolist()) <= set(keep.tolist())


def test_subsampling_prefers_the_best_and_keeps_everything_under_the_cap() -> None:
    y = np.array([5.0, 1.0, 3.0, 0.0, 4.0, 2.0, 6.0, 7.0])
    keep = subsample_indices(y, 4, np.random.RandomState(0))
    assert len(keep) == 4 and {3, 1} <= set(keep.tolist())
    np.testing.assert_array_equal(subsample_indices(y, 8, np.random.RandomState(0)), np.arange(8))
