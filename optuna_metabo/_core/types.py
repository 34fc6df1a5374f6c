"""The plain data the numeric core takes and gives: its settings, a prior task's rows in the
target's normalized space, and how a proposal chose its point. Torch-free, so the glue can name
them without loading the model."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
import enum

import numpy as np

from optuna_metabo._core.pruned import UnfinishedRows


@dataclass
class PriorRows:
    """A prior task in the target space.

    Attributes:
        name: The prior study's name.
        x: Normalized inputs, shape ``(n, dim)``; NaN where a trial lacks a parameter (the
            columns in ``unknown_columns`` for every trial; others where a branch was off).
        y: Values of one output (lower is better), shape ``(n,)``.
        unknown_columns: Columns of target parameters the study never tuned, without a
            default: the model learns the value the study held them at.
        unfinished: Its pruned and failed trials in the target space, or None (see
            ``pruned``).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    unknown_columns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unfinished: UnfinishedRows | None = None


class ProposalSource(enum.Enum):
    """How a proposal chose its point (the glue records it as ``metabo:source``)."""

    PRIOR_DESIGN = "prior_design"  # one of the best prior configurations (a portfolio)
    MODEL = "model"  # maximizes the acquisition under the multi-task GP
    TARGET_MODEL = "target_model"  # the same with a GP on the target alone (priors set aside)


INACTIVE = ("learned", "indicator")


@dataclass(frozen=True)
class ModelOptions:
    """Structural choices of the ICM model.

    Attributes:
        own_lengthscales: The target's own part has lengthscales of its own (with more than
            one task); see ``model.ICMKernelModule``.
        correlation_prior: A Beta prior (up to its constant) on ``(1 + rho) / 2`` for the
            correlation ``rho`` of each prior task with the target, favouring positive transfer
            (as BoTorch's MultiTaskGP does since its PR 3271).
        correlation_beta: Its parameters: ``(2.5, 1.5)`` for objectives; a failure wall is
            expected to be shared, so the failure indicator's prior is stronger.
    """

    own_lengthscales: bool = True
    correlation_prior: bool = True
    correlation_beta: tuple[float, float] = (2.5, 1.5)


@dataclass(frozen=True)
class EngineSettings:
    """Knobs of MetaBOSampler's numeric core, for experiments (``MetaBOSampler(...,
    engine_settings=EngineSettings(...))``). The defaults are the measured choices
    (BENCHMARKS.md); the first five are ``MetaBOSampler`` arguments of the same names.

    Attributes:
        rank: Rank of the task covariance factor.
        output_transform: Per-task transform of objective values.
        max_fit_points: Cap on points used to fit the GP hyperparameters each trial.
        n_prior_design_trials: First target trials chosen among the priors' best
            configurations.
        device: Torch device of the GP.
        n_candidates_per_prior: Each prior's best configurations offered to the design; None:
            just enough for the design to draw on, ``ceil(n_prior_design_trials / n_priors)``.
        n_sobol: Sobol points scored before the acquisition's local search.
        n_local_search: Starts refined by L-BFGS-B.
        own_lengthscales: See ``ModelOptions``.
        correlation_prior: See ``ModelOptions``.
        correlation_beta: See ``ModelOptions``.
        guard_interval: Target trials a negative-transfer guard decision to keep the priors
            stands before it is checked again.
        guard_start: Completed target trials before the guard is first checked.
        pruned_trials: How pruned and failed trials become observations: ``"curve"``,
            ``"rank"`` or ``"ignore"`` (see docs/pruning.md).
        design_branches: The design re-uses the categorical choices that won on the priors
            before repeating one.
        mislead_log_odds: Once the log odds that some prior ranks the target's results (against
            a random ranking) fall below minus this, the design ends and the task correlations
            lose their positive prior; None: never.
        inactive_inputs: A branch parameter switched off is a learned value of its column
            (``"learned"``) or the middle of its range plus an input that says so
            (``"indicator"``).
    """

    rank: int = 1
    output_transform: str = "standardize"
    max_fit_points: int = 300
    n_prior_design_trials: int = 5
    device: str = "cpu"
    n_candidates_per_prior: int | None = None
    n_sobol: int = 512
    n_local_search: int = 5
    own_lengthscales: bool = True
    correlation_prior: bool = True
    correlation_beta: tuple[float, float] = (2.5, 1.5)
    guard_interval: int = 1
    guard_start: int = 10
    pruned_trials: str = "curve"
    design_branches: bool = False
    mislead_log_odds: float | None = 0.5
    inactive_inputs: str = "learned"

    def __post_init__(self) -> None:
        choices = {"pruned_trials": ("curve", "rank", "ignore"), "inactive_inputs": INACTIVE}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}.")

    def model_options(self) -> ModelOptions:
        """The structural choices of the model."""
        return ModelOptions(self.own_lengthscales, self.correlation_prior, self.correlation_beta)
