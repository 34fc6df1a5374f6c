"""Tests of the issue-25 target checks on hand-made runs whose answers are known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.never_worse import issue_rows
from benchmarks.never_worse import never_worse_rows
from benchmarks.never_worse import paired_budget_table
from benchmarks.never_worse import ratio_rows


SEEDS = 8


@dataclass
class _Run:
    group: str
    target: str
    seed: int
    sampler: str
    regret: np.ndarray


def _decay(start: float, rate: float, n: int = 40) -> np.ndarray:
    """``(SEEDS, n)`` curves whose seeds differ by up to 20%."""
    noise = np.linspace(0.9, 1.1, SEEDS)[:, None]
    return start * noise * np.exp(-rate * np.arange(n))[None, :]


def _runs(**curves: np.ndarray) -> list[_Run]:
    """One run per sampler and seed; each keyword is a sampler's ``(SEEDS, trials)``."""
    return [
        _Run("p", "t", seed, name, curve)
        for name, mat in curves.items()
        for seed, curve in enumerate(mat)
    ]


def _verdicts(rows: list[tuple[str, str, str]]) -> dict[str, str]:
    return {target: verdict for target, _, verdict in rows}


def test_never_worse_met_when_ahead_everywhere() -> None:
    rows = never_worse_rows(
        _runs(metabo=_decay(0.1, 0.2), warm_tpe=_decay(0.3, 0.05)), "metabo", "warm_tpe"
    )
    assert _verdicts(rows) == {
        "n=3..40: never behind warm_tpe by > 1 SE": "met",
        "@10: ahead of warm_tpe by 2 SE": "met",
    }


def test_never_worse_finds_the_one_budget_where_it_is_behind() -> None:
    warm = _decay(0.3, 0.05)
    ours = warm * 0.5
    ours[:, 6] = warm[:, 6] * 1.5  # behind at n=7 only, on every seed
    rows = never_worse_rows(_runs(metabo=ours, warm_tpe=warm), "metabo", "warm_tpe")
    (target, figure, verdict), ahead = rows
    assert verdict == "**not met**" and figure.startswith("worst n=7: +")
    assert "behind at 1 of 38 budgets" in figure and ahead[2] == "met"


def test_a_noisy_tie_is_neither_behind_nor_ahead() -> None:
    warm = _decay(0.3, 0.05)
    ours = warm * np.where(np.arange(SEEDS) % 2 == 0, 0.7, 1.3)[:, None]
    ours += 1e-3 * np.arange(SEEDS)[:, None]  # a tiny loss, far below 1 SE
    rows = _verdicts(never_worse_rows(_runs(metabo=ours, warm_tpe=warm), "metabo", "warm_tpe"))
    assert rows["n=3..40: never behind warm_tpe by > 1 SE"] == "met"
    assert rows["@10: ahead of warm_tpe by 2 SE"] == "**not met**"
    table = paired_budget_table(_runs(metabo=ours, warm_tpe=warm), "metabo", "warm_tpe")
    assert table.splitlines()[-1] == "| verdict | tie | tie | tie | tie | tie |"


def test_ratio_limits_of_the_misleading_family() -> None:
    gp = _decay(0.5, 0.1)
    ours = gp * 1.4
    ours[:, 39] = gp[:, 39] * 1.1
    rows = ratio_rows(
        _runs(metabo=ours, gp=gp), "metabo", "gp", ((5, 1.5), (10, 1.5), (20, 1.5), (40, 1.0))
    )
    assert _verdicts(rows) == {
        "@5: at most 1.5x gp": "met",
        "@10: at most 1.5x gp": "met",
        "@20: at most 1.5x gp": "met",
        "@40: at most gp": "**not met**",
    }
    assert "(1.40x, 8 pairs)" in rows[0][1] and "(1.10x, 8 pairs)" in rows[3][1]


def test_each_problem_gets_its_own_targets() -> None:
    gp, warm = _decay(0.5, 0.1), _decay(0.3, 0.05)
    runs = _runs(metabo=gp * 0.5, gp=gp, warm_tpe=warm, metabo_before=gp * 0.5)
    oracle = {("p", "t", seed): 0.2 for seed in range(SEEDS)}
    lcbench = _verdicts(issue_rows("lcbench", "lcbench", runs, oracle))
    assert set(lcbench) == {
        "n=3..40: never behind warm_tpe by > 1 SE",
        "@10: ahead of warm_tpe by 2 SE",
        "@5: at most the best prior incumbent",
    }
    misleading = _verdicts(issue_rows("lcbench_misleading", "lcbench", runs, oracle))
    assert set(misleading) == {f"@{n}: at most 1.5x gp" for n in (5, 10, 20)} | {"@40: at most gp"}
    assert _verdicts(issue_rows("negative", "synthetic", runs, oracle)) == {
        "@40: at most 2x gp": "met"
    }
    assert issue_rows("branin", "synthetic", runs, oracle) == []
    before = _verdicts(issue_rows("branin", "synthetic", runs, oracle, before="metabo_before"))
    assert before == {
        f"@{n}: not behind metabo_before by > 1 SE": "met" for n in (3, 5, 10, 20, 40)
    }
