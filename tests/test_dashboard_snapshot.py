"""The dashboard's output, pinned: the note and every custom plot of a fixed set of studies.

A refactor of the sampler or the dashboard must leave what a user sees unchanged. The
expected output is ``tests/data/dashboard_snapshot.json``; floats are compared to four
significant digits (plot coordinates come from a fitted GP). After a deliberate change of the
output, regenerate it with ``METABO_UPDATE_SNAPSHOT=1 pytest tests/test_dashboard_snapshot.py``
and review the diff.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import optuna
import pytest

from optuna_metabo import DashboardCallback
from optuna_metabo import MetaBOSampler

from fixed_design import DesignSampler


pytest.importorskip("optuna_dashboard")
pytest.importorskip("plotly")

from optuna_dashboard import get_note  # noqa: E402
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # noqa: E402


SNAPSHOT = Path(__file__).parent / "data" / "dashboard_snapshot.json"


def _objective(shift: float, wall: bool = True) -> Any:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        n = trial.suggest_int("n", 1, 5)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if wall and kind == "b" and n == 5:
            raise RuntimeError("CUDA out of memory")
        for step in (1, 2, 3):
            trial.report((math.log10(x) + 1.5 + shift) ** 2 + 1.0 / step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return (math.log10(x) + 1.5 + shift) ** 2 + 0.1 * (n - 3) ** 2 + (kind == "b") * 0.3

    return objective


def _two_objectives(shift: float) -> Any:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        return (x - shift) ** 2, (1.0 - x) ** 2

    return objective


def _outputs(study: optuna.Study) -> dict[str, Any]:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    plots = {k: json.loads(v) for k, v in get_plotly_graph_objects(attrs).items()}
    return {"note": get_note(study), "plots": plots}


def _studies() -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    for i, shift in enumerate((0.2, -0.3)):
        prior = optuna.create_study(
            storage=storage,
            study_name=f"prior-{i}",
            sampler=DesignSampler(seed=i),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
        )
        prior.optimize(_objective(shift), n_trials=12, catch=(RuntimeError,))
        plain = optuna.create_study(
            storage=storage, study_name=f"plain-{i}", sampler=DesignSampler(seed=i)
        )
        plain.optimize(_objective(shift, wall=False), n_trials=12)
        front = optuna.create_study(
            storage=storage,
            study_name=f"front-{i}",
            directions=["minimize", "minimize"],
            sampler=DesignSampler(seed=i),
        )
        front.set_metric_names(["a", "b"])
        front.optimize(_two_objectives(0.3 + 0.1 * i), n_trials=10)
    single = optuna.create_study(
        storage=storage,
        study_name="target",
        sampler=MetaBOSampler(["prior-*"], prior_storage=storage, seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    single.optimize(_objective(0.0), n_trials=7, callbacks=[callback], catch=(RuntimeError,))
    plain = optuna.create_study(
        storage=storage,
        study_name="target-plain",
        direction="maximize",
        sampler=MetaBOSampler(["plain-*"], prior_storage=storage, seed=0),
    )
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    plain.optimize(lambda t: -_objective(0.0, wall=False)(t), n_trials=7, callbacks=[callback])
    several = optuna.create_study(
        storage=storage,
        study_name="target-2",
        directions=["minimize", "minimize"],
        sampler=MetaBOSampler(["front-*"], prior_storage=storage, seed=0),
    )
    several.set_metric_names(["a", "b"])
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    several.optimize(_two_objectives(0.35), n_trials=5, callbacks=[callback])
    return {"single": _outputs(single), "plain": _outputs(plain), "several": _outputs(several)}


def _rounded(value: Any) -> Any:
    """``value`` with every float at four significant digits."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _close(value: Any, expected: Any) -> bool:
    """Equal, floats within a relative 1e-3 (rounding to four digits can flip the last one)."""
    if isinstance(expected, float) and isinstance(value, (int, float)):
        return math.isclose(value, expected, rel_tol=1e-3, abs_tol=1e-12)
    if isinstance(expected, dict) and isinstance(value, dict):
        return value.keys() == expected.keys() and all(
            _close(value[k], expected[k]) for k in value
        )
    if isinstance(expected, list) and isinstance(value, list):
        return len(value) == len(expected) and all(map(_close, value, expected))
    return bool(value == expected)


@pytest.mark.slow
def test_the_dashboard_output_is_unchanged() -> None:
    outputs = _rounded(_studies())
    if os.environ.get("METABO_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for study in ("single", "plain", "several"):
        assert outputs[study]["note"] == expected[study]["note"]
        assert sorted(outputs[study]["plots"]) == sorted(expected[study]["plots"])
        for plot_id, figure in expected[study]["plots"].items():
            assert _close(outputs[study]["plots"][plot_id], figure), (study, plot_id)
