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

``--model`` picks the network: ``bert-tiny``, ``distilbert-tiny`` or ``roberta-tiny`` work
offline (a WordPiece tokenizer trained on the task's training texts, a small randomly
initialized model); a hub name such as ``bert-base-uncased`` fine-tunes the pretrained weights
(network access or a filled Hugging Face cache). ``--datasets`` takes the offline
``stdlib_docs[-topics]`` tasks, hub datasets (``imdb``, ``ag_news``, ``glue/sst2``...) or local
files (``name=file.csv``), as in ``examples.text_bert``.

Search space (``hp_space``, by ``TrainingArguments`` name): ``learning_rate`` log 1e-5..5e-4
(1e-4..5e-3 for the tiny models), ``per_device_train_batch_size`` {16, 32},
``num_train_epochs`` 1..``--max-epochs``, ``weight_decay`` 0..0.1, ``warmup_ratio`` 0..0.2.

Examples::

    python -m examples.hf_trainer                                   # offline, 3 tasks
    python -m examples.hf_trainer --datasets stdlib_docs-files-network stdlib_docs \\
        --n-trials 4 --max-train-samples 256
    python -m examples.hf_trainer --model bert-base-uncased --datasets imdb glue/sst2 \\
        --max-train-samples 5000 --max-length 128 --n-trials 10
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterator
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

from examples.common import cli
from examples.common.data import load_task_data
from examples.common.training import macro_f1
from examples.families import parse_dataset_spec
from examples.text_bert import HISTORY_DATASETS
from examples.text_bert import NEW_DATASET
from examples.text_bert import PRETRAINED_LR_RANGE
from examples.text_bert import TINY_LR_RANGE
from examples.text_bert import tiny_model
from examples.text_bert import TINY_MODELS
from examples.text_bert import train_tokenizer
from optuna_metabo import USER_ATTR_SOURCE
from optuna_metabo.hf import hp_search_kwargs
from optuna_metabo.hf import TrainerHpSpace


#: Default tasks, tuned in this order: two topic subsets, then the full topic task.
DEFAULT_DATASETS = (*HISTORY_DATASETS[:2], NEW_DATASET)
METRICS = ("eval_accuracy", "eval_macro_f1", "eval_loss")
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
        model: A tiny model name (a tokenizer is trained on the training texts) or a hub name
            (its pretrained tokenizer).
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
    if model in TINY_MODELS:
        tokenizer = train_tokenizer(list(data.train["text"]), vocab_size)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)

    def encode(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    return TextTask(
        name=name,
        tokenizer=tokenizer,
        train=data.train.map(encode, batched=True, remove_columns=["text"]),
        validation=data.validation.map(encode, batched=True, remove_columns=["text"]),
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
) -> Any:
    """A ``Trainer`` with a ``model_init`` that evaluates after every epoch.

    Args:
        task: The tokenized task.
        model: A tiny model name (built from a small config) or a hub name (pretrained).
        output_dir: The Trainer's output directory (nothing is saved there but logs).
        max_length: Longest input, in tokens (the tiny models' position embeddings).
        hidden_size: Hidden size of tiny models.
        num_layers: Transformer layers of tiny models.
        device: ``auto`` (the GPU if there is one, with bf16 where supported), ``cpu`` or
            ``cuda``.
        seed: Seed of model initialization and data order, the same in every trial.
        verbose: Keep the Trainer's per-epoch log lines.

    Returns:
        The ``transformers.Trainer``.
    """
    import transformers

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
            model, num_labels=task.num_labels
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
        bf16=not use_cpu and torch.cuda.is_bf16_supported(),
    )
    trainer = transformers.Trainer(
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
        default="bert-tiny",
        help=f"{', '.join(TINY_MODELS)} (offline) or a hub name such as bert-base-uncased",
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
    """Keeps Optuna's, transformers' and the sampler's info logs quiet, then restores them."""
    import transformers

    metabo_logger = logging.getLogger("optuna_metabo")
    saved = (
        optuna.logging.get_verbosity(),
        transformers.logging.get_verbosity(),
        metabo_logger.level,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        transformers.logging.set_verbosity_error()
        metabo_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(saved[0])
        transformers.logging.set_verbosity(saved[1])
        metabo_logger.setLevel(saved[2])


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
