"""Arms of the learning-curve and failure benchmarks: a sampler of
:data:`benchmarks.samplers.SAMPLERS` (or a MetaBOSampler variant) with a pruner, or none.

``<sampler>_hb`` arms run under ``HyperbandPruner(min_resource=1, max_resource=52,
reduction_factor=3)``; the others without a pruner. The ``metabo_hb_<mode>`` variants set
``EngineSettings.pruned_trials`` (how the model uses pruned trials); where the installed
``optuna_metabo`` has no such setting they report "not available in this version" and the
runner skips them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from benchmarks.problems.learning_curves import hyperband
from benchmarks.samplers import _metabo_check
from benchmarks.samplers import _metabo_engine
from benchmarks.samplers import PriorContext
from benchmarks.samplers import SAMPLERS
from benchmarks.samplers import SamplerSpec


PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {"hyperband": hyperband}
PRUNED_TRIALS_MODES = ("ignore", "rank", "curve")


@dataclass
class Arm:
    """A sampler and the pruner it runs under (read like a :class:`SamplerSpec` by
    :func:`benchmarks.runner.prepare_run` and :meth:`benchmarks.runner.RunKind.run_all`).

    Args:
        spec: How to build the sampler.
        pruner: A key of :data:`PRUNERS`, or ``None`` for no pruning.
    """

    spec: SamplerSpec
    pruner: str | None = None

    @property
    def factory(self) -> Callable[..., optuna.samplers.BaseSampler]:
        """The sampler's factory."""
        return self.spec.factory

    @property
    def setup(self) -> Callable[[optuna.Study, PriorContext], None] | None:
        """The sampler's setup (e.g. enqueueing), if any."""
        return self.spec.setup

    @property
    def uses_priors(self) -> bool:
        """Whether the sampler sees the prior studies."""
        return self.spec.uses_priors

    @property
    def description(self) -> str:
        """One line for the report."""
        pruner = f" under {self.pruner}" if self.pruner else ", no pruner"
        return self.spec.description + pruner

    def unavailable(self) -> str | None:
        """Why the sampler cannot be built here, or ``None``."""
        return self.spec.unavailable()

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """A fresh pruner for one run."""
        return PRUNERS[self.pruner]() if self.pruner else optuna.pruners.NopPruner()


def _pruned_variant(mode: str) -> SamplerSpec:
    return SamplerSpec(
        _metabo_engine(pruned_trials=mode),
        check=_metabo_check,
        uses_priors=True,
        description=f"MetaBOSampler with EngineSettings(pruned_trials={mode!r})",
    )


ARMS: dict[str, Arm] = {
    name: Arm(SAMPLERS[name]) for name in ("random", "tpe", "gp", "warm_tpe", "metabo")
}
ARMS |= {
    f"{name}_hb": Arm(SAMPLERS[name], "hyperband")
    for name in ("random", "tpe", "warm_tpe", "gp", "metabo")
}
ARMS |= {f"metabo_hb_{m}": Arm(_pruned_variant(m), "hyperband") for m in PRUNED_TRIALS_MODES}
#: The arms of each protocol's full run (the ``metabo_hb_*`` variants are run by name).
CURVE_ARMS = ("random_hb", "tpe_hb", "warm_tpe_hb", "gp_hb", "metabo", "metabo_hb")
FAILURE_ARMS = ("random", "tpe", "gp", "warm_tpe", "metabo")


def register_arm(name: str, arm: Arm) -> None:
    """Add or replace an arm (e.g. a MetaBOSampler variant).

    Args:
        name: Name used on the command line and in reports (no dashes).
        arm: The sampler and its pruner.
    """
    ARMS[name] = arm
