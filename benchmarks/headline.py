"""The README's headline figure: MetaBOSampler against what a user would otherwise run.

Only the user-facing baselines, under the names a user knows them by; the variants stay in
BENCHMARKS.md. Reads stored runs (``python -m benchmarks.runner``), like ``benchmarks.report``.

Usage::

    python -m benchmarks.headline --problem lcbench --out benchmarks/results/headline-lcbench.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks import DEFAULT_STORAGE
from benchmarks.report import attach_regret
from benchmarks.report import bootstrap_ci
from benchmarks.report import load_runs
from benchmarks.report import Run


# Sampler -> (label, line style), in the legend's order.
LABELS = {
    "metabo": ("MetaBOSampler", "-"),
    "warm_tpe": ("re-run the old best configurations, then TPE", "--"),
    "gp": ("GPSampler", "--"),
    "tpe": ("TPESampler", "--"),
    "random": ("random search", ":"),
}


def headline_figure(runs: list[Run], path: Path, title: str) -> None:
    """Mean normalized regret against trials, with 95% bootstrap bands of the mean.

    Args:
        runs: Runs of one problem and protocol.
        path: The PNG to write.
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = min(r.budget for r in runs)
    x = np.arange(1, budget + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for sampler, (label, style) in LABELS.items():
        curves = np.array([r.regret[:budget] for r in runs if r.sampler == sampler])
        if len(curves) == 0:
            continue
        low, high = bootstrap_ci(curves)
        width = 2.2 if sampler == "metabo" else 1.3
        ax.plot(x, np.maximum(curves.mean(axis=0), 1e-4), style, lw=width, label=label)
        ax.fill_between(x, np.maximum(low, 1e-4), np.maximum(high, 1e-4), alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("trials on the new task")
    ax.set_ylabel("mean normalized regret (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="band: 95% bootstrap CI of the mean", title_fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the headline figure of one problem from the stored runs.

    Args:
        argv: Command-line arguments (see ``--help``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=DEFAULT_STORAGE)
    parser.add_argument("--problem", default="lcbench")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/headline.png"))
    parser.add_argument("--cache-dir", default="benchmarks/.cache")
    parser.add_argument("--bound-samples", type=int, default=2000)
    args = parser.parse_args(argv)
    runs = load_runs(args.storage, [args.problem], list(LABELS))
    if not runs:
        parser.error(f"no stored runs of {args.problem!r} in {args.storage}")
    attach_regret(runs, args.cache_dir, args.bound_samples)
    n = len({(r.target, r.seed) for r in runs})
    title = f"{args.problem}: leave one task out, {n} (task, seed) runs per sampler"
    headline_figure(runs, args.out, title)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
