"""optuna-dashboard output of MetaBOSampler: the transfer note and the custom plots written by
``DashboardCallback``, and the trial attributes, on SQLite, PostgreSQL and journal storages,
and served by a real dashboard server. Without the callback nothing but the trial attributes
is written."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
import json
import logging
import math
from pathlib import Path
import socket
import subprocess
import sys
import time
from typing import Any
import urllib.request
import uuid

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState
import pytest

from optuna_metabo import DashboardCallback
from optuna_metabo import MetaBOSampler
from optuna_metabo._dashboard.callback import _best
from optuna_metabo._dashboard.callback import NOTE_TITLE
from optuna_metabo._dashboard.callback import PLOT_ID_HISTORY
from optuna_metabo._dashboard.callback import PLOT_ID_PARETO
from optuna_metabo._dashboard.callback import PLOT_ID_SIMILARITY
from optuna_metabo._dashboard.callback import PLOT_ID_SLICES
from optuna_metabo._dashboard.callback import transfer_note
from optuna_metabo._dashboard.callback import Unfinished
from optuna_metabo._dashboard.pareto_plot import FRONT_NAME
from optuna_metabo._dashboard.plots import history_figure
from optuna_metabo._dashboard.plots import SOURCE_COLORS
from optuna_metabo._dashboard.plots import TEMPLATE


pytest.importorskip("optuna_dashboard")
pytest.importorskip("plotly")

from optuna_dashboard import get_note  # noqa: E402
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # noqa: E402


USER_ATTRS = (
    "metabo:predicted_mean",
    "metabo:predicted_std",
    "metabo:acquisition_value",
    "metabo:source",
)
N_TARGET_TRIALS = 5


# ------------------------------------------------------------------------------ test problem
def _objective(shift: float, scale: float) -> Any:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        n = trial.suggest_int("n", 1, 5)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        loss = (math.log10(x) + 1.5 + shift) ** 2 + 0.1 * (n - 3) ** 2 + (kind == "b") * 0.3
        return scale * (1.0 - loss)

    return objective


def _two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 1e-3, 1.0, log=True)
    return x, 1.0 - x


def _snapshot(storage: BaseStorage, names: list[str]) -> str:
    """Everything stored about some studies, to check that they were not touched."""
    out = {}
    for name in names:
        study_id = storage.get_study_id_from_name(name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        out[name] = {
            "user": storage.get_study_user_attrs(study_id),
            "system": storage.get_study_system_attrs(study_id),
            "trials": [
                (t.number, t.state.name, t.values, t.params, t.user_attrs, t.system_attrs)
                for t in trials
            ],
        }
    return json.dumps(out, sort_keys=True, default=str)


def run_target(storage: Any, suffix: str, n_trials: int = N_TARGET_TRIALS) -> dict[str, Any]:
    """Writes two usable priors and a multi-objective one, then runs the target study.

    Args:
        storage: A storage URL or object.
        suffix: Makes study names unique (shared PostgreSQL database).
        n_trials: Target trials.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    priors = [f"prior-a-{suffix}", f"prior-b-{suffix}", f"prior-other-{suffix}"]
    objectives = [_objective(0.2, 1.0), _objective(-0.3, 2.0), _two_objectives]
    for name, objective, n_objectives in zip(priors, objectives, [1, 1, 2]):
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=["minimize"] * n_objectives,
            sampler=optuna.samplers.RandomSampler(seed=1),
        )
        study.optimize(objective, n_trials=10)
    storage_obj = optuna.storages.get_storage(storage) if isinstance(storage, str) else storage
    before = _snapshot(storage_obj, priors)
    callback = DashboardCallback(every_n_trials=2, max_overhead=1.0)
    target = optuna.create_study(
        storage=storage,
        study_name=f"target-{suffix}",
        direction="maximize",
        sampler=MetaBOSampler(priors, prior_storage=storage, seed=0),
    )
    target.optimize(_objective(0.0, 1.5), n_trials=n_trials, callbacks=[callback])
    return {
        "study": target,
        "priors": priors,
        "callback": callback,
        "unchanged": before == _snapshot(storage_obj, priors),
    }


def _system_attrs(study: optuna.Study) -> dict[str, Any]:
    return study._storage.get_study_system_attrs(study._study_id)


def check_outputs(result: dict[str, Any]) -> None:
    """Asserts that the note, the plots and the trial attributes are in the target study."""
    study: optuna.Study = result["study"]
    prior_a, prior_b, other = result["priors"]
    assert result["unchanged"], "a prior study was modified"
    note = get_note(study)
    assert NOTE_TITLE in note
    assert f"| {prior_a} | 10 | 10 | 10 |" in note  # Used, with trial counts.
    assert prior_b in note.split("### Prior studies skipped")[0]
    skipped = note.split("### Prior studies skipped")[1].split("###")[0]
    assert other in skipped and "2 objective(s) and the target 1" in skipped
    similarity = note.split("### Learned task similarity")[1]
    assert "| prior study | similarity |" in similarity and prior_a in similarity
    plots = get_plotly_graph_objects(_system_attrs(study))
    assert {PLOT_ID_SIMILARITY, PLOT_ID_SLICES, PLOT_ID_HISTORY} <= set(plots)
    slices = json.loads(plots[PLOT_ID_SLICES])
    names = {t.get("name") for t in slices["data"]}
    assert {"posterior mean", "±2σ", "log EI", "observations", "proposed value"} <= names
    titles = {a["text"] for a in slices["layout"]["annotations"]}
    assert {"x", "n", "kind"} <= titles
    history = json.loads(plots[PLOT_ID_HISTORY])
    assert {"best so far", "prior_design", "predicted ±2σ"} <= {t["name"] for t in history["data"]}
    sources = [t.user_attrs["metabo:source"] for t in study.trials]
    assert sources[:3] == ["prior_design"] * 3 and set(sources) <= {"prior_design", "model"}
    for trial in study.trials:
        # Predictions in the objective's units need two target results (see Proposal.mean).
        expected = USER_ATTRS if trial.number >= 2 else USER_ATTRS[2:]
        assert set(expected) <= set(trial.user_attrs), trial.number
    assert result["callback"].n_plot_refreshes >= 2


# -------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'study.db'}"
    return {"url": url, **run_target(url, "sqlite")}


@pytest.mark.slow
def test_sqlite_note_plots_and_attributes(sqlite_run: dict[str, Any]) -> None:
    check_outputs(sqlite_run)


@pytest.mark.slow
def test_journal_note_plots_and_attributes(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    check_outputs(run_target(storage, "journal"))


@pytest.mark.slow
@pytest.mark.services
def test_postgres_note_plots_and_attributes(postgres_url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    try:
        check_outputs(run_target(postgres_url, suffix, n_trials=4))
    finally:
        for name in optuna.get_all_study_names(postgres_url):
            if name.endswith(suffix):
                optuna.delete_study(study_name=name, storage=postgres_url)


# ---------------------------------------------------------------------------- real server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def dashboard(sqlite_run: dict[str, Any]) -> Iterator[str]:
    """An optuna-dashboard server on loopback over the SQLite storage; yields its base URL."""
    port = _free_port()
    code = "import sys; from optuna_dashboard._cli import main; sys.exit(main())"
    command = [sys.executable, "-c", code, sqlite_run["url"], "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/meta")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    stderr = server.stderr.read().decode() if server.stderr else ""
                    pytest.fail(f"optuna-dashboard did not start: {stderr[-2000:]}")
                time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_dashboard_server_serves_note_plots_and_attributes(
    dashboard: str, sqlite_run: dict[str, Any]
) -> None:
    summaries = _get(f"{dashboard}/api/studies")["study_summaries"]
    ids = {s["study_name"]: s["study_id"] for s in summaries}
    detail = _get(f"{dashboard}/api/studies/{ids['target-sqlite']}")
    assert NOTE_TITLE in detail["note"]["body"]
    assert "prior-other-sqlite" in detail["note"]["body"]
    plots = {p["id"]: json.loads(p["graph_object"]) for p in detail["plotly_graph_objects"]}
    assert {PLOT_ID_SIMILARITY, PLOT_ID_SLICES, PLOT_ID_HISTORY} <= set(plots)
    bars = plots[PLOT_ID_SIMILARITY]["data"][0]
    assert set(bars["y"]) == {"prior-a-sqlite", "prior-b-sqlite"}
    assert all(-1 <= v <= 1 for v in bars["x"])
    assert len(detail["trials"]) == N_TARGET_TRIALS
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert set(USER_ATTRS if trial["number"] >= 2 else USER_ATTRS[2:]) <= set(attrs)
        assert attrs["metabo:source"] in ("prior_design", "model", "target_model")
    # The dashboard shows the prior studies untouched: no note, no plots.
    prior = _get(f"{dashboard}/api/studies/{ids['prior-a-sqlite']}")
    assert prior["note"]["body"] == "" and prior["plotly_graph_objects"] == []


# ------------------------------------------------------------------------------ unit tests
def test_note_lists_used_skipped_and_similarity() -> None:
    summary = {
        "used": [
            {"study_name": "p|1", "n_trials_used": 5, "n_trials_usable": 7, "n_trials_total": 9}
        ],
        "skipped": [{"study_name": "q", "reason": "it is multi-objective (2 objectives)"}],
        "task_similarity": {"p|1": 0.8123},
    }
    note = transfer_note(summary, 4, 5, {"model": 3, "prior_design": 1}, None)
    assert "| p\\|1 | 5 | 7 | 9 | 0.812 |" in note
    assert "- **q**: it is multi-objective (2 objectives)" in note
    assert "| p\\|1 | 0.812 |" in note
    assert "model: 3, prior_design: 1" in note
    empty = transfer_note({"used": [], "skipped": [], "task_similarity": {}}, 0, 0, {}, None)
    assert "plain GP sampler" in empty and "Not learned yet." in empty


@pytest.mark.slow
def test_callback_throttles_refreshes(sqlite_run: dict[str, Any]) -> None:
    # every_n_trials=2 over 5 trials: after the first trial, then after 3 and 5 completed.
    callback = sqlite_run["callback"]
    assert callback.n_plot_refreshes == 3
    assert callback.seconds_spent > 0


@pytest.mark.slow
def test_the_sampler_alone_writes_no_note_and_no_plots(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    prior = optuna.create_study(storage=url, study_name="prior")
    prior.optimize(_objective(0.2, 1.0), n_trials=6)
    study = optuna.create_study(
        storage=url, study_name="target", sampler=MetaBOSampler(["prior"], prior_storage=url)
    )
    study.optimize(_objective(0.0, 1.0), n_trials=3)
    assert _system_attrs(study) == {} and get_note(study) == ""
    assert all(set(USER_ATTRS) <= set(t.user_attrs) for t in study.trials[2:])


@pytest.mark.slow
def test_callback_after_ask_and_tell() -> None:
    prior = optuna.create_study(study_name="prior")
    prior.optimize(_objective(0.2, 1.0), n_trials=6)
    study = optuna.create_study(sampler=MetaBOSampler([prior], seed=0))
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    for _ in range(2):
        trial = study.ask()
        frozen = study.tell(trial, _objective(0.0, 1.0)(trial))
        callback(study, frozen)
    assert callback.n_plot_refreshes == 2
    assert "| prior | 6 | 6 | 6 |" in get_note(study)
    plots = get_plotly_graph_objects(_system_attrs(study))
    assert {PLOT_ID_SIMILARITY, PLOT_ID_SLICES, PLOT_ID_HISTORY} <= set(plots)


def test_callback_without_optuna_dashboard_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import raises ImportError
    callback = DashboardCallback()
    study = optuna.create_study(sampler=MetaBOSampler())
    callback(study, None)  # type: ignore[arg-type]
    assert not callback.enabled and _system_attrs(study) == {}


def test_callback_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A broken study, then a study of another sampler: one warning, nothing written."""
    callback = DashboardCallback()
    tpe = optuna.create_study()
    with caplog.at_level(logging.WARNING):
        for study in (object(), object(), tpe):
            callback(study, None)  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if "optuna-dashboard" in r.getMessage()]
    assert len(warnings) == 1
    assert _system_attrs(tpe) == {}


def test_callback_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="every_n_trials"):
        DashboardCallback(every_n_trials=0)
    with pytest.raises(ValueError, match="max_overhead"):
        DashboardCallback(max_overhead=0.0)


def test_slices_cover_every_parameter_kind() -> None:
    from optuna.distributions import CategoricalDistribution
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution

    from optuna_metabo._core.search_space import SearchSpace
    from optuna_metabo._dashboard.plots import _slice_rows

    space = SearchSpace(
        {
            "a": FloatDistribution(1e-3, 1.0, log=True),
            "b": IntDistribution(1, 4),
            "c": CategoricalDistribution(["u", "v", "w"]),
        }
    )
    columns = {name: space.columns_of(name) for name in space.distributions}
    assert [list(v) for v in columns.values()] == [[0], [1], [2, 3, 4]]
    center = space.encode({"a": 0.1, "b": 2, "c": "v"})
    assert center is not None
    rows, xs = _slice_rows(space, center, "b", columns["b"])
    assert xs == [1, 2, 3, 4] and np.allclose(rows[:, 0], center[0])
    rows, xs = _slice_rows(space, center, "c", columns["c"])
    assert xs == ["u", "v", "w"] and np.allclose(rows[:, 2:], np.eye(3))
    rows, xs = _slice_rows(space, center, "a", columns["a"])
    assert len(xs) == 50 and xs[0] == pytest.approx(1e-3) and xs[-1] == pytest.approx(1.0)


class _RejectingStudyWrites(optuna.storages.InMemoryStorage):
    """A storage that refuses every study-level write after creation (as a read-only or
    overloaded database would): the dashboard's note and plots cannot be stored."""

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        raise optuna.exceptions.StorageInternalError("writes to the study are rejected")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        raise optuna.exceptions.StorageInternalError("writes to the study are rejected")


def test_rejected_dashboard_writes_fail_no_trial(caplog: pytest.LogCaptureFixture) -> None:
    storage = _RejectingStudyWrites()
    prior = optuna.create_study(storage=storage, study_name="prior")
    prior.optimize(_objective(0.0, 1.0), n_trials=10)
    sampler = MetaBOSampler(["prior"], prior_storage=storage, seed=0)
    study = optuna.create_study(storage=storage, study_name="target", sampler=sampler)
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    with caplog.at_level(logging.WARNING):
        study.optimize(_objective(0.1, 1.0), n_trials=6, callbacks=[callback])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    warnings = [r.getMessage() for r in caplog.records if "optuna-dashboard" in r.getMessage()]
    assert len(warnings) == 1 and "rejected" in warnings[0]


# ------------------------------------------------------------------ multi-objective targets
def _mo_objective(shift: float, n_objectives: int = 2, infeasible: Sequence[int] = ()) -> Any:
    """A front along ``x``; with ``infeasible``, constraint ``c`` is violated by those trials."""

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        x = trial.suggest_float("x", 0.0, 1.0)
        penalty = 2.0 * (trial.suggest_float("z", 0.0, 1.0) - 0.7) ** 2
        if infeasible:
            trial.set_constraint("c", 1.0 if trial.number in infeasible else -1.0)
        values = ((x - shift) ** 2, (x - 1.0 + shift) ** 2, (x - 0.5) ** 2)
        return tuple(v + penalty for v in values[:n_objectives])

    return objective


def run_mo_target(
    n_objectives: int,
    names: Sequence[str] | None,
    infeasible: Sequence[int] = (),
    n_trials: int = 4,
) -> optuna.Study:
    """Two matching priors and one whose metric names differ, then the target with the callback.

    Args:
        n_objectives: Objectives of every study.
        names: Metric names of the target and the matching priors, or None.
        infeasible: Target trials that violate constraint ``c`` (no constraint if empty).
        n_trials: Target trials.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    for name, metric_names, shift in [
        ("prior-a", names, 0.1),
        ("prior-b", names, 0.2),
        ("prior-other", [f"other{i}" for i in range(n_objectives)], 0.1),
    ]:
        prior = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=["minimize"] * n_objectives,
            sampler=optuna.samplers.RandomSampler(seed=1),
        )
        if metric_names is not None:
            prior.set_metric_names(list(metric_names))
        prior.optimize(_mo_objective(shift, n_objectives), n_trials=10)
    sampler = MetaBOSampler(prior_storage=storage, seed=0, n_prior_design_trials=2)
    study = optuna.create_study(
        storage=storage, directions=["minimize"] * n_objectives, sampler=sampler
    )
    if names is not None:
        study.set_metric_names(list(names))
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    study.optimize(_mo_objective(0.15, n_objectives, infeasible), n_trials, callbacks=[callback])
    assert callback.n_plot_refreshes == n_trials  # The plots show every trial.
    return study


def _pareto_traces(study: optuna.Study) -> dict[str, dict[str, Any]]:
    plots = get_plotly_graph_objects(_system_attrs(study))
    assert PLOT_ID_SIMILARITY in plots and PLOT_ID_PARETO in plots
    assert not {PLOT_ID_SLICES, PLOT_ID_HISTORY} & set(plots)  # Single-objective plots.
    figure = json.loads(plots[PLOT_ID_PARETO])
    traces = {t["name"]: t for t in figure["data"]}
    assert len(traces) == len(figure["data"])
    return {**traces, "layout": figure["layout"]}


def _trial_numbers(trace: dict[str, Any]) -> list[int]:
    return [int(text.split("#")[1].split(" ")[0]) for text in trace["text"]]


@pytest.mark.slow
def test_pareto_plot_and_note_of_a_two_objective_target() -> None:
    study = run_mo_target(2, ["a", "b"])
    traces = _pareto_traces(study)
    names = list(traces)
    fronts = study.sampler.prior_fronts(study)
    assert set(fronts) == {"prior-a", "prior-b"}
    for prior in ("prior-a", "prior-b"):  # Faded, behind the target's trials.
        trace = traces[f"{prior} (prior front)"]
        assert trace["opacity"] < 0.5 and trace["mode"] == "lines+markers"
        assert len(trace["x"]) == len(fronts[prior])
        assert names.index(f"{prior} (prior front)") < names.index("prior_design")
    assert not any("prior-other" in n for n in names)
    sources = [t.user_attrs["metabo:source"] for t in study.trials]
    assert sources[:2] == ["prior_design"] * 2 and set(sources[2:]) <= {"model", "target_model"}
    for source in set(sources):
        trace = traces[source]
        assert trace["marker"]["color"] == SOURCE_COLORS[source]
        assert _trial_numbers(trace) == [i for i, s in enumerate(sources) if s == source]
    front = traces[FRONT_NAME]
    values = np.array([t.values for t in study.trials])
    expected = [t.number for t in study.trials if not _dominated(values, t.number)]
    assert sorted(_trial_numbers(front)) == expected and front["mode"] == "lines+markers"
    assert "infeasible" not in traces
    layout = traces["layout"]
    assert layout["xaxis"]["title"]["text"] == "a (minimize)"
    assert layout["yaxis"]["title"]["text"] == "b (minimize)"
    # The per-objective predictions are recorded; the single-objective keys are not.
    attrs = study.trials[-1].user_attrs
    assert {"metabo:predicted_mean:a", "metabo:predicted_std:b"} <= set(attrs)
    assert "metabo:predicted_mean" not in attrs
    note = get_note(study)
    assert f"{len(expected)} on the Pareto front" in note and "best value" not in note
    assert "Target objectives: `a`, `b`; constraints: none." in note
    assert "- **prior-a**: a <- a, b <- b (by name)" in note
    assert "- **prior-b**: a <- a, b <- b (by name)" in note
    skipped = note.split("### Prior studies skipped")[1].split("###")[0]
    assert "**prior-other**: none of its metrics (other0, other1) matches the target's" in skipped
    assert "*Pareto front*" in note and "*Slices" not in note


def _dominated(values: np.ndarray, i: int) -> bool:
    """Whether another row of ``values`` (minimized) dominates row ``i``."""
    others = np.delete(values, i, axis=0)
    return bool(((others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)).any())


@pytest.mark.slow
def test_pareto_plot_marks_infeasible_trials() -> None:
    study = run_mo_target(2, ["a", "b"], infeasible=(1, 3))
    traces = _pareto_traces(study)
    infeasible = traces["infeasible"]
    assert _trial_numbers(infeasible) == [1, 3] and infeasible["marker"]["symbol"] == "x"
    sources = [t.user_attrs["metabo:source"] for t in study.trials]
    assert infeasible["marker"]["color"] == [SOURCE_COLORS[sources[1]], SOURCE_COLORS[sources[3]]]
    by_source = [n for s in set(sources) if s in traces for n in _trial_numbers(traces[s])]
    assert sorted(by_source) == [0, 2]  # Feasible trials only.
    assert set(_trial_numbers(traces[FRONT_NAME])) <= {0, 2}
    note = get_note(study)
    assert "with 4 completed trials (2 feasible)" in note
    assert "Target objectives: `a`, `b`; constraints: `c`." in note
    assert "*Pareto front*" in note


@pytest.mark.slow
def test_three_objective_target_plots_the_first_two(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        study = run_mo_target(3, None, n_trials=3)
    assert not [r for r in caplog.records if "optuna-dashboard" in r.getMessage()]
    assert study.trials[-1].user_attrs["metabo:source"] in ("model", "target_model")
    traces = _pareto_traces(study)
    layout = traces["layout"]
    assert layout["xaxis"]["title"]["text"] == "objective 0 (minimize)"
    assert layout["yaxis"]["title"]["text"] == "objective 1 (minimize)"
    assert "of 3 objectives" in layout["title"]["text"]
    assert traces[FRONT_NAME]["mode"] == "markers"  # Not connected in a projection.
    assert "<br>objective 2: " in traces[FRONT_NAME]["text"][0]
    assert traces["prior-a (prior front)"]["mode"] == "markers"
    assert "- **prior-a**: 0 <- 0, 1 <- 1, 2 <- 2 (by position)" in get_note(study)


def test_note_of_a_multi_objective_summary_lists_the_matching() -> None:
    summary = {
        "used": [
            {
                "study_name": "p",
                "n_trials_used": 5,
                "n_trials_usable": 5,
                "n_trials_total": 5,
                "outputs": "acc <- acc, time <- time, constraint 0 (by name)",
            }
        ],
        "skipped": [{"study_name": "q", "reason": "none of its metrics (loss) matches"}],
        "task_similarity": {"p": 0.5},
        "objectives": ["acc", "time"],
        "constraints": ["0"],
    }
    front = [optuna.trial.create_trial(values=v) for v in ([0.9, 3.0], [1.0, 2.0])]
    front[0].number, front[1].number = 0, 7
    note = transfer_note(summary, 9, 8, {"model": 9}, None, front, n_feasible=6)
    assert "with 9 completed trials (6 feasible); 2 on the Pareto front (#0, #7)." in note
    assert "Target objectives: `acc`, `time`; constraints: `0`." in note
    assert "- **p**: acc <- acc, time <- time, constraint 0 (by name)" in note
    assert "- **q**: none of its metrics (loss) matches" in note
    assert "*Pareto front*" in note and "*Target history*" not in note


def test_history_of_a_constrained_target_marks_infeasible_trials() -> None:
    study = optuna.create_study(direction="maximize")
    for value, violation in [(1.0, -1.0), (5.0, 2.0), (2.0, 0.0)]:
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                user_attrs={"metabo:source": "model"},
                system_attrs={"constraints:c": violation},
            )
        )
    figure = history_figure(study)
    traces = {t.name: t for t in figure.data}
    assert list(traces["infeasible"].y) == [5.0] and traces["infeasible"].marker.symbol == "x"
    assert list(traces["model"].x) == [0, 2]
    assert list(traces["best so far"].y) == [1.0, 2.0]  # The infeasible 5.0 does not count.
    completed = study.get_trials()
    assert _best(completed, study.direction) is completed[2]
    note = transfer_note({}, 3, 2, {}, completed[2], n_feasible=2)
    assert "(2 feasible); best value so far 2 (trial #2)" in note
    assert "Crosses: trials that violate a constraint" in note and "*Slices" not in note


# ------------------------------------------------------------------ pruned and failed trials
def _clean_study() -> optuna.Study:
    """Three completed trials with predictions, and nothing pruned or failed."""
    study = optuna.create_study(direction="maximize")
    for value, source, mean in [
        (1.0, "prior_design", None),
        (3.0, "model", 2.5),
        (2.0, "model", 3.25),
    ]:
        attrs: dict[str, Any] = {"metabo:source": source}
        if mean is not None:
            attrs |= {"metabo:predicted_mean": mean, "metabo:predicted_std": 0.5}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    return study


_CLEAN_SUMMARY: dict[str, Any] = {
    "used": [
        {
            "study_name": "p",
            "n_trials_used": 5,
            "n_trials_usable": 7,
            "n_trials_total": 9,
            "n_pruned_used": 0,
            "n_failed_used": 0,
        }
    ],
    "skipped": [],
    "task_similarity": {"p": 0.75},
    "target_unfinished_used": 0,
}
# Written by the code before pruned and failed trials were shown (commit 549fd79).
_CLEAN_NOTE = (
    "## MetaBOSampler: transfer from prior studies\n\n"
    "Refreshed after trial #2, with 3 completed trials; best value so far 3 (trial #1).\n\n"
    "Finished trials by `metabo:source`: model: 2, prior_design: 1.\n\n"
    "### Prior studies used (1)\n\n"
    "| study | trials in the model | usable trials | all trials | similarity |\n"
    "|---|---:|---:|---:|---:|\n"
    "| p | 5 | 7 | 9 | 0.75 |\n\n"
    "### Prior studies skipped (0)\n\nNone.\n\n"
    "### Learned task similarity\n\n"
    "Correlation between each prior task and the target learned by the multi-task GP (1: same "
    "landscape, 0: unrelated, below 0: opposite).\n\n"
    "| prior study | similarity |\n|---|---:|\n| p | 0.75 |\n\n"
    "### Plots\n\n"
    "- *Task similarity*: the table above as bars, and how it changed over trials.\n"
    "- *Slices through the incumbent*: for the latest proposal, the posterior mean ±2σ and the "
    "log expected improvement (floored 30 below its maximum) along each parameter, others fixed "
    "at the best trial.\n"
    "- *Target history*: observed values by source, the best so far and the model's prediction "
    "±2σ; early `prior_design` trials near the final best mean the priors helped.\n"
)
_CLEAN_HISTORY: dict[str, Any] = {
    "data": [
        {
            "error_y": {"array": [1.0, 1.0], "color": "#aaaaaa", "type": "data"},
            "marker": {"color": "#aaaaaa", "size": 8, "symbol": "circle-open"},
            "mode": "markers",
            "name": "predicted ±2σ",
            "x": [1, 2],
            "y": [2.5, 3.25],
            "type": "scatter",
        },
        {
            "line": {"color": "black", "shape": "hv"},
            "mode": "lines",
            "name": "best so far",
            "x": [0, 1, 2],
            "y": [1.0, 3.0, 3.0],
            "type": "scatter",
        },
        {
            "marker": {"color": "#ff7f0e", "size": 9},
            "mode": "markers",
            "name": "prior_design",
            "x": [0],
            "y": [1.0],
            "type": "scatter",
        },
        {
            "marker": {"color": "#1f77b4", "size": 9},
            "mode": "markers",
            "name": "model",
            "x": [1, 2],
            "y": [3.0, 2.0],
            "type": "scatter",
        },
    ],
    "layout": {
        "template": TEMPLATE,
        "title": {
            "font": {"size": 13},
            "text": "Target history by source, best so far, predicted ±2σ",
        },
        "margin": {"l": 50, "r": 15, "t": 50, "b": 40},
        "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.18},
        "xaxis": {"title": {"text": "trial"}},
        "yaxis": {"title": {"text": "objective (maximize)"}},
    },
}


def test_a_study_without_pruned_or_failed_trials_looks_as_before() -> None:
    study = _clean_study()
    finished = study.get_trials()
    sources = {"model": 2, "prior_design": 1}
    note = transfer_note(
        _CLEAN_SUMMARY, 3, 2, sources, finished[1], unfinished=Unfinished.of(finished)
    )
    assert note == _CLEAN_NOTE
    assert json.loads(history_figure(study).to_json()) == _CLEAN_HISTORY


def _add_unfinished(study: optuna.Study) -> None:
    """Two pruned trials (one before its first report) and two failed ones, after the others."""
    pruned = [{0: 0.9, 3: 0.42, 2: 0.5}, {}]
    for i, curve in enumerate(pruned):
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED,
                intermediate_values=curve,
                user_attrs={"metabo:source": "model", "metabo:failure_probability": 0.1 * i},
            )
        )
    for probability in (0.5, None):
        attrs: dict[str, Any] = {"metabo:source": "model"}
        if probability is not None:
            attrs["metabo:failure_probability"] = probability
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs))


def test_history_shows_pruned_and_failed_trials_as_a_rug() -> None:
    study = _clean_study()
    _add_unfinished(study)
    figure = json.loads(history_figure(study).to_json())
    n_clean = len(_CLEAN_HISTORY["data"])
    assert figure["data"][:n_clean] == _CLEAN_HISTORY["data"]  # Completed trials as before.
    pruned, failed = figure["data"][n_clean:]
    assert pruned["name"] == "pruned (2)" and pruned["x"] == [3, 4]
    assert pruned["text"] == [
        "trial #3 pruned at step 3: 0.42 (model)",  # The last step, whatever the order.
        "trial #4 pruned before its first report (model)",
    ]
    assert failed["name"] == "failed (2)" and failed["x"] == [5, 6]
    assert failed["text"] == ["trial #5 failed (model)", "trial #6 failed (model)"]
    assert pruned["marker"]["symbol"] != failed["marker"]["symbol"]
    # Not on the objective's axis: a hidden [0, 1] axis, along its bottom edge.
    for trace in (pruned, failed):
        assert trace["yaxis"] == "y2" and len(set(trace["y"])) == 1 and trace["y"][0] < 0.1
    axis = figure["layout"]["yaxis2"]
    assert axis["overlaying"] == "y" and axis["range"] == [0, 1] and not axis["visible"]


def test_note_counts_pruned_failed_and_steered_trials() -> None:
    study = _clean_study()
    _add_unfinished(study)
    finished = study.get_trials()
    summary = {
        **_CLEAN_SUMMARY,
        "used": [
            {**_CLEAN_SUMMARY["used"][0], "n_pruned_used": 4, "n_failed_used": 1},
            {**_CLEAN_SUMMARY["used"][0], "study_name": "q"},
        ],
        "target_unfinished_used": 3,
    }
    unfinished = Unfinished.of(finished)
    assert unfinished == Unfinished(2, 2, (0.0, 0.1, 0.5), 1)
    sources = {"model": 6, "prior_design": 1}
    note = transfer_note(summary, 3, 6, sources, finished[1], unfinished=unfinished)
    section = note.split("### Pruned and failed trials\n\n")[1].split("###")[0]
    assert section.splitlines() == [
        "- Target: 2 pruned, 2 failed; the model used 3 of them at the latest trial, as "
        "pseudo-observations of the value they did not reach.",
        "- Prior studies: the model was given 4 of their pruned trials and 1 of their failed "
        "ones (by study in the table below).",
        "- The failure model steered 3 trials (those with `metabo:failure_probability`), with "
        "a mean predicted failure probability of 0.2; 1 of them failed.",
        "",
    ]
    assert "| similarity | pruned used | failed used |" in note
    assert "| p | 5 | 7 | 9 | 0.75 | 4 | 1 |" in note and "| q | 5 | 7 | 9 | – | 0 | 0 |" in note
    plots = note.split("### Plots")[1]
    assert "pruned (triangles) and failed (diamonds)" in plots
    assert "*Slices" not in plots  # The failure model's GP has no single posterior to slice.
    # Only a prior's pruned trials: the section and the columns, no rug and no steering.
    only_prior = transfer_note(summary, 3, 2, {}, None, unfinished=Unfinished())
    assert "- Target: 0 pruned, 0 failed" in only_prior and "steered" not in only_prior
    assert "pruned used" in only_prior and "(triangles)" not in only_prior


def _curve_objective(
    shift: float, raising: Sequence[int] = (), diverging: Sequence[int] = ()
) -> Any:
    """An accuracy reported over three epochs; ``x > 0.9`` runs out of memory (a failure
    wall), and so do the trials numbered in ``raising``; those in ``diverging`` return NaN."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        if x > 0.9 or trial.number in raising:
            raise RuntimeError("out of memory")
        if trial.number in diverging:
            return math.nan
        accuracy = 1.0 - (x - 0.3 - shift) ** 2 - (y - 0.5) ** 2
        for epoch in range(1, 4):
            trial.report(accuracy * epoch / 3, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    return objective


@pytest.mark.slow
def test_callback_shows_pruned_and_failed_trials_and_the_failure_model() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.InMemoryStorage()
    prior = optuna.create_study(
        storage=storage,
        study_name="prior",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    prior.optimize(_curve_objective(0.1), n_trials=12, catch=(RuntimeError,))
    sampler = MetaBOSampler(["prior"], prior_storage=storage, seed=0, n_prior_design_trials=2)
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    callback = DashboardCallback(every_n_trials=1, max_overhead=1.0)
    objective = _curve_objective(0.0, raising=[3], diverging=[4])
    study.optimize(objective, n_trials=5, catch=(RuntimeError,), callbacks=[callback])
    study.enqueue_trial({"x": 0.0, "y": 0.0})  # Far below the median at the first epoch.
    study.optimize(objective, n_trials=2, catch=(RuntimeError,), callbacks=[callback])
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert 5 in [t.number for t in pruned]
    assert [t.number for t in study.trials if t.state == TrialState.FAIL] == [3, 4]

    plots = get_plotly_graph_objects(_system_attrs(study))
    traces = {t["name"]: t for t in json.loads(plots[PLOT_ID_HISTORY])["data"]}
    rug = traces[f"pruned ({len(pruned)})"]
    assert rug["x"] == [t.number for t in pruned]
    for text, trial in zip(rug["text"], pruned):
        step = max(trial.intermediate_values)
        assert f"pruned at step {step}: {trial.intermediate_values[step]:.4g}" in text
    assert traces["failed (2)"]["x"] == [3, 4]
    completed = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert traces["best so far"]["x"] == completed

    summary = sampler.prior_summary()
    used = summary["used"][0]
    assert used["n_pruned_used"] > 0 and used["n_failed_used"] > 0
    steered = [t for t in study.trials if "metabo:failure_probability" in t.user_attrs]
    assert {3, 4} <= {t.number for t in steered}  # The failure model chose the failed trials.
    mean = np.mean([t.user_attrs["metabo:failure_probability"] for t in steered])
    note = get_note(study)
    assert (
        f"- Target: {len(pruned)} pruned, 2 failed; the model used "
        f"{summary['target_unfinished_used']} of them at the latest trial"
    ) in note
    assert f"| {used['n_pruned_used']} | {used['n_failed_used']} |\n" in note
    assert (
        f"- The failure model steered {len(steered)} trials (those with "
        f"`metabo:failure_probability`), with a mean predicted failure probability of "
        f"{mean:.3g}; 2 of them failed."
    ) in note
