"""Figures for optuna-dashboard: task similarity, slices through the incumbent, history.

The Pareto-front figure of a multi-objective target is in ``_dashboard.pareto_plot``.

Plotly is imported lazily by the callers in ``_dashboard``; nothing here writes to storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_metabo._vocabulary import SOURCE_FALLBACK
from optuna_metabo._vocabulary import SOURCE_INDEPENDENT
from optuna_metabo._vocabulary import SOURCE_MODEL
from optuna_metabo._vocabulary import SOURCE_PRIOR_DESIGN
from optuna_metabo._vocabulary import SOURCE_STARTUP
from optuna_metabo._vocabulary import SOURCE_TARGET_MODEL
from optuna_metabo._vocabulary import SOURCES
from optuna_metabo._vocabulary import trial_constraints
from optuna_metabo._vocabulary import USER_ATTR_PREDICTED_MEAN
from optuna_metabo._vocabulary import USER_ATTR_PREDICTED_STD
from optuna_metabo._vocabulary import USER_ATTR_SOURCE


if TYPE_CHECKING:
    from optuna.study import Study

    from optuna_metabo._last_proposal import LastProposal
    from optuna_metabo._last_proposal import SpaceView


MAX_SLICE_PARAMS = 8
SLICE_PARAMS_PER_FIGURE = 4
SLICE_POINTS = 50
_LOG_EI_RANGE = 30.0
SOURCE_COLORS = {
    SOURCE_PRIOR_DESIGN: "#ff7f0e",
    SOURCE_MODEL: "#1f77b4",
    SOURCE_TARGET_MODEL: "#17becf",
    SOURCE_STARTUP: "#7f7f7f",
    SOURCE_INDEPENDENT: "#9467bd",
    SOURCE_FALLBACK: "#d62728",
}
_UNKNOWN_COLOR = "#17becf"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# The history's rug of pruned and failed trials: (symbol, colour), on a hidden axis in [0, 1].
PRUNED_MARKER = ("triangle-up", "#7f7f7f")
FAILED_MARKER = ("diamond", "#d62728")
_RUG_HEIGHT = 0.03
_RUG_AXIS = {"overlaying": "y", "range": [0.0, 1.0], "visible": False, "fixedrange": True}
# A small explicit template: plotly's named templates add ~6 kB of JSON to every figure and cost
# a deep copy on each build.
_GRID = {"gridcolor": "#ebf0f8", "zerolinecolor": "#d0d7e2", "linecolor": "#d0d7e2"}
TEMPLATE: dict[str, Any] = {
    "layout": {
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "colorway": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"],
        "xaxis": _GRID,
        "yaxis": _GRID,
    }
}


def sign_of(direction: StudyDirection) -> float:
    """``1`` for minimization, ``-1`` for maximization: ``sign * value`` is lower-is-better."""
    return 1.0 if direction == StudyDirection.MINIMIZE else -1.0


def rounded(values: Any, digits: int = 5) -> list[float | None]:
    """Rounds to significant digits and maps non-finite values to None (smaller JSON)."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=float).reshape(-1):
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


# -------------------------------------------------------------------------------- the model
# -------------------------------------------------------------------------------- the plots
def _slice_rows(
    space: SpaceView, center: np.ndarray, name: str, columns: np.ndarray
) -> tuple[np.ndarray, list[Any]]:
    """Rows that vary one parameter with the others at ``center``, and their values."""
    dist = space.distributions[name]
    if isinstance(dist, CategoricalDistribution):
        rows = np.tile(center, (len(columns), 1))
        rows[:, columns] = np.eye(len(columns))
        return rows, [str(c) for c in dist.choices]
    rows = np.tile(center, (SLICE_POINTS, 1))
    rows[:, columns[0]] = np.linspace(0.0, 1.0, SLICE_POINTS)
    rows = space.snap(rows)
    _, first = np.unique(np.round(rows[:, columns[0]], 12), return_index=True)
    rows = rows[np.sort(first)]
    return rows, [space.decode(row)[name] for row in rows]


def slice_figures(last: LastProposal, completed: Sequence[FrozenTrial]) -> list[Any]:
    """One slice per parameter through the incumbent: observations, posterior mean ±2σ, log EI.

    The dashboard shows each custom plot in a half-width card 450 px high, so the slices come
    as figures of at most ``SLICE_PARAMS_PER_FIGURE`` parameters, for the first
    ``MAX_SLICE_PARAMS`` parameters.

    Args:
        last: The sampler's latest proposal (``MetaBOSampler.last_proposal()``), with a
            posterior.
        completed: Completed target trials with finite values.
    """
    space, proposed_x, trial_number = last.space, last.x, last.trial_number
    sign = last.sign
    encoded: list[tuple[FrozenTrial, np.ndarray]] = []
    for t in completed:
        row = space.encode({**space.fixed_values, **t.params})
        if row is not None:  # a branch the trial did not take sits mid-range in the slice
            encoded.append((t, np.nan_to_num(row, nan=0.5)))
    center: np.ndarray
    if encoded:
        incumbent, center = min(encoded, key=lambda tr: sign * float(tr[0].values[0]))
        center_label = f"best trial #{incumbent.number}"
    else:
        center, center_label = np.asarray(proposed_x, dtype=float), f"trial #{trial_number}"
    names = list(space.distributions)[:MAX_SLICE_PARAMS]
    blocks = [(n, *_slice_rows(space, center, n, space.columns_of(n))) for n in names]
    mean, std, acq = last.predict(np.concatenate([rows for _, rows, _ in blocks]))
    proposed = space.decode(np.asarray(proposed_x, dtype=float))
    figures, offset = [], 0
    chunks = [
        blocks[i : i + SLICE_PARAMS_PER_FIGURE]
        for i in range(0, len(blocks), SLICE_PARAMS_PER_FIGURE)
    ]
    for k, chunk in enumerate(chunks):
        size = sum(len(rows) for _, rows, _ in chunk)
        part = slice(offset, offset + size)
        offset += size
        title = f"Trial #{trial_number}: slices through {center_label}"
        if len(chunks) > 1:
            title += f" ({k + 1}/{len(chunks)})"
        figures.append(
            _slice_chunk(
                chunk, space, mean[part], std[part], acq[part], completed, proposed, title
            )
        )
    return figures


def _slice_chunk(
    blocks: list[tuple[str, np.ndarray, list[Any]]],
    space: SpaceView,
    mean: np.ndarray,
    std: np.ndarray,
    acq: np.ndarray,
    completed: Sequence[FrozenTrial],
    proposed: Mapping[str, Any],
    title: str,
) -> Any:
    from plotly.subplots import make_subplots

    n_cols = min(len(blocks), 2)
    n_block_rows = math.ceil(len(blocks) / n_cols)
    titles: list[str] = []
    for r in range(n_block_rows):
        names = [
            blocks[r * n_cols + c][0] if r * n_cols + c < len(blocks) else ""
            for c in range(n_cols)
        ]
        titles += names + [""] * n_cols
    figure = make_subplots(
        rows=2 * n_block_rows,
        cols=n_cols,
        row_heights=[0.68, 0.32] * n_block_rows,
        subplot_titles=titles,
        vertical_spacing=0.16 / n_block_rows,
        horizontal_spacing=0.12,
    )
    offset = 0
    for i, (name, rows, xs) in enumerate(blocks):
        part = slice(offset, offset + len(rows))
        offset += len(rows)
        row, col = 2 * (i // n_cols) + 1, i % n_cols + 1
        _add_slice(
            figure,
            row,
            col,
            name,
            space,
            xs,
            mean[part],
            std[part],
            acq[part],
            completed,
            proposed,
        )
    figure.layout.template = TEMPLATE
    figure.update_annotations(font_size=11)
    figure.update_xaxes(tickfont_size=9)
    figure.update_yaxes(tickfont_size=9)
    figure.update_layout(
        title={
            "text": f"{title}<br><sup>blue: posterior mean ±2σ · black: trials · green: log EI"
            " · red ×: proposed</sup>",
            "font_size": 13,
        },
        showlegend=False,
        margin={"l": 45, "r": 15, "t": 65, "b": 25},
    )
    return figure


def _line(xs: list[Any], ys: np.ndarray, color: str, name: str) -> Any:
    """A plain line trace of ``ys`` over ``xs``."""
    import plotly.graph_objects as go

    return go.Scatter(x=xs, y=rounded(ys), mode="lines", line={"color": color}, name=name)


def _add_slice(
    figure: Any,
    row: int,
    col: int,
    name: str,
    space: SpaceView,
    xs: list[Any],
    mean: np.ndarray,
    std: np.ndarray,
    acq: np.ndarray,
    completed: Sequence[FrozenTrial],
    proposed: Mapping[str, Any],
) -> None:
    """One parameter's panel: the posterior and the observations in ``row``, log EI and the
    proposed value in ``row + 1``."""
    dist = space.distributions[name]
    categorical = isinstance(dist, CategoricalDistribution)
    if len(acq):  # log EI far below its maximum only squashes the interesting part.
        acq = np.maximum(acq, np.max(acq) - _LOG_EI_RANGE)
    model_traces = _categorical_slice if categorical else _numerical_slice
    for trace, below in model_traces(xs, mean, std, acq):
        figure.add_trace(trace, row=row + below, col=col)
    if getattr(dist, "log", False):
        figure.update_xaxes(type="log", row=row, col=col)
        figure.update_xaxes(type="log", row=row + 1, col=col)
    observations = _observations(name, completed, categorical)
    if observations is not None:
        figure.add_trace(observations, row=row, col=col)
    if name in proposed:
        marker = _proposed_marker(proposed[name], acq, categorical)
        figure.add_trace(marker, row=row + 1, col=col)


def _categorical_slice(
    xs: list[Any], mean: np.ndarray, std: np.ndarray, acq: np.ndarray
) -> list[tuple[Any, int]]:
    """Posterior mean ±2σ as markers and log EI as bars: ``(trace, row offset)`` pairs."""
    import plotly.graph_objects as go

    posterior = go.Scatter(
        x=xs,
        y=rounded(mean),
        error_y={"type": "data", "array": rounded(2 * std)},
        mode="markers",
        marker={"color": "#1f77b4", "size": 9},
        name="posterior mean ±2σ",
    )
    log_ei = go.Bar(x=xs, y=rounded(acq), marker={"color": "#2ca02c"}, name="log EI")
    return [(posterior, 0), (log_ei, 1)]


def _numerical_slice(
    xs: list[Any], mean: np.ndarray, std: np.ndarray, acq: np.ndarray
) -> list[tuple[Any, int]]:
    """A ±2σ band, the posterior mean and log EI as lines: ``(trace, row offset)`` pairs."""
    import plotly.graph_objects as go

    band = go.Scatter(
        x=list(xs) + list(xs)[::-1],
        y=rounded(np.concatenate([mean + 2 * std, (mean - 2 * std)[::-1]])),
        fill="toself",
        mode="lines",
        fillcolor="rgba(31,119,180,0.18)",
        line={"width": 0},
        hoverinfo="skip",
        name="±2σ",
    )
    return [
        (band, 0),
        (_line(xs, mean, "#1f77b4", "posterior mean"), 0),
        (_line(xs, acq, "#2ca02c", "log EI"), 1),
    ]


def _observations(name: str, completed: Sequence[FrozenTrial], categorical: bool) -> Any | None:
    """The completed trials' values against parameter ``name``, or None if none has it."""
    import plotly.graph_objects as go

    obs = [(t.params[name], float(t.values[0]), t.number) for t in completed if name in t.params]
    if not obs:
        return None
    return go.Scatter(
        x=[str(o[0]) if categorical else o[0] for o in obs],
        y=rounded([o[1] for o in obs]),
        text=[f"trial #{o[2]}" for o in obs],
        mode="markers",
        marker={"color": "black", "size": 6},
        name="observations",
    )


def _proposed_marker(value: Any, acq: np.ndarray, categorical: bool) -> Any:
    """A cross at the proposed value, at the height of the largest log EI."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[str(value) if categorical else value],
        y=[rounded(np.max(acq))[0]] if len(acq) else [None],
        mode="markers",
        marker={"color": "#d62728", "size": 11, "symbol": "x"},
        name="proposed value",
    )


def similarity_figure(
    summary: Mapping[str, Any], history: Sequence[tuple[int, Mapping[str, float]]] = ()
) -> Any:
    """The learned similarity of each prior task to the target: now (bars) and over trials.

    Args:
        summary: ``MetaBOSampler.prior_summary()``-style dictionary.
        history: ``(trial number, similarity by study)`` pairs, oldest first.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    similarity = dict(summary.get("task_similarity", {}))
    used = {u["study_name"]: u for u in summary.get("used", [])}
    names = sorted(similarity, key=lambda n: similarity[n])
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        subplot_titles=["now", "over trials"],
        horizontal_spacing=0.22,
    )
    figure.add_trace(
        go.Bar(
            x=rounded([similarity[n] for n in names], 3),
            y=names,
            orientation="h",
            marker={"color": ["#2ca02c" if similarity[n] >= 0 else "#d62728" for n in names]},
            text=[
                f"{similarity[n]:.2f} ({used.get(n, {}).get('n_trials_used', '?')} trials)"
                for n in names
            ],
            textposition="inside",
            insidetextanchor="start",
            textangle=0,
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    for name in reversed(names):
        points = [(n, s[name]) for n, s in history if name in s]
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=rounded([p[1] for p in points], 3),
                mode="lines+markers",
                name=name,
            ),
            row=1,
            col=2,
        )
    figure.update_xaxes(range=[-1, 1], title_text="correlation", row=1, col=1)
    figure.update_yaxes(automargin=True, tickfont_size=10, row=1, col=1)
    figure.update_xaxes(title_text="trial", row=1, col=2)
    figure.update_yaxes(range=[-1.05, 1.05], row=1, col=2)
    figure.layout.template = TEMPLATE
    figure.update_layout(
        title={"text": "Learned similarity of each prior task to the target", "font_size": 13},
        showlegend=False,
        margin={"l": 10, "r": 15, "t": 65, "b": 40},
    )
    return figure


def history_figure(study: Study) -> Any:
    """Target value against trial by ``metabo:source``, best so far, and predicted ±2σ.

    Trials that violate a constraint are crosses and do not count for the best so far. Pruned
    and failed trials, whose values are not on the objective's scale, are a rug of markers
    along the bottom edge (on a hidden second y axis).

    Args:
        study: The target study (single objective).
    """
    import plotly.graph_objects as go

    finished = study.get_trials(deepcopy=False, states=FINISHED)
    trials = [t for t in finished if has_finite_values(t)]
    feasible = [t for t in trials if is_feasible(t)]
    infeasible = [t for t in trials if not is_feasible(t)]
    figure = go.Figure()
    predictions = _predictions(trials)
    if predictions is not None:
        figure.add_trace(predictions)
    figure.add_trace(_best_so_far(feasible, sign_of(study.direction)))
    for trace in source_traces(
        feasible, [t.number for t in feasible], [t.values[0] for t in feasible]
    ):
        figure.add_trace(trace)
    if infeasible:
        xs, ys = [t.number for t in infeasible], [t.values[0] for t in infeasible]
        figure.add_trace(infeasible_trace(infeasible, xs, ys))
    figure.layout.template = TEMPLATE
    figure.update_layout(
        title={
            "text": "Target history by source, best so far, predicted ±2σ",
            "font_size": 13,
        },
        xaxis_title="trial",
        yaxis_title=f"objective ({study.direction.name.lower()})",
        margin={"l": 50, "r": 15, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.18, "font_size": 10},
    )
    pruned, failed = unfinished_trials(finished)
    if pruned or failed:
        figure.add_traces(_rug_traces(pruned, failed))
        figure.update_layout(yaxis2=_RUG_AXIS)
    return figure


def has_finite_values(trial: FrozenTrial) -> bool:
    """Whether the trial completed with a finite value of every objective.

    Args:
        trial: A trial.
    """
    complete = trial.state == TrialState.COMPLETE and bool(trial.values)
    return complete and all(math.isfinite(v) for v in trial.values)


def unfinished_trials(
    finished: Sequence[FrozenTrial],
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """The pruned trials and the failed ones among finished trials, as the sampler sees them:
    a failed trial raised (FAIL) or returned a NaN or infinite value.

    Args:
        finished: Finished trials (complete, pruned or failed).
    """
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    failed = [t for t in finished if t.state != TrialState.PRUNED and not has_finite_values(t)]
    return pruned, failed


def _rug_traces(pruned: Sequence[FrozenTrial], failed: Sequence[FrozenTrial]) -> list[Any]:
    """Pruned and failed trials as markers along the bottom edge, by trial number."""
    traces = []
    if pruned:
        traces.append(_rug(pruned, [_pruned_hover(t) for t in pruned], PRUNED_MARKER, "pruned"))
    if failed:
        hover = [f"trial #{t.number} failed ({source_of(t)})" for t in failed]
        traces.append(_rug(failed, hover, FAILED_MARKER, "failed"))
    return traces


def _rug(
    trials: Sequence[FrozenTrial], hover: list[str], marker: tuple[str, str], label: str
) -> Any:
    """One rug trace, named with its label and the number of trials."""
    import plotly.graph_objects as go

    symbol, color = marker
    return go.Scatter(
        x=[t.number for t in trials],
        y=[_RUG_HEIGHT] * len(trials),
        yaxis="y2",
        text=hover,
        hoverinfo="text",
        mode="markers",
        marker={"color": color, "symbol": symbol, "size": 9},
        name=f"{label} ({len(trials)})",
    )


def _pruned_hover(trial: FrozenTrial) -> str:
    """A pruned trial's number, last reported step and value, and source."""
    finite = {s: v for s, v in trial.intermediate_values.items() if math.isfinite(v)}
    step = max(finite, default=None)
    where = "before its first report" if step is None else f"at step {step:g}: {finite[step]:.4g}"
    return f"trial #{trial.number} pruned {where} ({source_of(trial)})"


def _predictions(trials: Sequence[FrozenTrial]) -> Any | None:
    """The model's prediction ±2σ made before each trial ran, or None if there is none."""
    import plotly.graph_objects as go

    predicted = [
        t for t in trials if isinstance(t.user_attrs.get(USER_ATTR_PREDICTED_MEAN), float)
    ]
    if not predicted:
        return None
    stds = [t.user_attrs.get(USER_ATTR_PREDICTED_STD) for t in predicted]
    return go.Scatter(
        x=[t.number for t in predicted],
        y=rounded([t.user_attrs[USER_ATTR_PREDICTED_MEAN] for t in predicted]),
        error_y={
            "type": "data",
            "array": rounded([2 * s if isinstance(s, float) else 0.0 for s in stds]),
            "color": "#aaaaaa",
        },
        mode="markers",
        marker={"color": "#aaaaaa", "symbol": "circle-open", "size": 8},
        name="predicted ±2σ",
    )


def _best_so_far(trials: Sequence[FrozenTrial], sign: float) -> Any:
    """The incumbent's value after each trial, as a step line."""
    import plotly.graph_objects as go

    best, xs, ys = math.inf, [], []
    for t in trials:
        best = min(best, sign * float(t.values[0]))
        xs.append(t.number)
        ys.append(sign * best)
    return go.Scatter(
        x=xs,
        y=rounded(ys),
        mode="lines",
        line={"shape": "hv", "color": "black"},
        name="best so far",
    )


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether every constraint value the trial recorded is at most zero (none: feasible).

    Args:
        trial: A finished trial.
    """
    return all(v <= 0.0 for v in trial_constraints(trial.system_attrs).values())


def source_of(trial: FrozenTrial) -> str:
    """The trial's ``metabo:source``, or ``"unknown"``.

    Args:
        trial: A trial.
    """
    return str(trial.user_attrs.get(USER_ATTR_SOURCE, "unknown"))


def source_traces(
    trials: Sequence[FrozenTrial],
    xs: Sequence[Any],
    ys: Sequence[float],
    hover: Sequence[str] | None = None,
) -> list[Any]:
    """One marker trace per ``metabo:source``, in the order of ``SOURCES``.

    Args:
        trials: The trials.
        xs: Each trial's x coordinate.
        ys: Each trial's y coordinate.
        hover: Each trial's hover text, if any.
    """
    import plotly.graph_objects as go

    by_source: dict[str, list[int]] = {}
    for i, t in enumerate(trials):
        by_source.setdefault(source_of(t), []).append(i)
    order = sorted(by_source, key=lambda s: SOURCES.index(s) if s in SOURCES else len(SOURCES))
    traces = []
    for source in order:
        rows = by_source[source]
        trace = go.Scatter(
            x=[xs[i] for i in rows],
            y=rounded([ys[i] for i in rows]),
            mode="markers",
            marker={"color": SOURCE_COLORS.get(source, _UNKNOWN_COLOR), "size": 9},
            name=source,
        )
        if hover is not None:
            trace.text = [hover[i] for i in rows]
        traces.append(trace)
    return traces


def infeasible_trace(
    trials: Sequence[FrozenTrial],
    xs: Sequence[Any],
    ys: Sequence[float],
    hover: Sequence[str] | None = None,
) -> Any:
    """Trials that violate a constraint, as crosses in the colour of their source.

    Args:
        trials: The infeasible trials.
        xs: Each trial's x coordinate.
        ys: Each trial's y coordinate.
        hover: Each trial's hover text; by default its number and source.
    """
    import plotly.graph_objects as go

    if hover is None:
        hover = [f"trial #{t.number} ({source_of(t)})" for t in trials]
    return go.Scatter(
        x=list(xs),
        y=rounded(ys),
        text=list(hover),
        mode="markers",
        marker={
            "color": [SOURCE_COLORS.get(source_of(t), _UNKNOWN_COLOR) for t in trials],
            "symbol": "x",
            "size": 10,
        },
        name="infeasible",
    )
