"""Tests of the few-trial target checks on hand-made runs whose answers are known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.targets import target_rows


@dataclass
class _Run:
    group: str
    target: str
    seed: int
    sampler: str
    regret: np.ndarray


def _runs(ours: np.ndarray, warm: np.ndarray, gp: np.ndarray) -> list[_Run]:
    """One run per sampler and seed; each argument is ``(seeds, trials)``."""
    runs = []
    for name, curves in (("metabo", ours), ("warm_tpe", warm), ("gp", gp)):
        runs += [_Run("p", "t", seed, name, curve) for seed, curve in enumerate(curves)]
    return runs


def _decay(start: float, rate: float, n: int = 40, seeds: int = 6) -> np.ndarray:
    noise = np.linspace(0.9, 1.1, seeds)[:, None]
    return start * noise * np.exp(-rate * np.arange(n))[None, :]


def test_targets_met_when_clearly_ahead() -> None:
    runs = _runs(_decay(0.1, 0.3), _decay(0.3, 0.05), _decay(0.5, 0.1))
    oracle = {("p", "t", seed): 0.2 for seed in range(6)}
    rows = {target: verdict for target, _, verdict in target_rows(runs, oracle)}
    assert all(verdict == "met" for verdict in rows.values()), rows
    assert set(rows) >= {
        "@3: below warm_tpe by 2 SE",
        "@5: at most the best prior incumbent",
        "reaches gp@40 within 15 trials",
        "@40: at most gp",
    }


def test_targets_not_met_when_behind_or_within_noise() -> None:
    ours = _decay(0.3, 0.05)
    ours[::2] *= 0.5  # ahead on half the seeds, behind overall: not 2 SE below
    runs = _runs(ours, _decay(0.25, 0.05), _decay(0.5, 0.2))
    oracle = {("p", "t", seed): 0.01 for seed in range(6)}
    rows = {target: (figure, verdict) for target, figure, verdict in target_rows(runs, oracle)}
    assert rows["@3: below warm_tpe by 2 SE"][1] == "**not met**"
    assert rows["@5: at most the best prior incumbent"][1] == "**not met**"
    assert rows["@40: at most gp"][1] == "**not met**"
    assert rows["reaches gp@40 within 15 trials"][0] == "not within 40"


def test_tolerance_on_the_last_trial() -> None:
    gp = _decay(0.5, 0.1)
    ours = gp * 1.05
    rows = dict((t, v) for t, _, v in target_rows(_runs(ours, gp, gp), {}, final_tolerance=1.1))
    assert rows["@40: at most 1.1x gp"] == "met"
    rows = dict((t, v) for t, _, v in target_rows(_runs(ours, gp, gp), {}))
    assert rows["@40: at most gp"] == "**not met**"
