"""ResNet image classification with configurable depth and width, tuned with Optuna.

The network is the CIFAR-style ResNet of He et al. (2016) written in plain torch: a 3x3 stem,
three stages of ``blocks_per_stage`` basic residual blocks (two 3x3 convolutions with batch
norm) with ``width``, ``2*width`` and ``4*width`` channels, global average pooling and a linear
layer; depth = 6 * blocks_per_stage + 2 (ResNet-8/14/20).

Search space: ``learning_rate`` log 1e-4..1e-1, ``batch_size`` in {32, 64, 128}, ``epochs``
1..max, ``weight_decay`` log 1e-6..1e-2, ``momentum`` 0.5..0.99, ``optimizer`` in
{SGD, Adam, RMSprop, adaptive}, ``blocks_per_stage`` 1..3, ``width`` 8..64 (log), plus the
plateau schedule and early-stopping patience of
:func:`examples.common.training.suggest_training_controls`.

Examples::

    python -m examples.image_resnet --dataset digits --n-trials 20      # offline
    python -m examples.image_resnet --dataset cifar10 --device cuda --max-epochs 30
    python -m examples.image_resnet --dataset mnist --max-train-samples 20000
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


FAMILY = "resnet"
MODALITY = "image"
DEFAULT_DATASET = "digits"
DEFAULT_MAX_EPOCHS = 10
#: Datasets of ``python -m examples.build_history --family resnet``.
HISTORY_DATASETS = ("digits-0to4", "digits-5to9", "digits-n300", "digits-noise30")
#: Default new task of ``python -m examples.tune_with_priors --family resnet``.
NEW_DATASET = "digits-n300-noise30"


class BasicBlock(nn.Module):
    """Two 3x3 conv-batchnorm layers with an identity (or 1x1 projection) shortcut.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (2 halves the spatial size).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the block.

        Args:
            x: Feature maps of shape ``(N, in_channels, H, W)``.

        Returns:
            Feature maps of shape ``(N, out_channels, H / stride, W / stride)``.
        """
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR-style ResNet of depth ``6 * blocks_per_stage + 2``.

    Args:
        in_channels: Image channels.
        num_classes: Number of classes.
        blocks_per_stage: Residual blocks in each of the three stages.
        width: Channels of the first stage; the second and third have 2x and 4x.
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, blocks_per_stage: int = 1, width: int = 16
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(3):
            out_channels = width * 2**stage
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the logits for images ``x`` of shape ``(N, C, H, W)``.

        Args:
            x: The images.

        Returns:
            The logits.
        """
        return self.head(self.stages(self.stem(x)))


class ResNetObjective(ImageClassificationObjective):
    """Tunes and trains :class:`ResNet` on an image task; returns the best validation metric.

    Args:
        data: The image task (see :func:`examples.common.data.load_task_data`).
        **kwargs: ``optimizers`` (see
            :class:`examples.common.objective.ImageClassificationObjective`), ``max_epochs``,
            ``device``, ``seed``, ``metric``, ``amp``, ``verbose``; see
            :class:`examples.common.objective.ClassificationObjective`.
    """

    OPTIMIZERS: ClassVar[tuple[str, ...]] = ("SGD", "Adam", "RMSprop", "adaptive")

    def suggest(self, trial: optuna.Trial) -> tuple[TrainParams, dict[str, Any]]:
        """Suggests the shared training hyperparameters and the ResNet's depth and width.

        Args:
            trial: The trial.

        Returns:
            The training hyperparameters and the keyword arguments of :class:`ResNet`.
        """
        params = self.suggest_train_params(trial)
        model_params = {
            "blocks_per_stage": trial.suggest_int("blocks_per_stage", 1, 3),
            "width": trial.suggest_int("width", 8, 64, log=True),
        }
        return params, model_params

    def build_model(self, **model_params: Any) -> nn.Module:
        """Builds a :class:`ResNet` for this task's images.

        Args:
            **model_params: Keyword arguments of :class:`ResNet`.

        Returns:
            The model.
        """
        return ResNet(self.input_shape[0], self.num_labels, **model_params)


#: The objective class of this family (used by :mod:`examples.families`).
OBJECTIVE = ResNetObjective


def main(argv: Sequence[str] | None = None) -> None:
    """Runs one study of the ResNet objective; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    from examples.families import run_family_cli

    run_family_cli(FAMILY, argv)


if __name__ == "__main__":
    main()
