"""Problem interface shared by all benchmark problems, and a registry for problem plugins."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any
from typing import Literal
from typing import TypeVar

import numpy as np
import optuna


Direction = Literal["minimize", "maximize"]
_P = TypeVar("_P")


class RandomTrial:
    """A minimal stand-in for :class:`optuna.trial.Trial` that samples uniformly at random.

    It lets a define-by-run ``suggest`` function (conditional spaces included) draw the random
    configurations used to estimate regret bounds, without the overhead of a study.

    Args:
        rng: Random generator to draw from.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self.params: dict[str, Any] = {}

    def suggest_float(
        self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None
    ) -> float:
        """Draw a float (log-uniform when ``log``), like ``Trial.suggest_float``."""
        if log:
            value = float(math.exp(self._rng.uniform(math.log(low), math.log(high))))
        else:
            value = float(self._rng.uniform(low, high))
        if step is not None:
            value = low + round((value - low) / step) * step
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        """Draw an integer (log-uniform when ``log``), like ``Trial.suggest_int``."""
        if log:
            lo, hi = math.log(low - 0.5), math.log(high + 0.5)
            value = int(min(high, max(low, round(math.exp(self._rng.uniform(lo, hi))))))
        else:
            value = int(self._rng.integers(low, high + 1))
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """Draw one of ``choices`` uniformly, like ``Trial.suggest_categorical``."""
        value = choices[int(self._rng.integers(len(choices)))]
        self.params[name] = value
        return value


class MidpointTrial(RandomTrial):
    """A stand-in trial that answers every suggestion with the middle of its range (in log
    scale for log parameters; the first choice of a categorical), to read a space's centre."""

    def __init__(self) -> None:
        super().__init__(np.random.default_rng(0))

    def suggest_float(
        self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None
    ) -> float:
        """The midpoint of ``[low, high]``."""
        value = math.sqrt(low * high) if log else 0.5 * (low + high)
        self.params[name] = float(value)
        return float(value)

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        """The integer nearest the midpoint."""
        value = int(round(math.sqrt(low * high) if log else 0.5 * (low + high)))
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """The first choice."""
        self.params[name] = choices[0]
        return choices[0]


class LocalTrial(RandomTrial):
    """A stand-in trial that draws near ``center``, to refine a good configuration.

    A numerical value moves by a normal step of ``radius`` times its (log) range and is
    clipped to the range; a categorical one changes to a uniform choice with probability
    ``radius``. A parameter that ``center`` lacks (a branch it did not take) is uniform.

    Args:
        rng: Random generator to draw from.
        center: The configuration to draw near.
        radius: Step size as a share of each range, in ``(0, 1]``.
    """

    def __init__(self, rng: np.random.Generator, center: dict[str, Any], radius: float) -> None:
        super().__init__(rng)
        self._center = center
        self._radius = radius

    def _near(self, center: float, low: float, high: float) -> float:
        return float(
            np.clip(center + self._rng.normal(0.0, self._radius * (high - low)), low, high)
        )

    def suggest_float(
        self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None
    ) -> float:
        """A float near the center's, like ``Trial.suggest_float``."""
        if name not in self._center:
            return super().suggest_float(name, low, high, log=log, step=step)
        center = float(self._center[name])
        if log:
            value = math.exp(self._near(math.log(center), math.log(low), math.log(high)))
        else:
            value = self._near(center, low, high)
        value = min(max(value, low), high)
        if step is not None:
            value = min(low + round((value - low) / step) * step, high)
        self.params[name] = float(value)
        return float(value)

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        """An integer near the center's, like ``Trial.suggest_int``."""
        if name not in self._center:
            return super().suggest_int(name, low, high, log=log)
        center = float(self._center[name])
        if log:
            u = self._near(math.log(center), math.log(low - 0.5), math.log(high + 0.5))
            value = int(min(high, max(low, round(math.exp(u)))))
        else:
            value = int(min(high, max(low, round(self._near(center, low - 0.5, high + 0.5)))))
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """The center's choice, or with probability ``radius`` a uniform one."""
        center = self._center.get(name)
        if name in self._center and center in choices and self._rng.random() >= self._radius:
            self.params[name] = center
            return center
        return super().suggest_categorical(name, choices)


class HoldingTrial:
    """Proxy of a trial that returns held values instead of suggesting those parameters.

    A define-by-run ``suggest`` run on it defines the space with the held parameters removed.

    Args:
        trial: Optuna trial or :class:`RandomTrial` that suggests the other parameters.
        held: Held parameter values by name.
    """

    def __init__(self, trial: Any, held: dict[str, Any]) -> None:
        self._trial = trial
        self._held = held

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        """The held value, or ``trial.suggest_float``."""
        if name in self._held:
            return self._held[name]
        return self._trial.suggest_float(name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        """The held value, or ``trial.suggest_int``."""
        if name in self._held:
            return self._held[name]
        return self._trial.suggest_int(name, *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """The held value, or ``trial.suggest_categorical``."""
        if name in self._held:
            return self._held[name]
        return self._trial.suggest_categorical(name, choices)


class Problem:
    """A family of related tasks sharing one search space.

    Subclasses implement :meth:`tasks`, :meth:`suggest` and :meth:`evaluate`. A task is named by
    a string id. Runs use a leave-one-out protocol: the target task is optimized, prior studies
    come from :meth:`prior_pool`. The prior studies may be tuned in another space
    (:meth:`prior_suggest`), holding parameters the target tunes (:meth:`prior_defaults`) or
    tuning parameters the target holds (:meth:`fixed_params`).

    Args:
        name: Problem name used in study names and reports (no spaces or dashes).
        direction: ``"minimize"`` or ``"maximize"``.
    """

    family: str = "synthetic"

    def __init__(self, name: str, direction: Direction = "minimize") -> None:
        self.name = name
        self.direction = direction

    def tasks(self) -> list[str]:
        """Return all task ids of the family."""
        raise NotImplementedError

    def all_targets(self) -> list[str]:
        """Return every task that may be a target."""
        return self.tasks()

    def default_targets(self) -> list[str]:
        """Return the target tasks used when none are given (the first four targets)."""
        return self.all_targets()[:4]

    def prior_pool(self, target: str) -> list[str]:
        """Return the tasks that priors for ``target`` may be drawn from.

        Args:
            target: The target task id.
        """
        return [t for t in self.tasks() if t != target]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define the search space on ``trial`` (Optuna trial or :class:`RandomTrial`).

        Args:
            trial: Object with ``suggest_float``/``suggest_int``/``suggest_categorical``.
        """
        raise NotImplementedError

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Return the objective value of ``params`` on ``task``.

        Args:
            task: Task id.
            params: Parameters as returned by :meth:`suggest`.
        """
        raise NotImplementedError

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Vectorized :meth:`evaluate`; override when a batch is cheaper.

        Args:
            task: Task id.
            params: List of parameter dicts.
        """
        return np.array([self.evaluate(task, p) for p in params], dtype=float)

    def random_values(self, task: str, n: int, seed: int) -> np.ndarray:
        """Evaluate ``n`` uniformly random configurations.

        Args:
            task: Task id.
            n: Number of configurations.
            seed: Seed of the random generator.
        """
        return self.evaluate_many(task, self.random_configurations(n, seed))

    def random_configurations(self, n: int, seed: int) -> list[dict[str, Any]]:
        """Draw ``n`` uniformly random configurations of the target space.

        Args:
            n: Number of configurations.
            seed: Seed of the random generator.
        """
        rng = np.random.default_rng(seed)
        configs = []
        for _ in range(n):
            trial = RandomTrial(rng)
            self.suggest(trial)
            configs.append(trial.params)
        return configs

    def configurations_near(
        self, center: dict[str, Any], n: int, radius: float, rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        """Draw ``n`` configurations of the target space near ``center`` (see
        :class:`LocalTrial`).

        Args:
            center: A configuration of the target space.
            n: Number of configurations.
            radius: Step size as a share of each parameter's range.
            rng: Random generator.
        """
        configs = []
        for _ in range(n):
            trial = LocalTrial(rng, center, radius)
            self.suggest(trial)
            configs.append(trial.params)
        return configs

    def known_optimum(self, task: str) -> float | None:
        """Return the exact optimum of ``task`` when known analytically, else ``None``.

        Args:
            task: Task id.
        """
        return None

    def static_bounds(self, task: str) -> tuple[float, float] | None:
        """Return fixed ``(best, worst)`` regret bounds, or ``None`` to estimate them.

        Args:
            task: Task id.
        """
        return None

    def objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """Return an Optuna objective for ``task``.

        Args:
            task: Task id.
        """

        def _objective(trial: optuna.Trial) -> float:
            return self.evaluate(task, self.suggest(trial))

        return _objective

    def prior_suggest(self, trial: Any) -> dict[str, Any]:
        """Define the search space the prior studies were tuned in (default: :meth:`suggest`).

        Args:
            trial: Object with ``suggest_float``/``suggest_int``/``suggest_categorical``.
        """
        return self.suggest(trial)

    def prior_objective(self, task: str) -> Callable[[optuna.Trial], float]:
        """Return the Optuna objective of a prior study on ``task`` (in the prior space).

        It is :meth:`objective` unless :meth:`prior_suggest` is overridden; then it evaluates
        the configuration that :meth:`prior_suggest` defines.

        Args:
            task: Task id.
        """
        if type(self).prior_suggest is Problem.prior_suggest:
            return self.objective(task)

        def _objective(trial: optuna.Trial) -> float:
            return self.evaluate(task, self.prior_suggest(trial))

        return _objective

    def prior_defaults(self) -> dict[str, Any]:
        """Return the values at which the priors held parameters that the target tunes."""
        return {}

    def fixed_params(self) -> dict[str, Any]:
        """Return the values at which the target holds parameters that the priors tuned."""
        return {}

    def prior_to_target(self, params: dict[str, Any]) -> dict[str, Any]:
        """Map a prior configuration to the target space.

        Parameters the priors held get their :meth:`prior_defaults`; parameters the target
        holds (:meth:`fixed_params`) are dropped, so :meth:`evaluate` uses the held values.

        Args:
            params: Parameters of a prior trial.
        """
        fixed = self.fixed_params()
        merged = {**self.prior_defaults(), **params}
        return {k: v for k, v in merged.items() if k not in fixed}


ProblemFactory = Callable[[], Problem]
_REGISTRY: dict[str, ProblemFactory] = {}


def register_problem(name: str, factory: ProblemFactory) -> None:
    """Register a problem plugin under ``name``.

    Args:
        name: Problem name used on the command line (``--problems``).
        factory: Zero-argument callable returning the :class:`Problem`.
    """
    _REGISTRY[name] = factory


def registered_problems() -> dict[str, ProblemFactory]:
    """Return a copy of the problem registry."""
    return dict(_REGISTRY)


def build_once(name: str, factories: Mapping[str, Callable[[], _P]], cache: dict[str, _P]) -> _P:
    """Build (once per process, kept in ``cache``) and return the problem ``name``.

    Args:
        name: A key of ``factories``.
        factories: Zero-argument problem factories by name.
        cache: The problems built so far, by name.
    """
    if name not in cache:
        if name not in factories:
            raise KeyError(f"Unknown problem {name!r}; known: {sorted(factories)}")
        cache[name] = factories[name]()
    return cache[name]
