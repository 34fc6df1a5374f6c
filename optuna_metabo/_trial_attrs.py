"""What MetaBOSampler records on each trial: attribute keys and trial-source labels.

The values are part of the public interface (users read them in optuna-dashboard and filter
trials by them), so each lives here once and every module uses these names.
"""

from __future__ import annotations


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
