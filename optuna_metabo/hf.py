"""Transfer inside Hugging Face ``Trainer.hyperparameter_search(backend="optuna")``.

``Trainer.hyperparameter_search`` hands every keyword it does not know to
``optuna.create_study``, so a ``MetaBOSampler`` with a shared storage plugs straight in. Three
details of that path decide whether a search transfers well, and this module takes care of
them:

* The objective. By default the Trainer sums the evaluation metrics other than the loss (the
  loss when there are none) and minimizes, so a search over accuracy minimizes it unless
  ``direction`` is set. :class:`MetricObjective` picks one named metric,
  :func:`metric_direction` tells its direction, and :func:`hp_search_kwargs` records both on
  the study, so that only studies of the same metric become priors.
* The hyperparameters. The Trainer copies each entry of the ``hp_space`` dictionary onto its
  ``TrainingArguments``: names that are not a field are ignored with a log line
  (``warmup_ratio`` is no field in transformers 5), and each value is cast to the type of the
  current value (``int(0.1) == 0`` for transformers 5's ``warmup_steps=0``).
  :class:`TrainerHpSpace` makes every suggested value reach the arguments unchanged, or fails.
* Pruning. The Trainer reports the objective to ``trial.report`` after every evaluation, at
  the global step, and raises ``optuna.TrialPruned`` when the study's pruner says so; pass the
  pruner to :func:`hp_search_kwargs`. Global steps per epoch depend on the batch size, so a
  search over the batch size compares trials at different epochs; :class:`EpochPruner` makes
  a pruner count evaluations (epochs) instead. Without a pruner :func:`hp_search_kwargs`
  passes ``NopPruner``: Optuna's default, ``MedianPruner``, would act on those reports
  unasked. The priors' pruned and failed trials are used too (see docs/pruning.md).

transformers is imported by none of these: they work on the arguments object they are given.

Example::

    from optuna_metabo.hf import hp_search_kwargs, TrainerHpSpace

    best = trainer.hyperparameter_search(
        hp_space=TrainerHpSpace(hp_space, trainer.args),
        n_trials=20,
        backend="optuna",
        **hp_search_kwargs(
            "sqlite:///history.db", "bert-base-uncased-sst2",
            prior_studies=["bert-base-uncased-*"], metric="eval_accuracy", seed=0,
        ),
    )
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import copy
import dataclasses
import logging
import math
from typing import Any
import warnings

import optuna
from optuna.pruners import BasePruner
from optuna.pruners import NopPruner
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

from optuna_metabo._history.storages import open_storage
from optuna_metabo._history.storages import resolve_study_names
from optuna_metabo._history.storages import storage_identity
from optuna_metabo._sampler import MetaBOSampler


__all__ = [
    "EpochPruner",
    "MetricObjective",
    "TrainerHpSpace",
    "hp_search_kwargs",
    "metric_direction",
    "set_training_arguments",
]

_logger = logging.getLogger(__name__)

# Words of a metric name that tell its direction; the last such word of the name decides.
_MINIMIZE_WORDS = frozenset(
    {"loss", "error", "err", "perplexity", "ppl", "runtime", "mse", "rmse", "mae", "wer", "cer"}
)
_MAXIMIZE_WORDS = frozenset(
    {
        "accuracy", "acc", "f1", "precision", "recall", "auc", "auroc", "mcc", "correlation",
        "pearson", "pearsonr", "spearman", "spearmanr", "bleu", "sacrebleu", "rouge1", "rouge2",
        "rougel", "rougelsum", "rouge", "meteor", "match", "em", "map", "ndcg", "mrr", "r2",
        "second",
    }
)  # fmt: skip
_EVAL_PREFIX = "eval_"


def metric_direction(metric: str) -> str:
    """Tells whether a metric of ``Trainer.evaluate()`` is minimized or maximized.

    The last word of the name (split at ``_``, ``-`` and ``/``) that is known decides: loss,
    error, perplexity, runtime, mse, rmse, mae, wer and cer are minimized; accuracy, f1,
    precision, recall, auc, mcc, correlation, pearson, spearman, bleu, rouge, exact match and
    the like are maximized.

    Args:
        metric: A metric name, with or without the ``eval_`` prefix (``"eval_macro_f1"``).

    Returns:
        ``"minimize"`` or ``"maximize"``.

    Raises:
        ValueError: If no word of the name is known; pass the direction explicitly then.
    """
    words = metric.lower().replace("-", "_").replace("/", "_").split("_")
    for word in reversed(words):
        if word in _MINIMIZE_WORDS:
            return "minimize"
        if word in _MAXIMIZE_WORDS:
            return "maximize"
    raise ValueError(
        f"Cannot tell whether {metric!r} is to be minimized or maximized; pass "
        "direction='minimize' or direction='maximize'."
    )


class MetricObjective:
    """The ``compute_objective`` of ``Trainer.hyperparameter_search``: one named metric.

    The Trainer's default sums every metric except the loss, the epoch and speed metrics (the
    loss when there is no other), which mixes metrics as soon as ``compute_metrics`` returns
    more than one. This returns exactly one, and fails loudly when it is missing.

    Args:
        metric: The metric, as ``Trainer.evaluate()`` names it (``"eval_accuracy"``); without
            the ``eval_`` prefix it is looked up with the prefix too.
    """

    def __init__(self, metric: str) -> None:
        if not metric:
            raise ValueError("metric must be a non-empty metric name.")
        self.metric = metric

    def __call__(self, metrics: Mapping[str, float]) -> float:
        """Returns the metric's value.

        Args:
            metrics: The dictionary that ``Trainer.evaluate()`` returned.

        Raises:
            ValueError: If the dictionary holds no such metric; the message lists what it holds.
        """
        for key in (self.metric, _EVAL_PREFIX + self.metric):
            if key in metrics:
                return float(metrics[key])
        available = ", ".join(sorted(metrics)) or "nothing"
        raise ValueError(
            f"Trainer.evaluate() returned no {self.metric!r} metric (it returned {available}). "
            "Metrics other than the loss come from the Trainer's compute_metrics function."
        )

    def __repr__(self) -> str:
        return f"MetricObjective({self.metric!r})"


class EpochPruner(BasePruner):
    """Prunes on the count of the Trainer's evaluations instead of its global step.

    The Trainer reports at the global step, and a step is one batch: with the batch size in
    the search space, step 16 is the first epoch of one trial and the second of another. This
    wraps a pruner so that it sees a trial's reports numbered 1, 2, 3... in order, i.e. by
    epoch with ``eval_strategy="epoch"``; the trial keeps its values at the global steps.
    Give the wrapped pruner explicit resources in evaluations, e.g.
    ``EpochPruner(HyperbandPruner(min_resource=1, max_resource=3))``: a resource of
    ``"auto"`` would be read from the stored global steps.

    Args:
        pruner: The pruner that decides, on the renumbered reports.
    """

    def __init__(self, pruner: BasePruner) -> None:
        if isinstance(pruner, EpochPruner):
            raise ValueError("The pruner counts epochs already.")
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Asks the wrapped pruner, with the trial's reports numbered by evaluation.

        Args:
            study: The study.
            trial: The trial, with intermediate values at the Trainer's global steps.

        Returns:
            Whether to prune the trial.
        """
        renumbered = copy.copy(trial)
        steps = sorted(trial.intermediate_values)
        renumbered.intermediate_values = {
            count: trial.intermediate_values[step] for count, step in enumerate(steps, start=1)
        }
        return self.pruner.prune(study, renumbered)

    def __repr__(self) -> str:
        return f"EpochPruner({self.pruner!r})"


def set_training_arguments(args: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Sets hyperparameters on ``TrainingArguments`` exactly as given, or fails.

    Use it in an ``hp_space`` (see :class:`TrainerHpSpace`) or to apply a search's
    ``BestRun.hyperparameters`` before a final ``trainer.train()``. Each name must be a field of
    ``args``; ``warmup_ratio`` becomes ``warmup_steps`` where transformers has no
    ``warmup_ratio`` field (transformers 5 reads a ``warmup_steps`` below 1 as a fraction of
    the training steps). A value keeps its type where the field is declared with it (a float
    ``warmup_steps`` or ``weight_decay`` stays a float even if the current value is an int).

    Args:
        args: The Trainer's ``TrainingArguments`` (any dataclass), changed in place.
        params: Hyperparameters by name, e.g. ``hp_space(trial)`` or ``trial.params``.

    Returns:
        The values set, by field name.

    Raises:
        ValueError: If a name is no field of ``args``, or a value does not fit its field (a
            non-integral float for an int field, a warmup ratio outside [0, 1)).
    """
    if not dataclasses.is_dataclass(args) or isinstance(args, type):
        raise TypeError(f"args must be a TrainingArguments instance, not {args!r}.")
    fields = {f.name: f for f in dataclasses.fields(args)}
    values: dict[str, Any] = {}
    for name, value in params.items():
        field_name = name
        if name == "warmup_ratio" and name not in fields and "warmup_steps" in fields:
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"warmup_ratio must lie in [0, 1), not {value!r}.")
            field_name = "warmup_steps"
        if field_name not in fields:
            raise ValueError(
                f"{name!r} is not a field of {type(args).__name__}, so the Trainer would ignore "
                "it. Suggest model hyperparameters inside model_init(trial) instead, and keep "
                "only training arguments in hp_space."
            )
        if field_name in values:
            raise ValueError(f"{name!r} sets {field_name!r}, which is set already.")
        values[field_name] = _coerce(
            name, value, getattr(args, field_name), fields[field_name].type
        )
    for field_name, value in values.items():
        setattr(args, field_name, value)
    return values


def _coerce(name: str, value: Any, current: Any, declared: Any) -> Any:
    """``value`` in the type the Trainer's cast ``type(current)(value)`` keeps unchanged."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or current is None or isinstance(current, bool):
        return value
    if isinstance(current, float):
        return float(value)
    if isinstance(current, int) and isinstance(value, float):
        declared_text = declared if isinstance(declared, str) else str(declared)
        if "float" in declared_text:
            return value
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ValueError(f"{name!r} is an integer training argument; {value!r} is not an integer.")
    return value


class TrainerHpSpace:
    """Wraps an ``hp_space`` so that the Trainer uses every suggested value unchanged.

    The wrapped ``hp_space(trial)`` returns hyperparameters by ``TrainingArguments`` field name
    (or ``warmup_ratio``); the names are the Optuna parameter names too, so that the search's
    ``BestRun.hyperparameters`` apply to the arguments again (with
    :func:`set_training_arguments`). Each call sets the values on ``args`` (see
    :func:`set_training_arguments`) and returns them, so the Trainer's own copy changes
    nothing. It logs a warning once if the study has a pruner but ``args`` never evaluates
    during training (``eval_strategy="no"``), as then nothing is reported to prune on.

    Args:
        hp_space: ``trial -> {name: value}``, suggesting with ``trial.suggest_*``.
        args: The Trainer's ``TrainingArguments`` (``trainer.args``).
    """

    def __init__(self, hp_space: Callable[[Any], Mapping[str, Any]], args: Any) -> None:
        if not dataclasses.is_dataclass(args) or isinstance(args, type):
            raise TypeError(f"args must be a TrainingArguments instance, not {args!r}.")
        self.hp_space = hp_space
        self.args = args
        self._warned = False

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Suggests the hyperparameters of ``trial`` and sets them on the arguments.

        Args:
            trial: The ``optuna.Trial`` (an ``optuna.trial.FixedTrial`` on other DDP ranks).

        Returns:
            The values set, by ``TrainingArguments`` field name.
        """
        values = set_training_arguments(self.args, self.hp_space(trial))
        self._warn_if_nothing_to_prune(trial)
        return values

    def _warn_if_nothing_to_prune(self, trial: Any) -> None:
        study = getattr(trial, "study", None)
        if self._warned or study is None or isinstance(study.pruner, NopPruner):
            return
        strategy = getattr(
            self.args, "eval_strategy", getattr(self.args, "evaluation_strategy", None)
        )
        if str(getattr(strategy, "value", strategy)) == "no":
            self._warned = True
            _logger.warning(
                "The study has a %s, but the Trainer does not evaluate during training "
                "(eval_strategy='no'), so it reports nothing and never prunes. Set "
                "eval_strategy='epoch' (or 'steps') in TrainingArguments.",
                type(study.pruner).__name__,
            )


def hp_search_kwargs(
    storage: str | BaseStorage,
    study_name: str,
    *,
    metric: str = "eval_loss",
    direction: str | None = None,
    prior_studies: Sequence[str] | str | None = None,
    prior_storage: str | BaseStorage | None = None,
    pruner: BasePruner | None = None,
    seed: int | None = None,
    **sampler_kwargs: Any,
) -> dict[str, Any]:
    """Keyword arguments of ``Trainer.hyperparameter_search`` for a search with priors.

    Creates the study in ``storage`` if it does not exist, with the metric's direction and the
    metric's name (``study.metric_names``), or checks that the existing one has both. Prior
    studies are resolved now (names and globs, in ``prior_storage``); the target itself and
    studies that recorded another metric are left out (with a logged warning for the latter);
    studies that recorded no metric name are kept.

    Args:
        storage: Storage of the search's study, a URL or storage object.
        study_name: Its name, e.g. ``f"{model}-{dataset}"``.
        metric: The metric to optimize, as ``Trainer.evaluate()`` names it.
        direction: ``"minimize"`` or ``"maximize"``; default :func:`metric_direction`.
        prior_studies: Prior study names or globs (``"bert-base-uncased-*"``); ``None``: every
            study in ``prior_storage``.
        prior_storage: Where the priors are; default ``storage``.
        pruner: The study's pruner; the Trainer reports the metric after each evaluation, at
            the global step (:class:`EpochPruner` counts epochs instead). ``None``: no
            pruning (``NopPruner``, not Optuna's default ``MedianPruner``).
        seed: Seed of the sampler.
        **sampler_kwargs: Further :class:`~optuna_metabo.MetaBOSampler` arguments
            (``prior_defaults``, ``fixed_params``, ``n_prior_design_trials``...).

    Returns:
        ``direction``, ``compute_objective``, ``sampler``, ``pruner``, ``storage``,
        ``study_name`` and ``load_if_exists=True``: pass them as ``**kwargs``; the Trainer
        passes all but the first two to ``optuna.create_study``.

    Raises:
        ValueError: If the existing study has another direction or metric, or several
            objectives.
        optuna_metabo._history.priors.PriorStudyError: If a prior name or glob matches no study.
    """
    direction = direction or metric_direction(metric)
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}.")
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=StudyDirection[direction.upper()],
        load_if_exists=True,
    )
    _check_or_record_metric(study, metric, direction)

    prior_storage = storage if prior_storage is None else prior_storage
    names = _prior_names(study, metric, prior_studies, prior_storage)
    sampler = MetaBOSampler(
        names, prior_storage=prior_storage if names else None, seed=seed, **sampler_kwargs
    )
    kwargs: dict[str, Any] = {
        "direction": direction,
        "compute_objective": MetricObjective(metric),
        "sampler": sampler,
        "pruner": NopPruner() if pruner is None else pruner,
        "storage": storage,
        "study_name": study_name,
        "load_if_exists": True,
    }
    return kwargs


def _same_metric(a: str, b: str) -> bool:
    return a.removeprefix(_EVAL_PREFIX) == b.removeprefix(_EVAL_PREFIX)


def _check_or_record_metric(study: optuna.Study, metric: str, direction: str) -> None:
    if len(study.directions) != 1:
        raise ValueError(f"Study {study.study_name!r} has several objectives; use another name.")
    if study.direction != StudyDirection[direction.upper()]:
        raise ValueError(
            f"Study {study.study_name!r} exists and is to "
            f"{study.direction.name.lower()}, not to {direction} {metric!r}; Optuna would "
            "silently keep its direction. Use another study name."
        )
    recorded = study.metric_names
    if recorded is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    elif not _same_metric(recorded[0], metric):
        raise ValueError(
            f"Study {study.study_name!r} exists and optimizes {recorded[0]!r}, not {metric!r}. "
            "Use another study name."
        )


def _prior_names(
    target: optuna.Study,
    metric: str,
    patterns: Sequence[str] | str | None,
    prior_storage: str | BaseStorage,
) -> list[str]:
    """The prior studies' names, without the target and studies of another metric."""
    storage = open_storage(prior_storage)
    if isinstance(patterns, str):
        patterns = [patterns]
    names = resolve_study_names(storage, list(patterns) if patterns is not None else None)
    same_storage = storage_identity(storage) == storage_identity(target._storage)
    kept: list[str] = []
    for name in names:
        if same_storage and name == target.study_name:
            continue
        recorded = optuna.load_study(study_name=name, storage=storage).metric_names
        if recorded is not None and not _same_metric(recorded[0], metric):
            _logger.warning(
                "Prior study %r optimizes %r, not %r; it is not used.", name, recorded[0], metric
            )
            continue
        kept.append(name)
    if not kept:
        _logger.info("No prior study for %r; MetaBOSampler starts without priors.", metric)
    return kept
