"""Sampler overhead: median seconds per trial of MetaBOSampler vs Optuna's GPSampler.

Protocol (issue 2): ``--n-priors`` prior studies x ``--prior-trials`` trials of a 7-parameter
task family, then a ``--budget``-trial target study. Both samplers run on the same target in the
same process, so the ratio is robust to machine noise. The peak RSS of that process (both
samplers) is reported too.

Usage::

    python -m benchmarks.bench_overhead --n-priors 10 --prior-trials 50 --budget 40 --seeds 3
    python -m benchmarks.bench_overhead --n-priors 50 --prior-trials 100 --budget 40 --seeds 1
    python -m benchmarks.bench_overhead --grown --seeds 3   # priors lack one target parameter
    python -m benchmarks.bench_overhead --target-history 300 --budget 20 --seeds 2
    python -m benchmarks.bench_overhead --target-history 1000 --budget 20 --seeds 1 --no-gp

``--objectives K`` (2 to 4) makes priors and target K-objective studies (the loss above, a
cost ``sum(x) + 0.5 * layers``, then ``(x_i - 0.7)^2`` sums over shifted halves of ``x``; metric
names ``loss``, ``cost``, ``f2``, ``f3``; priors by MOTPE)::

    python -m benchmarks.bench_overhead --objectives 2 --n-priors 10 --prior-trials 50 --budget 40
    python -m benchmarks.bench_overhead --objectives 4 --n-priors 10 --prior-trials 50 --budget 40

``--target-history N`` first fills each target study with N completed random-search trials
(the same ones for both samplers), so the timed trials measure the cost per trial of a long
study without running N sampler calls first.

``--pruned`` (issue 24) times MetaBOSampler with pruned trials in the model: every study
trains "epoch by epoch" (the loss above times ``1 + 2 exp(-step / 8)``, reported at steps
1..27) under ``HyperbandPruner(1, 27, 3)``: the priors (TPE) and the ``--target-history``
trials (random search) are mostly pruned and hold their intermediate values, and the timed
trials run under the same pruner. The baseline, in the same process, is MetaBOSampler on the
same histories with every trial completed at its final loss, timed without a pruner: today's
figure at the same number of trials. With ``EngineSettings.pruned_trials`` the
``pruned_trials="ignore"`` variant on the pruned histories is timed too::

    python -m benchmarks.bench_overhead --pruned --target-history 100 --budget 20 --seeds 3
    python -m benchmarks.bench_overhead --pruned --target-history 300 --budget 10 --seeds 1
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FixedTrial
from optuna.trial import FrozenTrial


def _objective(shift: np.ndarray, scale: float, held_lr: float | None = None) -> Any:
    def objective(trial: optuna.Trial) -> float:
        x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(5)])
        lr = held_lr if held_lr is not None else trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 5)
        value = float(((x - 0.3 - shift[:5]) ** 2).sum())
        value += (np.log10(lr) + 2.5 + shift[5]) ** 2 + 0.1 * (layers - 3) ** 2
        return scale * value

    return objective


_METRICS = ["loss", "cost", "f2", "f3"]


def _many_objectives(shift: np.ndarray, scale: float, n_objectives: int) -> Any:
    loss = _objective(shift, scale)

    def objective(trial: optuna.Trial) -> list[float]:
        value = loss(trial)
        x = np.array([trial.params[f"x{i}"] for i in range(5)])
        values = [value, float(x.sum()) + 0.5 * trial.params["layers"]]
        values += [float(((x[k - 2 :] - 0.7) ** 2).sum()) for k in range(2, n_objectives)]
        return values

    return objective


def _create(
    n_objectives: int, sampler: optuna.samplers.BaseSampler, **kwargs: Any
) -> optuna.Study:
    if n_objectives == 1:
        return optuna.create_study(sampler=sampler, **kwargs)
    study = optuna.create_study(directions=["minimize"] * n_objectives, sampler=sampler, **kwargs)
    study.set_metric_names(_METRICS[:n_objectives])
    return study


def _timed(sampler: optuna.samplers.BaseSampler) -> tuple[optuna.samplers.BaseSampler, list]:
    seconds: list[float] = []
    original = sampler.sample_relative

    def sample_relative(study: Any, trial: Any, space: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(study, trial, space)
        finally:
            seconds.append(time.perf_counter() - start)

    sampler.sample_relative = sample_relative  # type: ignore[assignment]
    return sampler, seconds


def _history(
    target: Any, n: int, seed: int, n_objectives: int = 1
) -> list[optuna.trial.FrozenTrial]:
    """``n`` completed trials of ``target`` at random configurations."""
    if n == 0:
        return []
    study = _create(n_objectives, optuna.samplers.RandomSampler(seed=seed))
    study.optimize(target, n_trials=n)
    return study.trials


def run(
    n_priors: int,
    prior_trials: int,
    budget: int,
    seed: int,
    grown: bool = False,
    target_history: int = 0,
    with_gp: bool = True,
    n_objectives: int = 1,
) -> dict[str, float]:
    from optuna_metabo import MetaBOSampler

    rng = np.random.RandomState(seed)
    storage = optuna.storages.InMemoryStorage()
    names = []
    for i in range(n_priors):
        shift = rng.uniform(-0.1, 0.1, size=6)
        name = f"prior-{i}"
        tpe = optuna.samplers.TPESampler(seed=i)
        prior = _create(n_objectives, tpe, storage=storage, study_name=name)
        held = 1e-3 if grown else None
        scale = rng.uniform(0.5, 2.0)
        objective = (
            _objective(shift, scale, held)
            if n_objectives == 1
            else _many_objectives(shift, scale, n_objectives)
        )
        prior.optimize(objective, n_trials=prior_trials)
        names.append(name)
    target_shift = rng.uniform(-0.1, 0.1, size=6)
    target = (
        _objective(target_shift, 1.0)
        if n_objectives == 1
        else _many_objectives(target_shift, 1.0, n_objectives)
    )
    result = {}
    samplers: dict[str, optuna.samplers.BaseSampler] = {
        "metabo": MetaBOSampler(names, prior_storage=storage, seed=seed)
    }
    if with_gp:
        samplers["gp"] = optuna.samplers.GPSampler(seed=seed)
    history = _history(target, target_history, seed, n_objectives)
    for label, sampler in samplers.items():
        timed, seconds = _timed(sampler)
        study = _create(n_objectives, timed)
        study.add_trials(history)
        study.optimize(target, n_trials=budget)
        result[label] = statistics.median(seconds[-max(1, budget // 2) :])
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


CURVE_STEPS = 27


def _curve(final: Any) -> Any:
    """Train ``final``'s loss "epoch by epoch": report it at steps 1..27, stop when pruned."""

    def objective(trial: optuna.Trial) -> float:
        value = final(trial)
        for step in range(1, CURVE_STEPS + 1):
            trial.report(value * (1 + 2 * math.exp(-step / 8)), step)
            if step < CURVE_STEPS and trial.should_prune():
                raise optuna.TrialPruned()
        return value

    return objective


def _hyperband() -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(1, CURVE_STEPS, 3)


def _completed(trials: list[FrozenTrial], final: Any) -> list[FrozenTrial]:
    """The same trials, each completed at the final value of its configuration."""
    return [
        optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, value=final(FixedTrial(t.params))
        )
        for t in trials
    ]


def run_pruned(
    n_priors: int, prior_trials: int, budget: int, seed: int, target_history: int
) -> dict[str, float]:
    """Median seconds per trial of MetaBOSampler on mostly pruned histories (``pruned``), on
    the same histories completed (``completed``) and, where it exists, with
    ``pruned_trials="ignore"``; ``pruned_share`` of the target history.

    Args:
        n_priors: Prior studies.
        prior_trials: Trials per prior study.
        budget: Timed trials.
        seed: Seed of tasks, priors, history and samplers.
        target_history: Random-search trials in the target study before the timed ones.
    """
    from optuna_metabo import EngineSettings
    from optuna_metabo import MetaBOSampler

    rng = np.random.RandomState(seed)
    pruned_storage = optuna.storages.InMemoryStorage()
    completed_storage = optuna.storages.InMemoryStorage()
    names = [f"prior-{i}" for i in range(n_priors)]
    for i, name in enumerate(names):
        final = _objective(rng.uniform(-0.1, 0.1, size=6), rng.uniform(0.5, 2.0))
        prior = optuna.create_study(
            storage=pruned_storage,
            study_name=name,
            sampler=optuna.samplers.TPESampler(seed=i),
            pruner=_hyperband(),
        )
        prior.optimize(_curve(final), n_trials=prior_trials)
        twin = optuna.create_study(storage=completed_storage, study_name=name)
        twin.add_trials(_completed(prior.trials, final))
    target = _objective(rng.uniform(-0.1, 0.1, size=6), 1.0)
    history = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=seed), pruner=_hyperband()
    )
    history.optimize(_curve(target), n_trials=target_history)
    states = [t.state for t in history.trials]
    result = {"pruned_share": states.count(optuna.trial.TrialState.PRUNED) / max(len(states), 1)}
    arms: dict[str, tuple[BaseStorage, list[FrozenTrial], Any, optuna.pruners.BasePruner]] = {
        "pruned": (pruned_storage, history.trials, _curve(target), _hyperband()),
        "completed": (
            completed_storage,
            _completed(history.trials, target),
            target,
            optuna.pruners.NopPruner(),
        ),
    }
    arms["ignore"] = arms["pruned"]
    for label, (storage, trials, objective, pruner) in arms.items():
        settings = EngineSettings(pruned_trials="ignore" if label == "ignore" else "curve")
        sampler = MetaBOSampler(names, prior_storage=storage, seed=seed, engine_settings=settings)
        timed, seconds = _timed(sampler)
        study = optuna.create_study(sampler=timed, pruner=pruner)
        study.add_trials(trials)
        study.optimize(objective, n_trials=budget)
        result[label] = statistics.median(seconds[-max(1, budget // 2) :])
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _print_pruned(rows: list[dict[str, float]]) -> None:
    for seed, row in enumerate(rows):
        ignore = f", pruned_trials='ignore' {row['ignore']:.3f}" if "ignore" in row else ""
        print(
            f"seed {seed}: {row['pruned_share']:.0%} of the target history pruned; MetaBO "
            f"{row['pruned']:.3f} s/trial with pruned trials, {row['completed']:.3f} with them "
            f"completed{ignore}; ratio {row['pruned'] / row['completed']:.2f}; "
            f"peak RSS {row['rss_mb']:.0f} MB"
        )
    pruned = statistics.median(r["pruned"] for r in rows)
    completed = statistics.median(r["completed"] for r in rows)
    ratios = [r["pruned"] / r["completed"] for r in rows]
    print(
        f"median over seeds: with pruned trials {pruned:.3f} s/trial, completed {completed:.3f}, "
        f"ratio {pruned / completed:.2f} (per seed {', '.join(f'{r:.2f}' for r in ratios)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-priors", type=int, default=10)
    parser.add_argument("--prior-trials", type=int, default=50)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--grown",
        action="store_true",
        help="the priors held lr at 1e-3 (a grown space: MetaBO learns the held value)",
    )
    parser.add_argument(
        "--target-history",
        type=int,
        default=0,
        help="completed random trials in the target study before the timed ones",
    )
    parser.add_argument("--no-gp", action="store_true", help="time MetaBOSampler alone")
    parser.add_argument(
        "--objectives", type=int, choices=(1, 2, 3, 4), default=1, help="objectives per study"
    )
    parser.add_argument(
        "--pruned",
        action="store_true",
        help="mostly pruned histories with intermediate values, against the same completed",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.pruned:
        _print_pruned(
            [
                run_pruned(args.n_priors, args.prior_trials, args.budget, s, args.target_history)
                for s in range(args.seeds)
            ]
        )
        return
    rows = [
        run(
            args.n_priors,
            args.prior_trials,
            args.budget,
            s,
            args.grown,
            args.target_history,
            not args.no_gp,
            args.objectives,
        )
        for s in range(args.seeds)
    ]
    for seed, row in enumerate(rows):
        gp = (
            f", GPSampler {row['gp']:.3f} s/trial, ratio {row['metabo'] / row['gp']:.2f}"
            if "gp" in row
            else ""
        )
        print(
            f"seed {seed}: MetaBO {row['metabo']:.3f} s/trial{gp}, peak RSS {row['rss_mb']:.0f} MB"
        )
    metabo = statistics.median(r["metabo"] for r in rows)
    line = f"median over seeds: MetaBO {metabo:.3f} s/trial"
    if not args.no_gp:
        gp_median = statistics.median(r["gp"] for r in rows)
        line += f", GPSampler {gp_median:.3f}, ratio {metabo / gp_median:.2f}"
    print(line)


if __name__ == "__main__":
    main()
