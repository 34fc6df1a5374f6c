"""What MetaBOSampler records and reports, and how Optuna records constraints.

The values are part of the public interface (users read them in optuna-dashboard, filter
trials by them and read ``prior_summary()``), so each lives here once and every module uses
these names: trial attribute keys, trial-source labels (mapped from the numeric core's
``ProposalSource``), the labels of ``prior_summary()``'s parameter handling, and the system
attributes under which Optuna stores constraint values.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

from optuna_metabo._core.types import ProposalSource


# User attributes of every trial the sampler suggests.
USER_ATTR_PREDICTED_MEAN = "metabo:predicted_mean"
USER_ATTR_PREDICTED_STD = "metabo:predicted_std"
USER_ATTR_ACQUISITION = "metabo:acquisition_value"
# With several objectives, the predicted mean and std are one attribute per objective:
# ``"metabo:predicted_mean:<metric name or position>"``. With constraints, the predicted
# probability that the trial is feasible.
USER_ATTR_FEASIBILITY = "metabo:feasibility"
# Once a target or prior trial has failed (an exception, NaN or infinite value), the predicted
# probability that the suggested trial fails: the failure model steered it.
USER_ATTR_FAILURE = "metabo:failure_probability"
USER_ATTR_SOURCE = "metabo:source"
# System attribute holding the point a worker chose, shared with the other workers before the
# objective suggests it (JSON of the parameters).
SYSTEM_ATTR_SHARED_PARAMS = "metabo:relative_params"

# Values of ``USER_ATTR_SOURCE``: how a trial's parameters were chosen.
SOURCE_PRIOR_DESIGN = "prior_design"  # one of the best prior configurations (a portfolio)
SOURCE_MODEL = "model"  # maximizes log EI under the multi-task GP
SOURCE_TARGET_MODEL = "target_model"  # the same with a GP on the target alone (priors set aside)
SOURCE_STARTUP = "startup"  # a Sobol point, before the GP is used when there is no prior
SOURCE_INDEPENDENT = "independent"  # the independent sampler (outside the relative space)
SOURCE_FALLBACK = "fallback"  # the independent sampler, because the GP could not be used
SOURCES = (
    SOURCE_PRIOR_DESIGN,
    SOURCE_MODEL,
    SOURCE_TARGET_MODEL,
    SOURCE_STARTUP,
    SOURCE_INDEPENDENT,
    SOURCE_FALLBACK,
)

# How each choice of the numeric core is recorded.
SOURCE_OF = {
    ProposalSource.PRIOR_DESIGN: SOURCE_PRIOR_DESIGN,
    ProposalSource.MODEL: SOURCE_MODEL,
    ProposalSource.TARGET_MODEL: SOURCE_TARGET_MODEL,
}

# ``prior_summary()``: how a target parameter that a prior study never tuned is handled.
LACKED_DEFAULT = "default"  # the prior's trials take the value given in ``prior_defaults``
LACKED_UNKNOWN = "unknown"  # the model learns the value the prior held it at
# How a parameter that the prior tuned but the target does not is handled.
EXTRA_DROPPED = "dropped"  # ignored: the prior's trials count alike whatever its value
EXTRA_FIXED = "fixed_params"  # a model input; target trials sit at the ``fixed_params`` value

# Where Optuna keeps constraint values among a trial's system attributes: a list under the key
# (``constraints_func``) and one value per ``"constraints:<key>"`` (``trial.set_constraint``).
CONSTRAINTS_KEY = "constraints"


def trial_constraints(system_attrs: Mapping[str, Any]) -> dict[str, float]:
    """A trial's constraint values by key, read as ``FrozenTrial.constraints`` reads them.

    Args:
        system_attrs: The trial's system attributes.
    """
    constraints: dict[str, float] = {}
    listed = system_attrs.get(CONSTRAINTS_KEY)
    if isinstance(listed, (list, tuple)):
        constraints.update({str(i): _as_float(v) for i, v in enumerate(listed)})
    prefix = f"{CONSTRAINTS_KEY}:"
    for key, value in system_attrs.items():
        if key.startswith(prefix):
            constraints[key[len(prefix) :]] = _as_float(value)
    return constraints


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
