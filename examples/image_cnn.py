"""CNN image classification: Conv2D, MaxPool, Dense and Dropout layers, tuned with Optuna.

Search space: ``n_conv_layers`` 1..3, ``base_filters`` 8..64 (log; doubled in each conv layer),
``dense_units`` 16..256 (log), ``dropout_rate`` 0..0.6, ``optimizer`` in {Adam, SGD, RMSprop,
adaptive} (adaptive: :class:`examples.common.adaptive_lr.AdaptiveLR`),
``learning_rate`` log 1e-4..1e-1, ``batch_size`` in {32, 64, 128}, ``epochs`` 1..max,
``weight_decay`` log 1e-6..1e-2, ``momentum`` 0.5..0.99 (SGD, RMSprop), plus the plateau schedule
and early-stopping patience of :func:`examples.common.training.suggest_training_controls`.

Examples::

    python -m examples.image_cnn --dataset digits --n-trials 20            # offline
    python -m examples.image_cnn --dataset mnist --max-train-samples 10000  # hub
    python -m examples.image_cnn --dataset fashion_mnist --device cuda
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import ClassVar

import optuna
import torch
from torch import nn

from examples.common.objective import ImageClassificationObjective
from examples.common.objective import TrainParams


FAMILY = "cnn"
MODALITY = "image"
DEFAULT_DATASET = "digits"
DEFAULT_MAX_EPOCHS = 10
#: Datasets of ``python -m examples.build_history --family cnn`` (offline digits variants).
HISTORY_DATASETS = (
    "digits-0to4", "digits-5to9", "digits-even", "digits-odd", "digits-n300", "digits-noise30",
)  # fmt: skip
#: Default new task of ``python -m examples.tune_with_priors --family cnn``.
NEW_DATASET = "digits-n300-noise30"


class CNN(nn.Module):
    """Conv2D-ReLU-MaxPool blocks, then Dropout-Dense-ReLU-Dropout-Dense.

    Args:
        input_shape: ``(channels, height, width)`` of the images.
        num_classes: Number of classes.
        n_conv_layers: Number of conv blocks; pooling stops once the maps are 1x1.
        base_filters: Filters of the first conv layer; each further layer doubles them.
        dense_units: Units of the hidden dense layer.
        dropout_rate: Dropout before each dense layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        n_conv_layers: int = 2,
        base_filters: int = 16,
        dense_units: int = 64,
        dropout_rate: float = 0.25,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for i in range(n_conv_layers):
            filters = base_filters * 2**i
            layers += [nn.Conv2d(channels, filters, kernel_size=3, padding=1), nn.ReLU()]
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            channels = filters
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout_rate),
            nn.Linear(channels * height * width, dense_units),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(dense_units, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the logits for images ``x`` of shape ``(N, C, H, W)``.

        Args:
            x: The images.

        Returns:
            The logits.
        """
        return self.classifier(self.features(x))


class CNNObjective(ImageClassificationObjective):
    """Tunes and trains :class:`CNN` on an image task; returns the best validation metric.

    Args:
        data: The image task (see :func:`examples.common.data.load_task_data`).
        **kwargs: ``optimizers`` (see
            :class:`examples.common.objective.ImageClassificationObjective`), ``max_epochs``,
            ``device``, ``seed``, ``metric``, ``amp``, ``verbose``; see
            :class:`examples.common.objective.ClassificationObjective`.
    """

    OPTIMIZERS: ClassVar[tuple[str, ...]] = ("Adam", "SGD", "RMSprop", "adaptive")

    def suggest(self, trial: optuna.Trial) -> tuple[TrainParams, dict[str, Any]]:
        """Suggests the shared training hyperparameters and the CNN architecture.

        Args:
            trial: The trial.

        Returns:
            The training hyperparameters and the keyword arguments of :class:`CNN`.
        """
        params = self.suggest_train_params(trial)
        model_params = {
            "n_conv_layers": trial.suggest_int("n_conv_layers", 1, 3),
            "base_filters": trial.suggest_int("base_filters", 8, 64, log=True),
            "dense_units": trial.suggest_int("dense_units", 16, 256, log=True),
            "dropout_rate": trial.suggest_float("dropout_rate", 0.0, 0.6),
        }
        return params, model_params

    def build_model(self, **model_params: Any) -> nn.Module:
        """Builds a :class:`CNN` for this task's images.

        Args:
            **model_params: Keyword arguments of :class:`CNN`.

        Returns:
            The model.
        """
        return CNN(self.input_shape, self.num_labels, **model_params)


#: The objective class of this family (used by :mod:`examples.families`).
OBJECTIVE = CNNObjective


def main(argv: Sequence[str] | None = None) -> None:
    """Runs one study of the CNN objective; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    from examples.families import run_family_cli

    run_family_cli(FAMILY, argv)


if __name__ == "__main__":
    main()
