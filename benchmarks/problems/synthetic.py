"""Synthetic task families with controlled relatedness.

Every family has ``n_tasks`` tasks drawn from a generator seeded by the family name, so task
definitions are identical on every machine. Relatedness is controlled by the size of the
per-task input shift and output scaling.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from typing import Any
import zlib

import numpy as np

from benchmarks.problems.base import Problem


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _task_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def branin(x1: float, x2: float) -> float:
    """Branin function on its usual domain (minimum 0.397887).

    Args:
        x1: First input.
        x2: Second input.
    """
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN_MIN = {3: -3.86278, 6: -3.32237}


def hartmann(x: np.ndarray) -> float:
    """Hartmann-3 or Hartmann-6 function on the unit cube, chosen by ``len(x)``.

    Args:
        x: Input of length 3 or 6.
    """
    a, p = (_H3_A, _H3_P) if len(x) == 3 else (_H6_A, _H6_P)
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(a * (x - p) ** 2, axis=1))))


class BraninFamily(Problem):
    """Branin tasks ``a_t * branin(x - s_t) + b_t`` (minimized).

    Args:
        n_tasks: Number of tasks.
        max_shift: Largest input shift per coordinate (relatedness knob).
    """

    def __init__(self, n_tasks: int = 12, max_shift: float = 1.5) -> None:
        super().__init__("branin")
        rng = _rng(self.name)
        self._ids = _task_ids("t", n_tasks)
        self._shift = rng.uniform(-max_shift, max_shift, size=(n_tasks, 2))
        self._scale = rng.uniform(0.5, 2.0, size=n_tasks)
        self._offset = rng.uniform(-10.0, 10.0, size=n_tasks)

    def tasks(self) -> list[str]:
        """Return all task ids."""
        return list(self._ids)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define ``x1`` in [-5, 10] and ``x2`` in [0, 15]."""
        return {"x1": trial.suggest_float("x1", -5, 10), "x2": trial.suggest_float("x2", 0, 15)}

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Evaluate the shifted and scaled Branin function."""
        i = self._ids.index(task)
        s = self._shift[i]
        value = branin(params["x1"] - s[0], params["x2"] - s[1])
        return float(self._scale[i] * value + self._offset[i])

    def known_optimum(self, task: str) -> float | None:
        """The minimum at ``(pi, 2.275) + s_t`` always stays inside the domain."""
        i = self._ids.index(task)
        return float(self._scale[i] * 0.397887 + self._offset[i])


class HartmannFamily(Problem):
    """Hartmann tasks ``a_t * H(clip(x - s_t)) + b_t`` on the unit cube (minimized).

    Args:
        dim: 3 or 6.
        n_tasks: Number of tasks.
        max_shift: Largest input shift per coordinate (relatedness knob).
        sign: ``-1`` flips the sign of every task (used for negative transfer).
        name: Problem name; defaults to ``hartmann<dim>``.
    """

    def __init__(
        self,
        dim: int = 3,
        n_tasks: int = 12,
        max_shift: float = 0.1,
        sign: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"hartmann{dim}")
        rng = _rng(self.name)
        self.dim = dim
        self.sign = sign
        self._ids = _task_ids("t", n_tasks)
        self._shift = rng.uniform(-max_shift, max_shift, size=(n_tasks, dim))
        self._scale = rng.uniform(0.5, 2.0, size=n_tasks)
        self._offset = rng.uniform(-1.0, 1.0, size=n_tasks)

    def tasks(self) -> list[str]:
        """Return all task ids."""
        return list(self._ids)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define ``x0`` .. ``x<dim-1>`` in [0, 1]."""
        return {f"x{j}": trial.suggest_float(f"x{j}", 0.0, 1.0) for j in range(self.dim)}

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Evaluate the shifted and scaled Hartmann function."""
        i = self._ids.index(task)
        x = np.array([params[f"x{j}"] for j in range(self.dim)]) - self._shift[i]
        h = hartmann(np.clip(x, 0.0, 1.0))
        return float(self.sign * self._scale[i] * h + self._offset[i])

    def known_optimum(self, task: str) -> float | None:
        """The shifted optimum stays inside the cube (shifts are at most 0.1)."""
        if self.sign < 0:
            return None
        i = self._ids.index(task)
        return float(self._scale[i] * HARTMANN_MIN[self.dim] + self._offset[i])


class MixedFamily(Problem):
    """Two floats, an integer and a categorical; optimum location and penalties vary per task.

    Args:
        n_tasks: Number of tasks.
    """

    CHOICES = ("a", "b", "c", "d")

    def __init__(self, n_tasks: int = 12) -> None:
        super().__init__("mixed")
        rng = _rng(self.name)
        self._ids = _task_ids("t", n_tasks)
        self._center = rng.uniform(0.2, 0.8, size=(n_tasks, 2))
        self._n_opt = rng.integers(5, 16, size=n_tasks)
        base = np.array([0.0, 0.4, 0.8, 1.2])
        self._penalty = base + rng.uniform(0.0, 0.5, size=(n_tasks, 4))

    def tasks(self) -> list[str]:
        """Return all task ids."""
        return list(self._ids)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define ``x0``, ``x1`` in [0, 1], integer ``n`` in [1, 20], categorical ``c``."""
        return {
            "x0": trial.suggest_float("x0", 0.0, 1.0),
            "x1": trial.suggest_float("x1", 0.0, 1.0),
            "n": trial.suggest_int("n", 1, 20),
            "c": trial.suggest_categorical("c", list(self.CHOICES)),
        }

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Quadratic bowl plus integer and categorical penalties."""
        i = self._ids.index(task)
        x = np.array([params["x0"], params["x1"]])
        bowl = 5.0 * float(np.sum((x - self._center[i]) ** 2))
        n_pen = 0.02 * (params["n"] - int(self._n_opt[i])) ** 2
        return bowl + n_pen + float(self._penalty[i][self.CHOICES.index(params["c"])])

    def known_optimum(self, task: str) -> float | None:
        """Minimum penalty at the bowl center and the best integer."""
        return float(self._penalty[self._ids.index(task)].min())


class NegativeTransferFamily(Problem):
    """Negative transfer: Hartmann-3 targets whose priors are sign-flipped or unrelated tasks.

    Targets ``pos*`` are shifted Hartmann-3 tasks. Priors are drawn only from ``neg*``
    (sign-flipped shifted Hartmann-3, so the prior optimum is a bad region of the target) and
    ``unr*`` (quadratic bowls with random centers, unrelated to the target).

    Args:
        n_tasks: Number of tasks of each kind.
    """

    def __init__(self, n_tasks: int = 6) -> None:
        super().__init__("negative")
        self._pos = HartmannFamily(3, n_tasks, name="negative-pos")
        self._neg = HartmannFamily(3, n_tasks, sign=-1.0, name="negative-neg")
        rng = _rng("negative-unr")
        self._unr_center = rng.uniform(0.0, 1.0, size=(n_tasks, 3))
        self._n = n_tasks

    def tasks(self) -> list[str]:
        """Return target (``pos``) and prior (``neg``, ``unr``) task ids."""
        return [f"{k}{i:02d}" for k in ("pos", "neg", "unr") for i in range(self._n)]

    def all_targets(self) -> list[str]:
        """Only ``pos`` tasks are targets."""
        return [f"pos{i:02d}" for i in range(self._n)]

    def prior_pool(self, target: str) -> list[str]:
        """Priors come from the sign-flipped and unrelated tasks only."""
        return [t for t in self.tasks() if not t.startswith("pos")]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define ``x0``, ``x1``, ``x2`` in [0, 1]."""
        return self._pos.suggest(trial)

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Evaluate the positive, flipped or unrelated task."""
        kind, idx = task[:3], f"t{task[3:]}"
        if kind == "pos":
            return self._pos.evaluate(idx, params)
        if kind == "neg":
            return self._neg.evaluate(idx, params)
        x = np.array([params[f"x{j}"] for j in range(3)])
        return float(10.0 * np.sum((x - self._unr_center[int(task[3:])]) ** 2) - 3.0)

    def known_optimum(self, task: str) -> float | None:
        """Known for ``pos`` and ``unr`` tasks."""
        if task.startswith("pos"):
            return self._pos.known_optimum(f"t{task[3:]}")
        return -3.0 if task.startswith("unr") else None


class ConditionalFamily(Problem):
    """Conditional space: a ``model`` choice decides which further parameters exist.

    ``linear`` has ``alpha``; ``tree`` has ``depth`` and ``min_leaf``; ``net`` has ``lr`` and
    ``width``; ``scale`` is shared. Branch offsets and optimum locations vary per task.

    Args:
        n_tasks: Number of tasks.
    """

    MODELS = ("linear", "tree", "net")

    def __init__(self, n_tasks: int = 12) -> None:
        super().__init__("conditional")
        rng = _rng(self.name)
        self._ids = _task_ids("t", n_tasks)
        self._offset = np.array([0.3, 0.1, 0.0]) + rng.uniform(0.0, 0.25, size=(n_tasks, 3))
        self._alpha = rng.uniform(-3.5, -0.5, size=n_tasks)
        self._depth = rng.integers(3, 11, size=n_tasks)
        self._leaf = rng.uniform(0.05, 0.4, size=n_tasks)
        self._lr = rng.uniform(-3.5, -1.5, size=n_tasks)
        self._width = rng.integers(16, 257, size=n_tasks)
        self._scale = rng.uniform(0.2, 0.8, size=n_tasks)

    def tasks(self) -> list[str]:
        """Return all task ids."""
        return list(self._ids)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define the conditional space."""
        model = trial.suggest_categorical("model", list(self.MODELS))
        params: dict[str, Any] = {"model": model, "scale": trial.suggest_float("scale", 0, 1)}
        if model == "linear":
            params["alpha"] = trial.suggest_float("alpha", 1e-4, 1.0, log=True)
        elif model == "tree":
            params["depth"] = trial.suggest_int("depth", 1, 12)
            params["min_leaf"] = trial.suggest_float("min_leaf", 0.0, 0.5)
        else:
            params["lr"] = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            params["width"] = trial.suggest_int("width", 8, 512, log=True)
        return params

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Branch offset plus a branch-specific bowl plus the shared ``scale`` term."""
        i = self._ids.index(task)
        model = params["model"]
        value = float(self._offset[i][self.MODELS.index(model)])
        value += (params["scale"] - self._scale[i]) ** 2
        if model == "linear":
            value += 0.2 * (math.log10(params["alpha"]) - self._alpha[i]) ** 2
        elif model == "tree":
            value += 0.02 * (params["depth"] - int(self._depth[i])) ** 2
            value += (params["min_leaf"] - self._leaf[i]) ** 2
        else:
            value += 0.3 * (math.log10(params["lr"]) - self._lr[i]) ** 2
            value += 0.05 * (math.log2(params["width"]) - math.log2(int(self._width[i]))) ** 2
        return float(value)

    def known_optimum(self, task: str) -> float | None:
        """Best branch offset (every bowl reaches zero at an integer-valid point)."""
        return float(self._offset[self._ids.index(task)].min())


SYNTHETIC_FACTORIES: dict[str, Callable[[], Problem]] = {
    "branin": BraninFamily,
    "hartmann3": lambda: HartmannFamily(3),
    "hartmann6": lambda: HartmannFamily(6),
    "mixed": MixedFamily,
    "negative": NegativeTransferFamily,
    "conditional": ConditionalFamily,
}
