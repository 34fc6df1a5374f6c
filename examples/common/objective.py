"""Base classes of the example objectives.

An objective is a callable ``objective(trial) -> float`` (direction: maximize) that suggests
hyperparameters, builds a model, trains it with :func:`examples.common.training.fit` and returns
the best validation metric. Subclasses only say how to suggest model hyperparameters, how to
build the model and how to feed it a batch; data preparation, seeding, optimizers, the plateau
schedule, early stopping, pruning and mixed precision live here and in ``training.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from typing import Any
from typing import ClassVar

import optuna
import torch
from torch import nn

from examples.common.data import image_tensors
from examples.common.data import TaskData
from examples.common.training import count_parameters
from examples.common.training import fit
from examples.common.training import FitResult
from examples.common.training import log_record
from examples.common.training import make_optimizer
from examples.common.training import resolve_device
from examples.common.training import seed_everything
from examples.common.training import suggest_training_controls
from examples.common.training import TensorLoader


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """Optimizer and schedule hyperparameters of one trial.

    Attributes:
        learning_rate: Peak learning rate.
        batch_size: Training batch size.
        epochs: Maximum number of epochs.
        optimizer: ``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` or ``adaptive``
            (:class:`examples.common.adaptive_lr.AdaptiveLR`).
        weight_decay: L2 penalty (decoupled for AdamW).
        momentum: Momentum of SGD and RMSprop.
        warmup_ratio: Share of all training steps spent in linear learning-rate warmup.
    """

    learning_rate: float
    batch_size: int
    epochs: int
    optimizer: str = "Adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    warmup_ratio: float = 0.0


class ClassificationObjective(abc.ABC):
    """An Optuna objective that trains a classifier and returns its best validation metric.

    Args:
        train: Training tensors: the model inputs and ``labels``.
        validation: Validation tensors with the same keys.
        num_labels: Number of classes.
        max_epochs: Upper bound of the ``epochs`` hyperparameter.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: Seed of model initialization and batch shuffling; the same in every trial, so the
            objective is a deterministic function of the hyperparameters on the CPU.
        metric: ``accuracy`` or ``f1``: the validation metric reported and returned.
        amp: Whether to use mixed precision on CUDA.
        verbose: Whether to print one line per epoch.
    """

    #: Optimization direction of every objective: the validation metric is maximized.
    direction: ClassVar[str] = "maximize"
    max_grad_norm: ClassVar[float | None] = None
    eval_batch_size: ClassVar[int] = 256

    def __init__(
        self,
        train: Mapping[str, torch.Tensor],
        validation: Mapping[str, torch.Tensor],
        num_labels: int,
        *,
        max_epochs: int = 10,
        device: str = "auto",
        seed: int = 0,
        metric: str = "accuracy",
        amp: bool = True,
        verbose: bool = False,
    ) -> None:
        self.train_tensors = dict(train)
        self.validation_tensors = dict(validation)
        self.num_labels = num_labels
        self.max_epochs = max_epochs
        self.device = resolve_device(device)
        self.seed = seed
        self.metric = metric
        self.amp = amp
        self.verbose = verbose

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial) -> tuple[TrainParams, dict[str, Any]]:
        """Suggests the training hyperparameters and the model hyperparameters.

        Args:
            trial: The trial.

        Returns:
            The training hyperparameters and the keyword arguments of :meth:`build_model`.
        """

    @abc.abstractmethod
    def build_model(self, **model_params: Any) -> nn.Module:
        """Builds a freshly initialized model.

        Args:
            **model_params: The model hyperparameters returned by :meth:`suggest`.

        Returns:
            The model, on the CPU.
        """

    @abc.abstractmethod
    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Returns the logits of ``model`` for ``batch``.

        Args:
            model: The model.
            batch: A batch of the training or validation tensors.

        Returns:
            Logits of shape ``(batch_size, num_labels)``.
        """

    def parameter_groups(self, model: nn.Module, weight_decay: float) -> Any:
        """Returns the parameters (or parameter groups) to optimize.

        Args:
            model: The model.
            weight_decay: The suggested weight decay.

        Returns:
            What the optimizer gets as ``params``.
        """
        return model.parameters()

    def train(self, trial: optuna.Trial) -> FitResult:
        """Suggests hyperparameters, builds the model and trains it.

        Args:
            trial: The trial to suggest from, report to and prune.

        Returns:
            The result of :func:`examples.common.training.fit`.
        """
        params, model_params = self.suggest(trial)
        controls = suggest_training_controls(trial)
        seed_everything(self.seed)
        model = self.build_model(**model_params).to(self.device)
        optimizer = make_optimizer(
            params.optimizer,
            self.parameter_groups(model, params.weight_decay),
            learning_rate=params.learning_rate,
            weight_decay=params.weight_decay,
            momentum=params.momentum,
        )
        train_loader = TensorLoader(
            self.train_tensors, params.batch_size, shuffle=True, seed=self.seed
        )
        val_loader = TensorLoader(self.validation_tensors, self.eval_batch_size)
        trial.set_user_attr("n_parameters", count_parameters(model))
        result = fit(
            model,
            optimizer,
            train_loader,
            val_loader,
            forward=self.forward,
            epochs=params.epochs,
            device=self.device,
            controls=controls,
            trial=trial,
            metric=self.metric,
            warmup_steps=round(params.warmup_ratio * params.epochs * len(train_loader)),
            amp=self.amp,
            max_grad_norm=self.max_grad_norm,
            on_epoch_end=log_record(f"trial {trial.number}") if self.verbose else None,
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("stopped_early", result.stopped_early)
        return result

    def __call__(self, trial: optuna.Trial) -> float:
        """Trains one configuration and returns its best validation metric.

        Args:
            trial: The trial.

        Returns:
            The best validation ``metric`` over the epochs.
        """
        return self.train(trial).best_value


class ImageClassificationObjective(ClassificationObjective):
    """Base of the image objectives: standardized ``NCHW`` images and shared hyperparameters.

    Shared search space: ``learning_rate`` log-uniform 1e-4..1e-1, ``batch_size`` in
    {32, 64, 128}, ``epochs`` 1..``max_epochs``, ``weight_decay`` log-uniform 1e-6..1e-2,
    ``momentum`` 0.5..0.99 (used by SGD and RMSprop) and ``optimizer`` in :attr:`OPTIMIZERS`.

    Args:
        data: The task's train and validation split with ``image`` and ``label`` columns.
        optimizers: Choices of the ``optimizer`` parameter instead of :attr:`OPTIMIZERS`, e.g.
            one name to fix the optimizer.
        **kwargs: Passed to :class:`ClassificationObjective`.
    """

    OPTIMIZERS: ClassVar[tuple[str, ...]] = ("SGD", "Adam")

    def __init__(
        self, data: TaskData, *, optimizers: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        self.optimizers = tuple(optimizers) if optimizers is not None else self.OPTIMIZERS
        x_train, y_train = image_tensors(data.train)
        x_val, y_val = image_tensors(data.validation)
        mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        self.input_shape: tuple[int, int, int] = tuple(x_train.shape[1:])  # type: ignore[assignment]
        super().__init__(
            {"pixel_values": (x_train - mean) / std, "labels": y_train},
            {"pixel_values": (x_val - mean) / std, "labels": y_val},
            data.num_labels,
            **kwargs,
        )

    def suggest_train_params(self, trial: optuna.Trial) -> TrainParams:
        """Suggests the training hyperparameters shared by the image families.

        Args:
            trial: The trial.

        Returns:
            The training hyperparameters.
        """
        return TrainParams(
            learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
            batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
            epochs=trial.suggest_int("epochs", 1, self.max_epochs),
            weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            momentum=trial.suggest_float("momentum", 0.5, 0.99),
            optimizer=trial.suggest_categorical("optimizer", list(self.optimizers)),
        )

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Returns ``model(batch["pixel_values"])``.

        Args:
            model: The image classifier.
            batch: A batch with ``pixel_values`` of shape ``(N, C, H, W)``.

        Returns:
            The logits.
        """
        return model(batch["pixel_values"])
