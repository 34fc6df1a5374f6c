"""``MetaBOSampler.last_proposal()``: what the sampler knew when it chose its latest trial.

One read-only object for whoever draws the model (the dashboard's slice plot): the search
space, the proposed point and the posterior in the objective's units, as the sampler saw them.
It holds the very GP that chose the trial, so nothing is refitted or factorized again.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from typing import Protocol
from typing import TYPE_CHECKING

import numpy as np
from optuna.distributions import BaseDistribution


if TYPE_CHECKING:
    from optuna_metabo._core.proposal import PosteriorView


class SpaceView(Protocol):
    """The search space of a proposal, as a reader of it needs it.

    Rows are normalized: every numerical parameter is a column in ``[0, 1]`` (log ones in log
    space), every categorical one a block of one-hot columns.
    """

    distributions: dict[str, BaseDistribution]
    fixed_values: dict[str, Any]
    dim: int

    def columns_of(self, name: str) -> np.ndarray:
        """The columns of parameter ``name``."""

    def encode(self, params: Mapping[str, Any]) -> np.ndarray | None:
        """A row ``(dim,)`` of a parameter dictionary, NaN where a parameter is absent; None
        outside the space."""

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        """The parameters of a row ``(dim,)``."""

    def snap(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``(n, dim)`` rounded onto the grids of the discrete parameters."""


@dataclass(frozen=True)
class LastProposal:
    """The sampler's latest model-phase proposal, read-only.

    Attributes:
        trial_number: The trial it was made for.
        space: The search space it was made in.
        x: The proposed point, normalized ``(dim,)``.
        source: Its ``metabo:source``.
        sign: ``1`` if the objective is minimized, ``-1`` if maximized.
        has_posterior: Whether it has a single posterior to draw (one objective, no
            constraints and no failure model); ``predict`` needs one.
    """

    trial_number: int
    space: SpaceView
    x: np.ndarray
    source: str
    _view: PosteriorView | None
    sign: float

    @property
    def has_posterior(self) -> bool:
        return self._view is not None

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The posterior mean and standard deviation in the objective's units and direction,
        and the log expected improvement, at normalized ``rows`` ``(m, dim)``: ``(m,)`` each.

        Raises:
            ValueError: If the proposal has no single posterior (``has_posterior``).
        """
        import torch

        from optuna_metabo._core.acquisition import LogExpectedImprovement

        view = self._view
        if view is None:
            raise ValueError("This proposal has no single posterior to predict with.")
        with torch.no_grad(), _one_torch_thread():
            x = torch.as_tensor(rows, dtype=torch.float64, device=view.model.x.device)
            mean, variance = view.model.posterior(x, view.target_index)
            log_ei = LogExpectedImprovement(view.model, view.target_index, view.best)(x)
        user_mean = self.sign * (view.offset + view.scale * mean.cpu().numpy())
        std = abs(view.scale) * np.sqrt(variance.cpu().numpy())
        return user_mean, std, log_ei.cpu().numpy()


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Runs torch on one intra-op thread, as the engine does for these small matrices."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
