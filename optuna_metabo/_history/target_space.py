"""The target's search space, learned from the trials it has run (Optuna is define-by-run).

The space is the union of the parameters of the completed trials, not their intersection, so
branch parameters of a conditional space are modelled too. Which parent choice switches a
branch parameter on is read off the trials: a categorical parameter present wherever the
branch is, whose values with and without the branch do not overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from optuna_metabo._core.search_space import Condition


def union_search_space(
    trials: Sequence[Mapping[str, BaseDistribution]],
) -> dict[str, BaseDistribution]:
    """Every parameter of the trials with its latest distribution.

    A parameter whose trials disagree on its kind, log scale or categorical choices (a dynamic
    space that Optuna cannot sample relatively) is left out, as are single-valued ones; the
    independent sampler takes them.

    Args:
        trials: The distributions of each trial, oldest first.
    """
    latest: dict[str, BaseDistribution] = {}
    conflicting: set[str] = set()
    for distributions in trials:
        for name, dist in distributions.items():
            if name in latest and not _compatible(latest[name], dist):
                conflicting.add(name)
            latest[name] = dist
    return {
        name: dist
        for name, dist in sorted(latest.items())
        if name not in conflicting and not dist.single()
    }


def _compatible(old: BaseDistribution, new: BaseDistribution) -> bool:
    if type(old) is not type(new):
        return False
    if isinstance(old, (FloatDistribution, IntDistribution)):
        return old.log == getattr(new, "log", None)
    return old == new


def learn_conditions(
    trials: Sequence[Mapping[str, Any]], distributions: Mapping[str, BaseDistribution]
) -> dict[str, Condition]:
    """The parent choice that switches each branch parameter on, where the trials show one.

    Args:
        trials: Parameters of each completed trial.
        distributions: The search space (see ``union_search_space``).

    Returns:
        ``child -> Condition``. A parameter that some trials lack without such a parent (one
        added in the middle of a study) has no condition.
    """
    conditions: dict[str, Condition] = {}
    for child in distributions:
        with_child = [p for p in trials if child in p]
        if not with_child or len(with_child) == len(trials):
            continue
        without = [p for p in trials if child not in p]
        candidates = [
            (sum(parent in p for p in trials), condition)
            for parent, dist in distributions.items()
            if parent != child and isinstance(dist, CategoricalDistribution)
            for condition in [_separating_condition(parent, dist, with_child, without)]
            if condition is not None
        ]
        if candidates:  # the closest ancestor: present in the fewest trials
            conditions[child] = min(candidates, key=lambda c: c[0])[1]
    return conditions


def _separating_condition(
    parent: str,
    dist: CategoricalDistribution,
    with_child: Sequence[Mapping[str, Any]],
    without: Sequence[Mapping[str, Any]],
) -> Condition | None:
    """``parent``'s choices under which the child appears, if they never appear without it and
    the parent has also been seen with a choice that leaves the child out (so that a sibling
    that always comes with the child is not mistaken for its parent)."""
    if any(parent not in p for p in with_child):
        return None
    on = {_choice_index(dist, p[parent]) for p in with_child}
    off = {_choice_index(dist, p[parent]) for p in without if parent in p}
    if None in on or not off or on & off:  # a parent must have been seen switching it off
        return None
    return Condition(
        parent, tuple(dist.choices[i] for i in sorted(i for i in on if i is not None))
    )


def _choice_index(dist: CategoricalDistribution, value: Any) -> int | None:
    for i, choice in enumerate(dist.choices):
        if choice == value and type(choice) is type(value):
            return i
    return None
