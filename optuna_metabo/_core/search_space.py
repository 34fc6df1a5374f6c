"""Optuna distributions <-> points of the unit cube.

Every numerical parameter becomes one column in [0, 1]: log parameters are normalized in log
space, and integer or stepped parameters are widened by half a step on each side so that every
grid value owns an equally wide slice of [0, 1]; decoding rounds back onto the grid. A
categorical parameter becomes one one-hot column per choice. Values are matched by value, so a
prior study whose choices are ordered differently still lines up.

Rows may hold NaN: the columns of a parameter that a configuration does not have (a branch
parameter under another parent choice, or a parameter a prior study never tuned). What a NaN
stands for is decided by the model (see ``_model.py``); the optimizer only ever sees complete
rows, and ``inactive_mask`` says which of their columns the tree of conditions switches off.

A search space may also hold *fixed* parameters: parameters the target does not tune but holds
at a known value (``fixed_params``), kept as columns so that prior trials near that value count
more. Their columns are pinned to the value and never decoded into a suggestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution


# A prior value may lie this far (in normalized units) outside the target's range and still be
# used: it still tells the model about the trend near the boundary. Farther values are dropped.
OUT_OF_RANGE_MARGIN = 0.25
# Discrete parameters with more grid values than this are optimized like continuous ones by
# L-BFGS-B and rounded afterwards, instead of searched exhaustively.
MAX_EXHAUSTIVE_GRID = 64


@dataclass(frozen=True)
class _NumericalColumn:
    name: str
    distribution: FloatDistribution | IntDistribution
    column: int

    @property
    def step(self) -> float | None:
        step = self.distribution.step
        if isinstance(self.distribution, IntDistribution) and not self.distribution.log:
            return float(step if step is not None else 1)
        return None if step is None else float(step)

    @property
    def is_log(self) -> bool:
        return bool(self.distribution.log)

    def _bounds(self) -> tuple[float, float]:
        low, high = float(self.distribution.low), float(self.distribution.high)
        if isinstance(self.distribution, IntDistribution) and self.is_log:
            return math.log(low - 0.5), math.log(high + 0.5)
        if self.is_log:
            return math.log(low), math.log(high)
        half = 0.5 * self.step if self.step is not None else 0.0
        return low - half, high + half

    def encode(self, value: float) -> float:
        if self.is_log:
            if value <= 0:
                return math.nan
            value = math.log(value)
        low, high = self._bounds()
        return 0.5 if high == low else (value - low) / (high - low)

    def decode(self, x: float) -> int | float:
        low, high = self._bounds()
        raw = low + float(np.clip(x, 0.0, 1.0)) * (high - low)
        if self.is_log:
            raw = math.exp(raw)
        return self._snap(raw)

    def _snap(self, raw: float) -> int | float:
        dist = self.distribution
        if isinstance(dist, IntDistribution):
            step = dist.step if not dist.log else 1
            grid_value = dist.low + round((raw - dist.low) / step) * step
            return int(min(max(grid_value, dist.low), dist.high))
        if dist.step is not None:
            n_steps = round((raw - dist.low) / dist.step)
            stepped = dist.low + n_steps * dist.step
            return float(min(max(stepped, dist.low), dist.high))
        return float(min(max(raw, dist.low), dist.high))

    def snap_column(self, x: np.ndarray) -> np.ndarray:
        """Rounds normalized values ``(n,)`` onto the parameter's grid (clips if continuous)."""
        x = np.clip(x, 0.0, 1.0)
        if isinstance(self.distribution, FloatDistribution) and self.distribution.step is None:
            return x
        return np.array([self.encode(float(self.decode(v))) for v in x])

    @property
    def is_discrete(self) -> bool:
        dist = self.distribution
        return not (isinstance(dist, FloatDistribution) and dist.step is None)

    def grid(self) -> np.ndarray | None:
        """Normalized grid values of a discrete parameter with at most ``MAX_EXHAUSTIVE_GRID``
        values; None for continuous parameters and larger grids."""
        dist = self.distribution
        if not self.is_discrete:
            return None
        n_values = (dist.high - dist.low) / (dist.step or 1) + 1
        if n_values > MAX_EXHAUSTIVE_GRID:
            return None
        if isinstance(dist, IntDistribution):
            step = dist.step if not dist.log else 1
            values = np.arange(dist.low, dist.high + 1, step, dtype=float)
        else:
            assert dist.step is not None
            n = int(round((dist.high - dist.low) / dist.step))
            values = dist.low + dist.step * np.arange(n + 1)
        return np.array([self.encode(float(v)) for v in values])


@dataclass(frozen=True)
class _CategoricalColumns:
    name: str
    distribution: CategoricalDistribution
    first_column: int

    @property
    def columns(self) -> slice:
        return slice(self.first_column, self.first_column + len(self.distribution.choices))

    def index_of(self, value: Any) -> int | None:
        for i, choice in enumerate(self.distribution.choices):
            if _same_choice(choice, value):
                return i
        return None


@dataclass(frozen=True)
class Condition:
    """A branch parameter is active only while its parent takes one of ``values``.

    Attributes:
        parent: Name of the parent (categorical) parameter.
        values: The parent's choices under which the child is suggested.
    """

    parent: str
    values: tuple[Any, ...] = field(default_factory=tuple)

    def holds(self, parent_value: Any) -> bool:
        return any(_same_choice(v, parent_value) for v in self.values)


def _same_choice(a: Any, b: Any) -> bool:
    """Equal values of the same type, or equal numbers (1 == 1.0) across int and float."""
    numbers = (int, float)
    return a == b and (type(a) is type(b) or (isinstance(a, numbers) and isinstance(b, numbers)))


class SearchSpace:
    """Maps parameter dictionaries of one search space to rows of a [0, 1] matrix and back.

    Args:
        distributions:
            The target search space. Parameters whose distribution has a single value are
            kept (they occupy a constant column) so that the space round-trips exactly.
        conditions:
            Branch parameters by name, with the parent choices that switch them on.
        fixed:
            Parameters held at a value: ``name -> (distribution, value)``. They get columns,
            pinned at the value, and are not part of decoded suggestions.
    """

    def __init__(
        self,
        distributions: Mapping[str, BaseDistribution],
        conditions: Mapping[str, Condition] | None = None,
        fixed: Mapping[str, tuple[BaseDistribution, Any]] | None = None,
    ) -> None:
        fixed = dict(fixed or {})
        self.distributions = dict(sorted(distributions.items()))
        self.fixed_values = {name: value for name, (_, value) in sorted(fixed.items())}
        self.conditions = {
            child: condition
            for child, condition in (conditions or {}).items()
            if child in distributions
            and isinstance(distributions.get(condition.parent), CategoricalDistribution)
        }
        all_distributions = {**self.distributions, **{n: d for n, (d, _) in fixed.items()}}
        self._numerical: list[_NumericalColumn] = []
        self._categorical: list[_CategoricalColumns] = []
        self._columns_of: dict[str, np.ndarray] = {}
        column = 0
        for name, dist in sorted(all_distributions.items()):
            if isinstance(dist, CategoricalDistribution):
                self._categorical.append(_CategoricalColumns(name, dist, column))
                width = len(dist.choices)
            elif isinstance(dist, (FloatDistribution, IntDistribution)):
                self._numerical.append(_NumericalColumn(name, dist, column))
                width = 1
            else:
                raise TypeError(f"Unsupported distribution for {name!r}: {dist!r}.")
            self._columns_of[name] = np.arange(column, column + width)
            column += width
        self.dim = column
        self._pinned = self._pinned_row(fixed)

    def _pinned_row(self, fixed: Mapping[str, tuple[BaseDistribution, Any]]) -> np.ndarray:
        """The fixed parameters' encoded values, NaN in every tuned column: ``(dim,)``."""
        row = np.full(self.dim, np.nan)
        if fixed:
            encoded = self.encode({name: value for name, (_, value) in fixed.items()})
            if encoded is None:
                raise ValueError(f"A fixed value lies outside its parameter's range: {fixed}.")
            for name in fixed:
                row[self._columns_of[name]] = encoded[self._columns_of[name]]
        return row

    def columns_of(self, name: str) -> np.ndarray:
        """The columns of parameter ``name``."""
        return self._columns_of[name]

    @property
    def fixed_columns(self) -> np.ndarray:
        """Columns pinned to a fixed parameter's value."""
        return np.flatnonzero(np.isfinite(self._pinned))

    @property
    def is_empty(self) -> bool:
        return self.dim == 0

    @property
    def continuous_columns(self) -> np.ndarray:
        """Indices of columns that gradient-based optimization may move freely."""
        return np.array(
            [
                c.column
                for c in self._numerical
                if c.grid() is None and c.name not in self.fixed_values
            ],
            dtype=np.int64,
        )

    def discrete_choices(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each discrete parameter: its columns and the candidate rows of those columns.

        Returns:
            A list of ``(columns, options)`` pairs; ``options`` has shape ``(n_options,
            len(columns))``. Integer and stepped parameters give their grid, categorical
            parameters the rows of an identity matrix.
        """
        result = []
        for num in self._numerical:
            grid = num.grid()
            if grid is not None and num.name not in self.fixed_values:
                result.append((np.array([num.column]), grid[:, None]))
        for cat in self._categorical:
            if cat.name in self.fixed_values:
                continue
            n = len(cat.distribution.choices)
            result.append((np.arange(cat.first_column, cat.first_column + n), np.eye(n)))
        return result

    def categorical_columns(self) -> list[np.ndarray]:
        """The one-hot columns of each tuned categorical parameter."""
        return [
            np.arange(cat.first_column, cat.first_column + len(cat.distribution.choices))
            for cat in self._categorical
            if cat.name not in self.fixed_values
        ]

    def encode(self, params: Mapping[str, Any]) -> np.ndarray | None:
        """Encodes one parameter dictionary of this space.

        Args:
            params: Values by name, in the external representation Optuna reports. A fixed
                parameter that is absent takes its fixed value.

        Returns:
            A row of shape ``(dim,)`` with NaN in the columns of absent parameters, or None if a
            categorical value is not among the choices, or a numerical value is not a number or
            lies more than ``OUT_OF_RANGE_MARGIN`` outside the range.
        """
        params = {**self.fixed_values, **params}
        row = np.full(self.dim, np.nan)
        for num in self._numerical:
            if num.name not in params:
                continue
            value = params[num.name]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            x = num.encode(float(value))
            if not math.isfinite(x) or not -OUT_OF_RANGE_MARGIN <= x <= 1 + OUT_OF_RANGE_MARGIN:
                return None
            row[num.column] = x
        for cat in self._categorical:
            if cat.name not in params:
                continue
            index = cat.index_of(params[cat.name])
            if index is None:
                return None
            row[cat.columns] = 0.0
            row[cat.first_column + index] = 1.0
        return row

    def inactive_mask(self, rows: np.ndarray) -> np.ndarray:
        """Which columns of complete rows ``(n, dim)`` the conditions switch off: ``(n, dim)``.

        A branch parameter is inactive where its parent is inactive or takes another choice.
        """
        mask = np.zeros(rows.shape, dtype=bool)
        active: dict[str, np.ndarray] = {}
        for name in self.conditions:
            mask[:, self._columns_of[name]] = ~self._active(name, rows, active, 0)[:, None]
        return mask

    def _active(
        self, name: str, rows: np.ndarray, memo: dict[str, np.ndarray], depth: int
    ) -> np.ndarray:
        """Whether ``name`` is active in each row ``(n,)``; ``depth`` stops a cycle."""
        condition = self.conditions.get(name)
        if condition is None or depth > len(self.conditions):
            return np.ones(len(rows), dtype=bool)
        if name not in memo:
            parent = self._categorical_named(condition.parent)
            scores = np.nan_to_num(np.asarray(rows[:, parent.columns], dtype=float), nan=-np.inf)
            allowed = np.array([condition.holds(c) for c in parent.distribution.choices])
            memo[name] = allowed[scores.argmax(axis=1)] & self._active(
                condition.parent, rows, memo, depth + 1
            )
        return memo[name]

    def _categorical_named(self, name: str) -> _CategoricalColumns:
        return next(cat for cat in self._categorical if cat.name == name)

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        """Turns a row of shape ``(dim,)`` into parameters that lie inside every distribution."""
        params: dict[str, Any] = {}
        for num in self._numerical:
            x = float(row[num.column])
            params[num.name] = num.decode(x if math.isfinite(x) else 0.5)
        for cat in self._categorical:
            scores = np.nan_to_num(np.asarray(row[cat.columns], dtype=float), nan=-np.inf)
            params[cat.name] = cat.distribution.choices[int(np.argmax(scores))]
        return {name: params[name] for name in self.distributions}

    def snap(self, rows: np.ndarray) -> np.ndarray:
        """Projects rows of shape ``(n, dim)`` onto the feasible points of the space."""
        out = np.clip(np.nan_to_num(np.asarray(rows, dtype=float), nan=0.5), 0.0, 1.0)
        for num in self._numerical:
            if num.is_discrete:
                out[:, num.column] = num.snap_column(out[:, num.column])
        for cat in self._categorical:
            block = out[:, cat.columns]
            out[:, cat.columns] = np.eye(block.shape[1])[block.argmax(axis=1)]
        pinned = self.fixed_columns
        out[:, pinned] = self._pinned[pinned]
        return out

    def sobol_point(self, index: int, seed: int) -> np.ndarray:
        """Row ``index`` of a scrambled Sobol sequence fixed by ``seed``, snapped: ``(dim,)``."""
        from scipy.stats import qmc

        n = 1 << max(int(index).bit_length(), 1)
        return self.snap(
            qmc.Sobol(d=max(self.dim, 1), seed=seed).random(n)[index : index + 1, : self.dim]
        )[0]

    def sample_sobol(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        """Draws ``n`` rows from a scrambled Sobol sequence seeded by ``rng``, snapped onto the
        space: ``(n, dim)``."""
        from scipy.stats import qmc

        if self.dim == 0:
            return np.zeros((n, 0))
        sobol = qmc.Sobol(d=self.dim, scramble=True, seed=rng.randint(1 << 30))
        return self.snap(sobol.random(n))
