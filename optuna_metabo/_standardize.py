"""Old name of ``_output_transform``, kept while ``_proposal`` imports from it."""

from optuna_metabo._output_transform import affine_back
from optuna_metabo._output_transform import transform_task_values


__all__ = ["affine_back", "transform_task_values"]
