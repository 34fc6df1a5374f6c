"""optuna-metabo: a multi-task GP sampler that transfers from prior Optuna studies."""

from optuna_metabo._core.types import EngineSettings
from optuna_metabo._dashboard.callback import DashboardCallback
from optuna_metabo._history.storages import open_storage as open_prior_storage
from optuna_metabo._history.storages import PriorStudyError
from optuna_metabo._last_proposal import LastProposal
from optuna_metabo._sampler import MetaBOSampler
from optuna_metabo._vocabulary import USER_ATTR_ACQUISITION
from optuna_metabo._vocabulary import USER_ATTR_FAILURE
from optuna_metabo._vocabulary import USER_ATTR_FEASIBILITY
from optuna_metabo._vocabulary import USER_ATTR_PREDICTED_MEAN
from optuna_metabo._vocabulary import USER_ATTR_PREDICTED_STD
from optuna_metabo._vocabulary import USER_ATTR_SOURCE


__all__ = [
    "DashboardCallback",
    "EngineSettings",
    "LastProposal",
    "MetaBOSampler",
    "open_prior_storage",
    "PriorStudyError",
    "USER_ATTR_ACQUISITION",
    "USER_ATTR_FAILURE",
    "USER_ATTR_FEASIBILITY",
    "USER_ATTR_PREDICTED_MEAN",
    "USER_ATTR_PREDICTED_STD",
    "USER_ATTR_SOURCE",
]
__version__ = "0.4.0"
