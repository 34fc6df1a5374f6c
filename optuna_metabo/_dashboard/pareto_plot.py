"""The Pareto-front figure of a multi-objective target study, for optuna-dashboard.

The target's completed trials are points coloured by ``metabo:source``; its non-dominated
feasible trials are ringed (and connected, with two objectives); trials that violate a
constraint are crosses; each prior study's front (``MetaBOSampler.prior_fronts``) is drawn
faded behind, one legend entry per prior. With three or four objectives the figure shows the
first two: the front is still the non-dominated set over all objectives, and each point's hover
text lists every objective's value.

Plotly is imported lazily; nothing here writes to storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_metabo._dashboard.plots import infeasible_trace
from optuna_metabo._dashboard.plots import is_feasible
from optuna_metabo._dashboard.plots import rounded
from optuna_metabo._dashboard.plots import sign_of
from optuna_metabo._dashboard.plots import source_of
from optuna_metabo._dashboard.plots import source_traces
from optuna_metabo._dashboard.plots import TEMPLATE
from optuna_metabo.pareto import nondominated_mask


if TYPE_CHECKING:
    from optuna.study import Study


PRIOR_FRONT_OPACITY = 0.3
FRONT_NAME = "Pareto front (target)"
_PRIOR_COLORS = ["#8c564b", "#2ca02c", "#e377c2", "#bcbd22", "#9467bd", "#7f7f7f"]


def objective_labels(study: Study) -> list[str]:
    """The study's metric names, else ``"objective 0"``, ``"objective 1"``, ...

    Args:
        study: The target study.
    """
    names = study.metric_names
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


def pareto_front(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[FrozenTrial]:
    """The feasible trials that no other feasible trial dominates, by their first objective.

    Args:
        trials: Completed trials with finite values for every objective.
        directions: The study's directions.
    """
    feasible = [t for t in trials if is_feasible(t)]
    if not feasible:
        return []
    signs = np.array([sign_of(d) for d in directions])
    keep = nondominated_mask(np.array([t.values for t in feasible]) * signs)
    return sorted((t for t, k in zip(feasible, keep) if k), key=lambda t: t.values[0])


def pareto_figure(
    study: Study, trials: Sequence[FrozenTrial], fronts: Mapping[str, np.ndarray]
) -> Any:
    """The target's trials and Pareto front over the priors' fronts, in the first two objectives.

    Args:
        study: The target study (two to four objectives).
        trials: Its completed trials with finite values for every objective.
        fronts: Each prior study's front ``(n, k)`` in the target's objectives and units.
    """
    import plotly.graph_objects as go

    labels = objective_labels(study)
    connect = len(labels) == 2
    figure = go.Figure()
    for i, (name, front) in enumerate(fronts.items()):
        if len(front):
            figure.add_trace(_prior_front(name, front, _PRIOR_COLORS[i % len(_PRIOR_COLORS)]))
    feasible = [t for t in trials if is_feasible(t)]
    infeasible = [t for t in trials if not is_feasible(t)]
    for trace in source_traces(feasible, *_coordinates(feasible, labels)):
        figure.add_trace(trace)
    if infeasible:
        figure.add_trace(infeasible_trace(infeasible, *_coordinates(infeasible, labels)))
    best = pareto_front(trials, study.directions)
    xs, ys, hover = _coordinates(best, labels)
    figure.add_trace(
        go.Scatter(
            x=xs,
            y=rounded(ys),
            text=hover,
            mode="lines+markers" if connect else "markers",
            line={"color": "black", "width": 1.5},
            marker={"color": "black", "symbol": "circle-open", "size": 15},
            name=FRONT_NAME,
        )
    )
    title = "Pareto front: target trials by source, prior studies' fronts faded"
    if not connect:
        title += (
            f"<br><sup>{labels[0]} and {labels[1]} of {len(labels)} objectives; the front is "
            "over all of them</sup>"
        )
    directions = [d.name.lower() for d in study.directions]
    figure.layout.template = TEMPLATE
    figure.update_layout(
        title={"text": title, "font_size": 13},
        xaxis_title=f"{labels[0]} ({directions[0]})",
        yaxis_title=f"{labels[1]} ({directions[1]})",
        margin={"l": 50, "r": 15, "t": 60, "b": 40},
        legend={"orientation": "h", "y": -0.18, "font_size": 10},
    )
    return figure


def _coordinates(
    trials: Sequence[FrozenTrial], labels: Sequence[str]
) -> tuple[list[float | None], list[float], list[str]]:
    """The trials' first two objectives (the first rounded) and hover texts (listing every
    objective when there are more than two)."""
    hover = []
    for t in trials:
        text = f"trial #{t.number} ({source_of(t)})"
        if len(labels) > 2:
            text += "".join(f"<br>{label}: {v:.5g}" for label, v in zip(labels, t.values))
        hover.append(text)
    xs = rounded([t.values[0] for t in trials])
    return xs, [float(t.values[1]) for t in trials], hover


def _prior_front(name: str, front: np.ndarray, color: str) -> Any:
    """A prior study's front, faded, sorted by the first objective."""
    import plotly.graph_objects as go

    front = front[np.argsort(front[:, 0], kind="stable")]
    return go.Scatter(
        x=rounded(front[:, 0]),
        y=rounded(front[:, 1]),
        mode="lines+markers" if front.shape[1] == 2 else "markers",
        opacity=PRIOR_FRONT_OPACITY,
        line={"color": color, "width": 1.5},
        marker={"color": color, "size": 7},
        name=f"{name} (prior front)",
        hoverinfo="name+x+y",
    )
