"""Compares the adaptive optimizer with Adam, SGD and RMSprop on the digits CNN.

Part 1 trains one fixed CNN (2 conv layers, 16 base filters, 64 dense units, dropout 0.25,
batch 32, no schedule, no early stopping) with each optimizer, each initial learning rate and
each seed, and reports per optimizer: training time, epochs to reach ``--target-accuracy``,
final validation accuracy and loss, the variance of log10 of the per-epoch learning rate, the
sensitivity to the initial learning rate (spread of the final accuracy across learning rates)
and a paired Wilcoxon signed-rank test of ``adaptive`` against each other optimizer over the
(seed, learning rate) pairs. SGD uses momentum 0.9; RMSprop and Adam use torch's defaults.

Part 2 tunes the CNN objective (its full search space, with ``optimizer`` fixed to one choice)
with MetaBOSampler (no priors unless ``--prior-storage`` is given) and with TPE, and reports the
trials needed to reach each of ``--sampler-targets``.

Examples::

    python -m examples.compare_optimizers --smoke                 # < 1 minute
    python -m examples.compare_optimizers --output compare.json   # the README's figures
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import math
import statistics
import time
from typing import Any

import numpy as np
import optuna
import torch

from examples.common import cli
from examples.common.data import load_task_data
from examples.common.data import TaskData
from examples.common.training import fit
from examples.common.training import make_optimizer
from examples.common.training import seed_everything
from examples.common.training import TensorLoader
from examples.image_cnn import CNN
from examples.image_cnn import CNNObjective


OPTIMIZERS = ("adaptive", "Adam", "SGD", "RMSprop")
ADAPTIVE = "adaptive"


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes: a test, not figures.")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    parser.add_argument(
        "--learning-rates", nargs="+", type=float, default=[1e-4, 1e-3, 1e-2, 1e-1]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--target-accuracy", type=float, default=0.95)
    parser.add_argument("--sampler-trials", type=int, default=15)
    parser.add_argument("--sampler-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--sampler-epochs", type=int, default=5)
    parser.add_argument("--sampler-targets", nargs="+", type=float, default=[0.95, 0.97])
    parser.add_argument("--samplers", nargs="+", default=["metabo", "tpe"])
    parser.add_argument("--prior-storage", default=None)
    parser.add_argument("--prior-studies", nargs="+", default=None)
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    return parser


def train_once(
    data: TaskData, optimizer_name: str, learning_rate: float, seed: int, epochs: int
) -> dict[str, Any]:
    """Trains the fixed CNN once.

    Args:
        data: The digits task.
        optimizer_name: A name for :func:`examples.common.training.make_optimizer`.
        learning_rate: The initial learning rate.
        seed: Seed of the initialization and the batch order.
        epochs: Epochs to train (no early stopping).

    Returns:
        ``time_s``, ``history`` (per-epoch records) and ``learning_rates``.
    """
    objective = CNNObjective(data, device="cpu", seed=seed)  # reuse its standardized tensors
    seed_everything(seed)
    model = CNN(objective.input_shape, data.num_labels, n_conv_layers=2, base_filters=16)
    optimizer = make_optimizer(
        optimizer_name,
        model.parameters(),
        learning_rate=learning_rate,
        momentum=0.9 if optimizer_name == "SGD" else 0.0,
    )
    start = time.perf_counter()
    result = fit(
        model,
        optimizer,
        TensorLoader(objective.train_tensors, 32, shuffle=True, seed=seed),
        TensorLoader(objective.validation_tensors, 256),
        forward=objective.forward,
        epochs=epochs,
        device=torch.device("cpu"),
    )
    return {
        "time_s": time.perf_counter() - start,
        "history": result.history,
        "learning_rates": [h["lr"] for h in result.history],
    }


def run_summary(run: dict[str, Any], target: float, epochs: int) -> dict[str, float]:
    """Reduces one run to the reported measures.

    Args:
        run: A result of :func:`train_once`.
        target: Validation accuracy to reach.
        epochs: Planned epochs (a run stops early only when it diverges).

    Returns:
        ``time_s``, ``epochs_to_target`` (``nan``: not reached), ``final_accuracy``,
        ``final_loss`` (``nan``: diverged), ``lr_log_variance``.
    """
    history = run["history"]
    reached = [i + 1 for i, h in enumerate(history) if h["accuracy"] >= target]
    diverged = len(history) < epochs or not math.isfinite(history[-1]["train_loss"])
    lrs = np.log10(np.clip(run["learning_rates"], 1e-30, None))
    return {
        "time_s": run["time_s"],
        "epochs_to_target": float(reached[0]) if reached else math.nan,
        "final_accuracy": 0.0 if diverged else history[-1]["accuracy"],
        "final_loss": math.nan if diverged else history[-1]["val_loss"],
        "lr_log_variance": float(np.var(lrs)),
    }


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Wilcoxon signed-rank test of ``a`` against ``b`` (paired, two-sided).

    Args:
        a: Values of the adaptive optimizer.
        b: Values of the other optimizer, same pairing.

    Returns:
        ``wins``, ``ties``, ``losses`` (of ``a``), ``median_difference`` and ``p_value``
        (``nan`` when all pairs tie).
    """
    from scipy.stats import wilcoxon

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    p_value = math.nan
    if np.any(diff != 0):
        p_value = float(wilcoxon(a, b, zero_method="wilcox").pvalue)
    return {
        "wins": int(np.sum(diff > 0)),
        "ties": int(np.sum(diff == 0)),
        "losses": int(np.sum(diff < 0)),
        "median_difference": float(np.median(diff)),
        "p_value": p_value,
    }


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def compare_training(args: argparse.Namespace, data: TaskData) -> dict[str, Any]:
    """Part 1: every optimizer x learning rate x seed; returns the runs and the statistics.

    Args:
        args: Parsed arguments of :func:`build_parser`.
        data: The digits task.

    Returns:
        ``runs`` (``{optimizer: {lr: {seed: summary}}}``), ``table``, ``sensitivity`` and
        ``tests`` (``{other: {measure: test}}``).
    """
    runs: dict[str, dict[float, dict[int, dict[str, float]]]] = {}
    for name in args.optimizers:
        runs[name] = {}
        for lr in args.learning_rates:
            runs[name][lr] = {}
            for seed in args.seeds:
                run = train_once(data, name, lr, seed, args.epochs)
                summary = run_summary(run, args.target_accuracy, args.epochs)
                runs[name][lr][seed] = summary
                print(
                    f"{name:8s} lr={lr:.0e} seed={seed} "
                    + " ".join(f"{k}={v:.4g}" for k, v in summary.items()),
                    flush=True,
                )
    table, sensitivity = {}, {}
    for name, by_lr in runs.items():
        flat = [s for by_seed in by_lr.values() for s in by_seed.values()]
        table[name] = {
            "time_s": _nanmean([s["time_s"] for s in flat]),
            "reached_target": sum(math.isfinite(s["epochs_to_target"]) for s in flat),
            "n_runs": len(flat),
            "epochs_to_target": _nanmean([s["epochs_to_target"] for s in flat]),
            "final_accuracy": _nanmean([s["final_accuracy"] for s in flat]),
            "final_loss": _nanmean([s["final_loss"] for s in flat]),
            "diverged": sum(not math.isfinite(s["final_loss"]) for s in flat),
            "lr_log_variance": _nanmean([s["lr_log_variance"] for s in flat]),
        }
        per_lr = {
            lr: _nanmean([s["final_accuracy"] for s in by_seed.values()])
            for lr, by_seed in by_lr.items()
        }
        sensitivity[name] = {
            "per_lr": per_lr,
            "range": max(per_lr.values()) - min(per_lr.values()),
            "std": float(np.std(list(per_lr.values()))),
        }
    tests: dict[str, dict[str, dict[str, float]]] = {}
    if ADAPTIVE in runs:
        keys = [(lr, seed) for lr in args.learning_rates for seed in args.seeds]
        for other in runs:
            if other == ADAPTIVE:
                continue
            tests[other] = {}
            for measure, sign in (("final_accuracy", 1.0), ("epochs_to_target", -1.0)):
                # Unreached targets count as one epoch past the budget; fewer epochs is better,
                # so epochs are negated to make "larger is better" for both measures.
                def value(name: str, lr: float, seed: int, measure: str = measure) -> float:
                    v = runs[name][lr][seed][measure]
                    return v if math.isfinite(v) else float(args.epochs + 1)

                a = [sign * value(ADAPTIVE, lr, seed) for lr, seed in keys]
                b = [sign * value(other, lr, seed) for lr, seed in keys]
                tests[other][measure] = paired_test(a, b)
    return {"runs": runs, "table": table, "sensitivity": sensitivity, "tests": tests}


def compare_samplers(args: argparse.Namespace, data: TaskData) -> dict[str, Any]:
    """Part 2: trials that MetaBO and TPE need to reach ``--sampler-targets`` per optimizer.

    Args:
        args: Parsed arguments of :func:`build_parser`.
        data: The digits task.

    Returns:
        ``trials_to_target`` (``{optimizer: {sampler: {target: {seed: trials or None}}}}``),
        ``best`` values and best-so-far ``curves``.
    """
    from examples.tune_with_priors import trials_to_target

    needed: dict[str, dict[str, dict[float, dict[int, int | None]]]] = {}
    best: dict[str, dict[str, dict[int, float]]] = {}
    curves: dict[str, dict[str, dict[int, list[float]]]] = {}
    for name in args.optimizers:
        needed[name], best[name], curves[name] = {}, {}, {}
        for sampler_name in args.samplers:
            needed[name][sampler_name] = {target: {} for target in args.sampler_targets}
            best[name][sampler_name], curves[name][sampler_name] = {}, {}
            for seed in args.sampler_seeds:
                objective = CNNObjective(
                    data, optimizers=[name], max_epochs=args.sampler_epochs, device="cpu"
                )
                sampler = cli.create_sampler(
                    sampler_name,
                    seed,
                    prior_studies=args.prior_studies,
                    prior_storage=args.prior_storage,
                )
                study = optuna.create_study(direction="maximize", sampler=sampler)
                study.optimize(objective, n_trials=args.sampler_trials)
                curve = cli.best_so_far(study)
                for target in args.sampler_targets:
                    needed[name][sampler_name][target][seed] = trials_to_target(curve, target)
                best[name][sampler_name][seed] = curve[-1]
                curves[name][sampler_name][seed] = curve
                print(
                    f"{name:8s} {sampler_name:6s} seed={seed} best={curve[-1]:.4f} trials to "
                    + " ".join(
                        f"{t}: {needed[name][sampler_name][t][seed]}" for t in args.sampler_targets
                    ),
                    flush=True,
                )
    return {"trials_to_target": needed, "best": best, "curves": curves}


def format_report(results: dict[str, Any], args: argparse.Namespace) -> str:
    """Formats the results as Markdown tables.

    Args:
        results: ``{"training": ..., "samplers": ...}``.
        args: Parsed arguments of :func:`build_parser`.

    Returns:
        The report.
    """
    training = results["training"]
    lines = [
        f"| Optimizer | time/run (s) | reached {args.target_accuracy} | epochs to it "
        "| final accuracy | final loss | diverged | var(log10 lr) | accuracy range over lrs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in training["table"].items():
        lines.append(
            f"| {name} | {row['time_s']:.2f} | {row['reached_target']}/{row['n_runs']} "
            f"| {row['epochs_to_target']:.1f} | {row['final_accuracy']:.3f} "
            f"| {row['final_loss']:.3f} | {row['diverged']} | {row['lr_log_variance']:.3f} "
            f"| {training['sensitivity'][name]['range']:.3f} |"
        )
    lrs = args.learning_rates
    lines += ["", "| Optimizer | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |"]
    lines.append("| --- |" + " --- |" * len(lrs))
    for name, sens in training["sensitivity"].items():
        cells = " | ".join(f"{sens['per_lr'][lr]:.3f}" for lr in lrs)
        lines.append(f"| {name} | {cells} |")
    if training["tests"]:
        lines += [
            "",
            "| adaptive vs | measure | wins/ties/losses | median diff | Wilcoxon p |",
            "| --- | --- | --- | --- | --- |",
        ]
        for other, by_measure in training["tests"].items():
            for measure, t in by_measure.items():
                lines.append(
                    f"| {other} | {measure} | {t['wins']}/{t['ties']}/{t['losses']} "
                    f"| {t['median_difference']:+.3f} | {t['p_value']:.3g} |"
                )
    samplers = results.get("samplers")
    if samplers:
        targets = args.sampler_targets
        lines += [
            "",
            "| Optimizer | sampler | "
            + " | ".join(f"trials to {t} (per seed)" for t in targets)
            + " | best |",
            "| --- | --- |" + " --- |" * (len(targets) + 1),
        ]
        for name, by_sampler in samplers["trials_to_target"].items():
            for sampler_name, by_target in by_sampler.items():
                trial_cells = [
                    " / ".join(
                        str(n) if n is not None else f">{args.sampler_trials}"
                        for n in by_target[t].values()
                    )
                    for t in targets
                ]
                bests = " / ".join(
                    f"{v:.3f}" for v in samplers["best"][name][sampler_name].values()
                )
                lines.append(f"| {name} | {sampler_name} | {' | '.join(trial_cells)} | {bests} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the comparison; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The results (also written to ``--output``).
    """
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.dataset, args.learning_rates, args.seeds = "digits-n300", [1e-3, 1e-1], [0, 1]
        args.epochs, args.sampler_trials, args.sampler_epochs = 2, 2, 1
        args.sampler_seeds, args.target_accuracy, args.sampler_targets = [0], 0.5, [0.5]
    torch.set_num_threads(args.num_threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_task_data(args.dataset, "image")
    start = time.perf_counter()
    results: dict[str, Any] = {"arguments": vars(args), "training": compare_training(args, data)}
    if args.sampler_trials > 0 and args.samplers:
        results["samplers"] = compare_samplers(args, data)
    results["wall_s"] = time.perf_counter() - start
    report = format_report(results, args)
    results["report"] = report
    print(report)
    print(f"Total: {results['wall_s']:.0f} s")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
