"""optuna-metabo: a multi-task GP sampler that transfers from prior Optuna studies."""

from optuna_metabo._dashboard import DashboardCallback
from optuna_metabo._sampler import MetaBOSampler
from optuna_metabo._trial_attrs import USER_ATTR_ACQUISITION
from optuna_metabo._trial_attrs import USER_ATTR_PREDICTED_MEAN
from optuna_metabo._trial_attrs import USER_ATTR_PREDICTED_STD
from optuna_metabo._trial_attrs import USER_ATTR_SOURCE


__all__ = [
    "DashboardCallback",
    "MetaBOSampler",
    "USER_ATTR_ACQUISITION",
    "USER_ATTR_PREDICTED_MEAN",
    "USER_ATTR_PREDICTED_STD",
    "USER_ATTR_SOURCE",
]
__version__ = "0.3.0"
