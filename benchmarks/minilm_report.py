"""The report of the MiniLM benchmark: tables of ``<out>/<name>.md`` and ``<out>/<name>.png``.

Written by ``python -m benchmarks.minilm report`` from the complete runs of one protocol in
the run storage (see :mod:`benchmarks.minilm`). Every figure is a best validation accuracy
(``eval_accuracy`` of the last epoch, over the completed trials among the first n) or an
epoch count, averaged over the (held-out topic, seed) runs, with paired differences between
arms of the same run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
import math
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from benchmarks.minilm import ARM_ATTR
from benchmarks.minilm import ARMS
from benchmarks.minilm import CODE_ATTR
from benchmarks.minilm import COMPLETE_ATTR
from benchmarks.minilm import history_name
from benchmarks.minilm import OFFLINE_ATTR
from benchmarks.minilm import Protocol
from benchmarks.minilm import PROTOCOL_ATTR
from benchmarks.minilm import SEED_ATTR
from benchmarks.minilm import TOPIC_ATTR
from benchmarks.minilm import trainer_defaults
from benchmarks.minilm_memo import EPOCHS_ATTR
from benchmarks.minilm_memo import REPLAYED_ATTR
from benchmarks.minilm_memo import SECONDS_ATTR
from benchmarks.report import bootstrap_ci
from benchmarks.runner import get_storage
from optuna_metabo import USER_ATTR_SOURCE


BUDGETS = (1, 3, 5, 10)
BASELINES = ("defaults", "tpe", "gp", "warm_tpe")


@dataclass
class ArmRun:
    """One arm on one held-out topic and seed.

    Attributes:
        topic: The held-out topic.
        seed: The seed.
        arm: The arm.
        values: ``eval_accuracy`` of each trial, NaN where it was pruned or failed.
        epochs: Epochs each trial trained (or stands for, when replayed).
        seconds: Training seconds of each trial (0 when replayed).
        replayed: Whether each trial was replayed.
        sources: ``metabo:source`` of each trial (``""`` for other samplers).
        offline: ``HF_HUB_OFFLINE`` during the run.
        code: Fingerprint of the ``optuna_metabo`` sources of the run.
    """

    topic: str
    seed: int
    arm: str
    values: np.ndarray
    epochs: np.ndarray
    seconds: np.ndarray
    replayed: np.ndarray
    sources: list[str]
    offline: str
    code: str

    def best(self, n: int) -> float:
        """Best value of the first ``n`` trials (NaN if none completed)."""
        head = self.values[:n]
        return float(np.nanmax(head)) if np.isfinite(head).any() else math.nan

    def epochs_at(self, n: int) -> float:
        """Epochs spent by the first ``n`` trials."""
        return float(self.epochs[:n].sum())


def load_runs(storage: str, protocol: Protocol) -> list[ArmRun]:
    """The complete runs of a protocol.

    Args:
        storage: Storage URL.
        protocol: The protocol.

    Returns:
        The runs, sorted by (topic, seed, arm).
    """
    runs = []
    for summary in optuna.get_all_study_summaries(get_storage(storage), False):
        attrs = summary.user_attrs
        if attrs.get(PROTOCOL_ATTR) != protocol.id or not attrs.get(COMPLETE_ATTR):
            continue
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        complete = [t.state == TrialState.COMPLETE for t in trials]
        runs.append(
            ArmRun(
                topic=attrs[TOPIC_ATTR],
                seed=int(attrs[SEED_ATTR]),
                arm=attrs[ARM_ATTR],
                values=np.array([t.value if c else math.nan for t, c in zip(trials, complete)]),
                epochs=np.array([t.user_attrs.get(EPOCHS_ATTR, 0) for t in trials], dtype=float),
                seconds=np.array([t.user_attrs.get(SECONDS_ATTR, 0.0) for t in trials]),
                replayed=np.array([REPLAYED_ATTR in t.user_attrs for t in trials]),
                sources=[str(t.user_attrs.get(USER_ATTR_SOURCE, "")) for t in trials],
                offline=str(attrs.get(OFFLINE_ATTR, "")),
                code=str(attrs.get(CODE_ATTR, "")),
            )
        )
    return sorted(runs, key=lambda r: (r.topic, r.seed, ARMS.index(r.arm)))


def _by_arm(runs: list[ArmRun]) -> dict[str, list[ArmRun]]:
    grouped: dict[str, list[ArmRun]] = defaultdict(list)
    for run in runs:
        grouped[run.arm].append(run)
    return {arm: grouped[arm] for arm in ARMS if arm in grouped}


def _mean_se(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if len(array) == 0:
        return math.nan, math.nan
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan
    return float(array.mean()), se


def _cell(mean: float, se: float, bold: bool = False) -> str:
    text = f"{mean:+.3f} ± {se:.3f}"
    return f"**{text}**" if bold else text


def _paired(a: list[ArmRun], b: list[ArmRun], n_a: int, n_b: int) -> tuple[float, float]:
    """Mean ± SE of ``a.best(n_a) - b.best(n_b)`` over the (topic, seed) runs of both."""
    other = {(r.topic, r.seed): r for r in b}
    diffs = [
        r.best(n_a) - other[(r.topic, r.seed)].best(n_b) for r in a if (r.topic, r.seed) in other
    ]
    return _mean_se(diffs)


def accuracy_table(grouped: dict[str, list[ArmRun]]) -> list[str]:
    """Mean best ``eval_accuracy`` ± SE after 1, 3, 5, 10 trials; bold: highest mean."""
    means = {
        arm: [_mean_se([r.best(n) for r in runs]) for n in BUDGETS]
        for arm, runs in grouped.items()
    }
    top = [max(means[arm][i][0] for arm in means) for i in range(len(BUDGETS))]
    lines = ["| arm | runs | " + " | ".join(f"@{n}" for n in BUDGETS) + " |"]
    lines.append("|---|---:|" + "---:|" * len(BUDGETS))
    for arm, cells in means.items():
        row = [
            (f"**{m:.3f}**" if m == top[i] else f"{m:.3f}") + f" ± {s:.3f}"
            for i, (m, s) in enumerate(cells)
        ]
        lines.append(f"| {arm} | {len(grouped[arm])} | " + " | ".join(row) + " |")
    return lines


def epochs_table(grouped: dict[str, list[ArmRun]]) -> list[str]:
    """Mean epochs spent by the first 1, 3, 5, 10 trials, the replayed share, and the hours of
    training actually run (replays cost none)."""
    header = " | ".join(f"@{n}" for n in BUDGETS)
    lines = [f"| arm | {header} | replayed trials | training hours (all runs) |"]
    lines.append("|---|" + "---:|" * (len(BUDGETS) + 2))
    for arm, runs in grouped.items():
        cells = [f"{np.mean([r.epochs_at(n) for r in runs]):.1f}" for n in BUDGETS]
        replayed = np.concatenate([r.replayed for r in runs])
        hours = sum(float(r.seconds.sum()) for r in runs) / 3600
        lines.append(
            f"| {arm} | " + " | ".join(cells) + f" | {replayed.mean():.0%} | {hours:.2f} |"
        )
    return lines


def paired_table(grouped: dict[str, list[ArmRun]], reference: str) -> list[str]:
    """Paired ``reference - baseline`` at the same budget; bold: beyond 2 SE."""
    lines = ["| baseline | " + " | ".join(f"@{n}" for n in BUDGETS) + " |"]
    lines.append("|---|" + "---:|" * len(BUDGETS))
    for arm, runs in grouped.items():
        if arm == reference or reference not in grouped:
            continue
        cells = []
        for n in BUDGETS:
            mean, se = _paired(grouped[reference], runs, n, n)
            cells.append(_cell(mean, se, bold=abs(mean) > 2 * se))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def target_rows(grouped: dict[str, list[ArmRun]]) -> list[str]:
    """The issue's targets, each with its paired figure and verdict."""
    if "metabo" not in grouped:
        return ["(no metabo runs)"]
    metabo = grouped["metabo"]
    lines = ["| target | figure | verdict |", "|---|---|---|"]
    for baseline in ("tpe", "gp"):
        if baseline in grouped:
            mean, se = _paired(metabo, grouped[baseline], 3, 10)
            verdict = "met" if mean >= 0 else "**not met**"
            lines.append(
                f"| metabo @3 ≥ {baseline} @10 | paired {mean:+.3f} ± {se:.3f} | {verdict} |"
            )
    if "tpe" in grouped and "defaults" in grouped:
        gain, gain_se = _paired(metabo, grouped["defaults"], 1, 1)
        tpe_gain, tpe_se = _paired(grouped["tpe"], grouped["defaults"], 3, 1)
        mean, se = _paired(metabo, grouped["tpe"], 1, 3)
        verdict = "met" if mean >= 0 else "**not met**"
        lines.append(
            f"| metabo @1 − defaults ≥ tpe @3 − defaults | {gain:+.3f} ± {gain_se:.3f} vs "
            f"{tpe_gain:+.3f} ± {tpe_se:.3f} (paired difference {mean:+.3f} ± {se:.3f}) | "
            f"{verdict} |"
        )
    for arm in ("metabo", "metabo_hyperband"):
        if arm in grouped:
            runs = grouped[arm]
            first = sum(r.sources[:1] == ["prior_design"] for r in runs)
            offline = sum(r.offline == "1" for r in runs)
            verdict = "met" if first == len(runs) == offline else "**not met**"
            lines.append(
                f"| {arm}: first trial from the history (`prior_design`), HF_HUB_OFFLINE=1 | "
                f"{first} / {len(runs)} runs; offline in {offline} / {len(runs)} | {verdict} |"
            )
    return lines


def topic_table(grouped: dict[str, list[ArmRun]], storage: str, protocol: Protocol) -> list[str]:
    """Per held-out topic (mean over seeds): where each arm stands, and the best of the
    topic's own history study (training seed 0) as a reference."""
    columns = [
        ("defaults", 1), ("tpe", 10), ("gp", 10), ("warm_tpe", 3), ("warm_tpe", 10),
        ("metabo", 1), ("metabo", 3), ("metabo", 10), ("metabo_hyperband", 10),
    ]  # fmt: skip
    columns = [(arm, n) for arm, n in columns if arm in grouped]
    lines = [
        "| topic | " + " | ".join(f"{arm} @{n}" for arm, n in columns) + " | own history best |"
    ]
    lines.append("|---|" + "---:|" * (len(columns) + 1))
    topics = sorted({r.topic for runs in grouped.values() for r in runs})
    for topic in topics:
        cells = []
        for arm, n in columns:
            values = [r.best(n) for r in grouped[arm] if r.topic == topic]
            cells.append(f"{np.nanmean(values):.3f}" if values else "")
        try:
            own = optuna.load_study(study_name=history_name(protocol, topic), storage=storage)
            reference = f"{own.best_value:.3f}"
        except (KeyError, ValueError):
            reference = ""
        lines.append(f"| {topic} | " + " | ".join(cells) + f" | {reference} |")
    return lines


def plot(grouped: dict[str, list[ArmRun]], path: Path, trials: int) -> None:
    """Mean best ``eval_accuracy`` against trials and against epochs spent.

    Args:
        grouped: Runs by arm.
        path: PNG file to write.
        trials: Trials per arm.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_trial, by_epoch) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, sharey=True)
    x = list(range(1, trials + 1))
    for arm, runs in grouped.items():
        curves = np.array([[r.best(n) for n in x] for r in runs])  # (runs, trials)
        epochs = np.array([[r.epochs_at(n) for n in x] for r in runs]).mean(axis=0)
        mean = np.nanmean(curves, axis=0)
        low, high = bootstrap_ci(np.nan_to_num(curves, nan=np.nanmin(curves)))
        style = "--" if arm in BASELINES else "-"
        by_trial.plot(x, mean, style, label=f"{arm} (n={len(runs)})")
        by_trial.fill_between(x, low, high, alpha=0.15)
        by_epoch.plot(epochs, mean, style + "o", markersize=3, label=arm)
    by_trial.set_xlabel("trials on the held-out topic")
    by_trial.set_ylabel("best eval_accuracy so far (mean over runs)")
    by_epoch.set_xlabel("epochs spent (mean over runs)")
    for ax in (by_trial, by_epoch):
        ax.grid(alpha=0.3)
    by_trial.legend(fontsize=7, title="band: 95% bootstrap CI of the mean", title_fontsize=7)
    fig.suptitle("MiniLM on tweet topics, leave one topic out (Trainer.hyperparameter_search)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_report(storage: str, protocol: Protocol, out: Path, name: str) -> str:
    """Writes ``<out>/<name>.md`` and ``<out>/<name>.png`` and returns the Markdown.

    Args:
        storage: Storage URL.
        protocol: The protocol whose runs are reported.
        out: Output folder.
        name: File stem.

    Returns:
        The report.
    """
    runs = load_runs(storage, protocol)
    if not runs:
        return f"No complete runs of protocol {protocol.id} in {storage}."
    grouped = _by_arm(runs)
    plot(grouped, out / f"{name}.png", protocol.trials)
    codes = sorted({r.code for r in runs if r.arm.startswith("metabo")})
    defaults = ", ".join(f"{k}={v}" for k, v in trainer_defaults(protocol.max_epochs).items())
    sections = [
        f"# MiniLM on tweet topics (protocol `{protocol.id}`)",
        "",
        f"Runs: {len({(r.topic, r.seed) for r in runs})} (held-out topic, seed) pairs; "
        f"`defaults` is one trial ({defaults}). MetaBOSampler runs used optuna_metabo "
        f"sources {', '.join(codes) or '-'} (SHA-256 prefix).",
        "",
        "## Best eval_accuracy after n trials (mean ± SE)",
        *accuracy_table(grouped),
        "",
        "## Epochs spent by the first n trials (mean), replays, training time",
        *epochs_table(grouped),
        "",
        "## Paired differences, metabo − baseline at the same n (bold: beyond 2 SE)",
        *paired_table(grouped, "metabo"),
        "",
        "## Targets",
        *target_rows(grouped),
        "",
        "## Per held-out topic (mean over seeds)",
        *topic_table(grouped, storage, protocol),
        "",
        f"![best eval_accuracy against trials and epochs]({name}.png)",
        "",
    ]
    text = "\n".join(sections)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    return text
