"""The training loop shared by all example objectives.

:func:`fit` trains a classifier for a number of epochs with

* an optional linear learning-rate warmup (per step),
* an optional :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` schedule on the validation
  metric (per epoch, after the warmup),
* early stopping when the validation metric has not improved for ``patience`` epochs,
* pruning: the validation metric goes to ``trial.report`` after each epoch, and
  ``trial.should_prune`` may stop the trial with :class:`optuna.TrialPruned`,
* mixed precision on CUDA (bf16 where supported, else fp16 with a gradient scaler).

The plateau schedule and the early-stopping patience are hyperparameters too; see
:func:`suggest_training_controls`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import dataclasses
import math
import random
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn


Batch = dict[str, torch.Tensor]
#: ``forward(model, batch) -> logits``; the batch holds the inputs and a ``labels`` tensor.
ForwardFn = Callable[[nn.Module, Batch], torch.Tensor]
METRICS = ("accuracy", "f1")


def resolve_device(device: str = "auto") -> torch.device:
    """Returns the torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Args:
        device: ``auto`` picks CUDA when available, else the CPU.

    Returns:
        The device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but CUDA is not available.")
    return resolved


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """Returns the autocast dtype to use on ``device``, or ``None`` for full precision.

    Mixed precision is used on CUDA only: bf16 where the GPU supports it (no loss scaling
    needed), fp16 otherwise (with a gradient scaler, see :func:`fit`).

    Args:
        device: The training device.
        enabled: ``False`` turns mixed precision off.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None``.
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA).

    Args:
        seed: The seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(
    name: str,
    params: Any,
    *,
    learning_rate: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Builds an optimizer by name.

    Args:
        name: ``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` or ``adaptive``
            (:class:`examples.common.adaptive_lr.AdaptiveLR`).
        params: The parameters (or parameter groups) to optimize.
        learning_rate: The learning rate.
        weight_decay: L2 penalty (decoupled for ``AdamW``).
        momentum: Momentum of SGD and RMSprop; ignored by Adam, AdamW and adaptive.

    Returns:
        The optimizer.
    """
    if name == "SGD":
        return torch.optim.SGD(
            params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay
        )
    if name == "Adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "AdamW":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "RMSprop":
        return torch.optim.RMSprop(
            params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay
        )
    if name == "adaptive":
        from examples.common.adaptive_lr import AdaptiveLR

        return AdaptiveLR(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}; use SGD, Adam, AdamW, RMSprop or adaptive.")


@dataclasses.dataclass(frozen=True)
class TrainingControls:
    """How the learning rate is scheduled and when training stops early.

    Attributes:
        lr_plateau: Whether to use :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau`.
        plateau_factor: Factor by which the plateau schedule multiplies the learning rate.
        plateau_patience: Epochs without improvement before the plateau schedule reduces it.
        early_stopping_patience: Epochs without improvement before training stops; ``None``
            never stops early.
    """

    lr_plateau: bool = False
    plateau_factor: float = 0.5
    plateau_patience: int = 0
    early_stopping_patience: int | None = None


def suggest_training_controls(trial: optuna.Trial) -> TrainingControls:
    """Suggests the plateau schedule and the early-stopping patience.

    All four parameters are suggested in every trial (``lr_plateau_factor`` and
    ``lr_plateau_patience`` are simply unused when ``lr_plateau`` is false), which keeps the
    search space the same in every trial, as model-based samplers such as MetaBO and GP prefer.

    Args:
        trial: The trial.

    Returns:
        The suggested controls.
    """
    return TrainingControls(
        lr_plateau=trial.suggest_categorical("lr_plateau", [True, False]),
        plateau_factor=trial.suggest_float("lr_plateau_factor", 0.1, 0.7),
        plateau_patience=trial.suggest_int("lr_plateau_patience", 0, 2),
        early_stopping_patience=trial.suggest_int("early_stopping_patience", 1, 4),
    )


class TensorLoader:
    """Mini-batches of in-memory tensors; much faster than a per-item DataLoader on small data.

    Args:
        tensors: Equal-length tensors, e.g. ``{"pixel_values": x, "labels": y}``.
        batch_size: Examples per batch.
        shuffle: Whether to reshuffle the examples at each pass.
        seed: Seed of the shuffling.
    """

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(
                f"Tensors of different lengths: { {k: len(t) for k, t in tensors.items()} }"
            )
        self.tensors = dict(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.n = sizes.pop()
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(self.n, generator=self._generator) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            if order is None:
                yield {k: t[start : start + self.batch_size] for k, t in self.tensors.items()}
            else:
                index = order[start : start + self.batch_size]
                yield {k: t[index] for k, t in self.tensors.items()}


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        best_value: Best validation metric over the epochs.
        best_epoch: Epoch (0-based) of the best validation metric.
        history: One dict per epoch: ``train_loss``, ``val_loss``, ``accuracy``, ``f1``, ``lr``
            (the learning rate at the end of the epoch, see :func:`current_lr`).
        stopped_early: Whether early stopping ended training.
    """

    best_value: float
    best_epoch: int
    history: list[dict[str, float]]
    stopped_early: bool


def _to_device(batch: Batch, device: torch.device) -> Batch:
    """Moves a batch to ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Returns an autocast context for ``dtype``, or a no-op one for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in ``labels`` or ``predictions``.

    Args:
        labels: True labels.
        predictions: Predicted labels.

    Returns:
        The macro F1 score in ``[0, 1]``.
    """
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="macro", zero_division=0))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: TensorLoader,
    forward: ForwardFn,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Computes the loss, accuracy and macro F1 of ``model`` on ``loader``.

    Args:
        model: The classifier.
        loader: Batches with a ``labels`` tensor.
        forward: Maps ``(model, batch)`` to logits.
        device: Device of the model.
        dtype: Autocast dtype, or ``None``.

    Returns:
        ``{"val_loss": ..., "accuracy": ..., "f1": ...}``.
    """
    model.eval()
    total_loss, predictions, labels = 0.0, [], []
    for batch in loader:
        batch = _to_device(batch, device)
        with _autocast(device, dtype):
            logits = forward(model, batch)
        total_loss += nn.functional.cross_entropy(
            logits.float(), batch["labels"], reduction="sum"
        ).item()
        predictions.append(logits.argmax(dim=-1).cpu())
        labels.append(batch["labels"].cpu())
    y_pred, y_true = torch.cat(predictions).numpy(), torch.cat(labels).numpy()
    return {
        "val_loss": total_loss / len(y_true),
        "accuracy": float((y_pred == y_true).mean()),
        "f1": macro_f1(y_true, y_pred),
    }


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Returns the learning rate that the first parameter group's last step used.

    This is ``effective_lr`` for optimizers that adapt their own step size
    (:class:`examples.common.adaptive_lr.AdaptiveLR`), else ``lr`` (with its schedule).

    Args:
        optimizer: The optimizer.

    Returns:
        The learning rate.
    """
    group = optimizer.param_groups[0]
    return float(group.get("effective_lr", group["lr"]))


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: TensorLoader,
    val_loader: TensorLoader,
    *,
    forward: ForwardFn,
    epochs: int,
    device: torch.device,
    controls: TrainingControls = TrainingControls(),
    trial: optuna.Trial | None = None,
    metric: str = "accuracy",
    warmup_steps: int = 0,
    amp: bool = True,
    max_grad_norm: float | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Trains ``model`` and returns the best validation metric.

    After each epoch the validation ``metric`` is reported to ``trial`` (step = epoch) and the
    trial is pruned if its pruner says so. The per-epoch history is stored in the trial's user
    attribute ``history`` (also for pruned trials), the learning rate at the end of each epoch
    (see :func:`current_lr`) in ``learning_rates``, and ``accuracy``/``f1`` of the best epoch in
    the user attributes of those names.

    Args:
        model: The classifier, already on ``device``.
        optimizer: Its optimizer; its learning rates are the peak learning rates.
        train_loader: Shuffled training batches with a ``labels`` tensor.
        val_loader: Validation batches.
        forward: Maps ``(model, batch)`` to logits.
        epochs: Maximum number of epochs.
        device: The training device.
        controls: Plateau schedule and early stopping.
        trial: Trial to report to and to prune; ``None`` trains without reporting.
        metric: ``accuracy`` or ``f1``; the validation metric that is reported and maximized.
        warmup_steps: Steps of linear learning-rate warmup from 0 to the peak.
        amp: Whether to use mixed precision on CUDA.
        max_grad_norm: Clip gradients to this norm, if given.
        on_epoch_end: Called with ``(epoch, record)`` after each epoch, e.g. to log.

    Returns:
        The best validation metric, its epoch and the history.

    Raises:
        optuna.TrialPruned: If the trial's pruner prunes it.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    dtype = amp_dtype(device, amp)
    stepper = _Stepper(optimizer, device, dtype, warmup_steps, max_grad_norm)
    plateau = _plateau_schedule(optimizer, controls)
    history: list[dict[str, float]] = []
    best_value, best_epoch = -math.inf, -1
    stopped_early = False
    for epoch in range(epochs):
        train_loss = _train_epoch(model, train_loader, forward, device, dtype, stepper)
        record = {
            "epoch": float(epoch),
            "train_loss": train_loss,
            "lr": current_lr(optimizer),
            **evaluate(model, val_loader, forward, device, dtype),
        }
        history.append(record)
        value = record[metric]
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if plateau is not None and stepper.warmed_up:
            plateau.step(value)
        if value > best_value:
            best_value, best_epoch = value, epoch
        if trial is not None:
            _report(trial, history, best_epoch, epoch, metric)
        patience = controls.early_stopping_patience
        diverged = not math.isfinite(train_loss)
        if diverged or (patience is not None and epoch - best_epoch >= patience):
            # A diverged run (non-finite loss) keeps its best metric so far and stops.
            stopped_early = epoch < epochs - 1
            break
    return FitResult(best_value, best_epoch, history, stopped_early)


class _Stepper:
    """Optimizer steps with a linear learning-rate warmup, a gradient scaler for fp16 and
    optional gradient clipping.

    Args:
        optimizer: The optimizer; its learning rates are the peak learning rates.
        device: The training device.
        dtype: The autocast dtype; fp16 gets a gradient scaler.
        warmup_steps: Steps of linear warmup from 0 to the peak learning rates.
        max_grad_norm: Clip gradients to this norm, if given.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        dtype: torch.dtype | None,
        warmup_steps: int,
        max_grad_norm: float | None,
    ) -> None:
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.peak_lrs = [group["lr"] for group in optimizer.param_groups]
        self.warmup_steps = warmup_steps
        self.max_grad_norm = max_grad_norm
        self.n_steps = 0

    @property
    def warmed_up(self) -> bool:
        """Whether the warmup is over."""
        return self.n_steps >= self.warmup_steps

    def warm_up(self) -> None:
        """Sets the learning rates of the coming step while warming up."""
        if not self.warmed_up:
            for group, peak in zip(self.optimizer.param_groups, self.peak_lrs):
                group["lr"] = peak * (self.n_steps + 1) / self.warmup_steps

    def step(self, loss: torch.Tensor, model: nn.Module) -> None:
        """Back-propagates ``loss`` and takes one optimizer step."""
        self.scaler.scale(loss).backward()
        if self.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.n_steps += 1


def _plateau_schedule(
    optimizer: torch.optim.Optimizer, controls: TrainingControls
) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The plateau schedule on the (maximized) validation metric, if ``controls`` ask for it."""
    if not controls.lr_plateau:
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=controls.plateau_factor, patience=controls.plateau_patience
    )


def _train_epoch(
    model: nn.Module,
    loader: TensorLoader,
    forward: ForwardFn,
    device: torch.device,
    dtype: torch.dtype | None,
    stepper: _Stepper,
) -> float:
    """Trains ``model`` for one epoch; returns the mean training loss (not finite if training
    diverged)."""
    model.train()
    loss_sum, n_seen = 0.0, 0
    for batch in loader:
        stepper.warm_up()
        batch = _to_device(batch, device)
        stepper.optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            logits = forward(model, batch)
        loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
        stepper.step(loss, model)
        loss_sum += loss.item() * len(batch["labels"])
        n_seen += len(batch["labels"])
    return loss_sum / max(n_seen, 1)


def _report(
    trial: optuna.Trial,
    history: list[dict[str, float]],
    best_epoch: int,
    epoch: int,
    metric: str,
) -> None:
    """Stores the history and the best epoch's metrics on ``trial``, reports this epoch's
    ``metric`` and prunes the trial if its pruner says so (single-objective studies only:
    Optuna has no intermediate values with several objectives)."""
    trial.set_user_attr("history", history)
    trial.set_user_attr("learning_rates", [record["lr"] for record in history])
    trial.set_user_attr("accuracy", history[best_epoch]["accuracy"])
    trial.set_user_attr("f1", history[best_epoch]["f1"])
    value = history[epoch][metric]
    if len(trial.study.directions) > 1:
        return
    trial.report(value, step=epoch)
    if trial.should_prune():
        raise optuna.TrialPruned(f"Pruned at epoch {epoch} with {metric}={value:.4f}.")


def count_parameters(model: nn.Module) -> int:
    """Returns the number of trainable parameters of ``model``.

    Args:
        model: The model.

    Returns:
        The number of trainable parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def log_record(prefix: str) -> Callable[[int, dict[str, float]], None]:
    """Returns an ``on_epoch_end`` callback that prints one line per epoch.

    Args:
        prefix: Text that starts each line, e.g. the trial number.

    Returns:
        The callback.
    """

    def log(epoch: int, record: dict[str, float]) -> None:
        metrics: Sequence[str] = ("train_loss", "val_loss", "accuracy", "f1", "lr")
        values = " ".join(f"{k}={record[k]:.4g}" for k in metrics)
        print(f"{prefix} epoch {epoch}: {values}", flush=True)

    return log
