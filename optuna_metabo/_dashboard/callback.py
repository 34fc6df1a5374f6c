"""``DashboardCallback``: what MetaBOSampler transferred, as a study note and plots.

An Optuna study callback: ``study.optimize(objective, callbacks=[DashboardCallback()])``. It
writes only to the target study (study system attributes, through
``optuna_dashboard.save_note`` and ``optuna_dashboard.save_plotly_graph_object``) and never to
a prior study. Writing is throttled so that it does not slow the study down noticeably:

- the note is rewritten when the transfer summary changes (priors used or skipped, their trial
  counts, a task similarity moving by more than ``0.05``) and with every plot refresh;
- the plots are refreshed after the first trial, then at most every ``every_n_trials``
  finished trials (complete, pruned or failed), and only once the time since the last
  refresh is at least ``(1 - max_overhead) / max_overhead`` times what that refresh cost,
  which caps the share of wall time spent on the dashboard at ``max_overhead``.

A single-objective study gets the task similarity, slices through the incumbent and the
target history; the slice plot uses the very GP that chose the sampler's latest trial (no
refit, no second factorization), so it is left out where that GP has no single posterior
(with constraints or a failure model). A multi-objective study gets the task similarity and
its Pareto front over the prior studies' fronts (see ``_dashboard.pareto_plot``). With several
objectives or constraints, the note says how each prior's metrics were matched to the
target's. Once the target has pruned or failed trials, or a prior's were used, the note
counts them and the trials the failure model steered, and the history shows them as a rug
along its bottom edge.

optuna-dashboard and plotly are imported lazily; when either is missing, the callback logs
once at debug level and does nothing. Any error while writing is logged once as a warning and
never reaches the study.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import json
import logging
import math
import time
from typing import Any
from typing import TYPE_CHECKING

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_metabo._dashboard.pareto_plot import pareto_figure
from optuna_metabo._dashboard.pareto_plot import pareto_front
from optuna_metabo._dashboard.plots import FINISHED
from optuna_metabo._dashboard.plots import has_finite_values
from optuna_metabo._dashboard.plots import history_figure
from optuna_metabo._dashboard.plots import is_feasible
from optuna_metabo._dashboard.plots import sign_of
from optuna_metabo._dashboard.plots import similarity_figure
from optuna_metabo._dashboard.plots import slice_figures
from optuna_metabo._dashboard.plots import unfinished_trials
from optuna_metabo._sampler import MetaBOSampler
from optuna_metabo._vocabulary import EXTRA_FIXED
from optuna_metabo._vocabulary import LACKED_DEFAULT
from optuna_metabo._vocabulary import SOURCE_PRIOR_DESIGN
from optuna_metabo._vocabulary import trial_constraints
from optuna_metabo._vocabulary import USER_ATTR_FAILURE
from optuna_metabo._vocabulary import USER_ATTR_SOURCE


if TYPE_CHECKING:
    from optuna.study import Study

    from optuna_metabo._last_proposal import LastProposal


_logger = logging.getLogger(__name__)

PLOT_ID_SIMILARITY = "metabo-task-similarity"
PLOT_ID_SLICES = "metabo-slices"  # A second figure, if any, gets the suffix "-2".
PLOT_ID_HISTORY = "metabo-history"
PLOT_ID_PARETO = "metabo-pareto-front"
NOTE_TITLE = "MetaBOSampler: transfer from prior studies"
_SIMILARITY_TOLERANCE = 0.05


class DashboardCallback:
    """Writes MetaBOSampler's transfer note and custom plots to the study, for optuna-dashboard.

    Pass it to ``study.optimize(..., callbacks=[DashboardCallback()])`` of a study sampled by
    ``MetaBOSampler``; with ask-and-tell, call ``callback(study, frozen_trial)`` after each
    ``study.tell``. Needs the ``dashboard`` extra (optuna-dashboard and plotly); without it
    the callback does nothing. It never raises: a failure is logged once as a warning.

    Args:
        every_n_trials: Refresh the plots at most every this many finished trials.
        max_overhead: Largest share of wall time that refreshing may take (see the module
            docstring); ``1.0`` turns the time guard off.
    """

    def __init__(self, every_n_trials: int = 5, max_overhead: float = 0.03) -> None:
        if every_n_trials < 1:
            raise ValueError(f"every_n_trials must be at least 1, not {every_n_trials}.")
        if not 0.0 < max_overhead <= 1.0:
            raise ValueError(f"max_overhead must be in (0, 1], not {max_overhead}.")
        self.every_n_trials = every_n_trials
        self.max_overhead = max_overhead
        self.seconds_spent = 0.0
        self.import_seconds = 0.0
        self.n_notes = 0
        self.n_plot_refreshes = 0
        self._api: tuple[Any, Any] | None = None
        self._unavailable = False
        self._warned: set[str] = set()
        self._study_key: tuple[int, str] | None = None
        self._reset()

    def _reset(self) -> None:
        self._last_note_key: Any = None
        self._last_similarity: dict[str, float] = {}
        self._last_plot_n: int | None = None
        self._next_allowed = 0.0
        self._similarity_history: list[tuple[int, dict[str, float]]] = []

    @property
    def enabled(self) -> bool:
        """Whether optuna-dashboard and plotly are available, as far as is known yet."""
        return not self._unavailable

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """Refreshes the note and the plots of ``study`` when they are due.

        Args:
            study: The target study, sampled by ``MetaBOSampler``; the only one written to.
            trial: The trial that just finished.
        """
        start = time.perf_counter()
        try:
            self._refresh(study, trial)
        except Exception as error:  # The dashboard must never break the study.
            self._warn("note or plots", error)
        finally:
            self.seconds_spent += time.perf_counter() - start

    def _warn(self, what: str, error: Exception) -> None:
        if what not in self._warned:
            self._warned.add(what)
            _logger.warning(
                "MetaBOSampler could not write its optuna-dashboard %s (%s: %s); the study "
                "continues.",
                what,
                type(error).__name__,
                error,
            )

    # ---------------------------------------------------------------------------- internals
    def _load_api(self) -> tuple[Any, Any] | None:
        if self._api is None and not self._unavailable:
            start = time.perf_counter()
            try:
                from optuna_dashboard import save_note
                from optuna_dashboard import save_plotly_graph_object
                import plotly  # noqa: F401
            except ImportError as error:
                self._unavailable = True
                _logger.debug("optuna-dashboard output disabled: %s", error)
                return None
            self._api = (save_note, save_plotly_graph_object)
            self.import_seconds = time.perf_counter() - start
        return self._api

    def _refresh(self, study: Study, trial: FrozenTrial) -> None:
        sampler = study.sampler
        if not isinstance(sampler, MetaBOSampler):
            kind = type(sampler).__name__
            raise TypeError(f"the study's sampler is a {kind}, not a MetaBOSampler")
        api = self._load_api()
        if api is None:
            return
        start = time.perf_counter()  # Import time is a one-off; it does not count below.
        study_key = (id(study._storage), study.study_name)
        if study_key != self._study_key:  # A callback reused on another study starts afresh.
            self._reset()
            self._study_key = study_key
        summary = sampler.prior_summary()
        similarity = {k: float(v) for k, v in summary["task_similarity"].items()}
        self._similarity_history.append((trial.number, similarity))
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        completed = [t for t in finished if has_finite_values(t)]
        note_due, plots_due = self._due(len(finished), summary, similarity, start)
        if not note_due:
            return
        if plots_due:  # Set before writing, so that a failing refresh is not retried at once.
            self._last_plot_n = len(finished)
        save_note, save_plot = api
        try:
            multi_objective = len(study.directions) > 1
            constrained = any(trial_constraints(t.system_attrs) for t in completed)
            note = transfer_note(
                summary,
                len(completed),
                trial.number,
                _source_counts(finished),
                None if multi_objective else _best(completed, study.direction),
                pareto_front(completed, study.directions) if multi_objective else None,
                sum(is_feasible(t) for t in completed) if constrained else None,
                Unfinished.of(finished),
            )
            save_note(study, note)
            self.n_notes += 1
            if plots_due:
                self._write_plots(save_plot, study, sampler, summary, completed)
                self.n_plot_refreshes += 1
        finally:
            if self.n_plot_refreshes > 1 or not plots_due:  # The first refresh pays warm-ups.
                self._wait_for(time.perf_counter() - start)

    def _due(
        self, n_done: int, summary: Mapping[str, Any], similarity: dict[str, float], now: float
    ) -> tuple[bool, bool]:
        """Whether the note and the plots are due: ``(note_due, plots_due)``."""
        time_ok = now >= self._next_allowed
        plots_due = self._last_plot_n is None or (
            n_done - self._last_plot_n >= self.every_n_trials and time_ok
        )
        note_key = _note_key(summary)
        note_due = (
            plots_due
            or note_key != self._last_note_key
            or (time_ok and _moved(self._last_similarity, similarity))
        )
        if note_due:
            self._last_note_key, self._last_similarity = note_key, similarity
        return note_due, plots_due

    def _wait_for(self, cost: float) -> None:
        """Holds the next time-guarded refresh back so that refreshing stays within budget."""
        wait = cost * (1.0 - self.max_overhead) / self.max_overhead
        self._next_allowed = max(self._next_allowed, time.perf_counter() + wait)

    def _write_plots(
        self,
        save_plot: Any,
        study: Study,
        sampler: MetaBOSampler,
        summary: Mapping[str, Any],
        completed: list[FrozenTrial],
    ) -> None:
        figure = similarity_figure(summary, self._similarity_history)
        save_plot(study, figure, graph_object_id=PLOT_ID_SIMILARITY)
        if len(study.directions) > 1:
            figure = pareto_figure(study, completed, sampler.prior_fronts(study))
            save_plot(study, figure, graph_object_id=PLOT_ID_PARETO)
            return
        save_plot(study, history_figure(study), graph_object_id=PLOT_ID_HISTORY)
        try:
            slices = _slice_figures(sampler.last_proposal(), completed)
        except Exception as error:  # The model's internals may change; keep the rest.
            slices = []
            self._warn("slice plot", error)
        for i, figure in enumerate(slices):
            suffix = f"-{i + 1}" if i else ""
            save_plot(study, figure, graph_object_id=PLOT_ID_SLICES + suffix)


def _slice_figures(last: LastProposal | None, completed: list[FrozenTrial]) -> list[Any]:
    """The slice figures of the sampler's latest model proposal, if it made one."""
    if last is None or last.space.dim == 0 or not last.has_posterior:
        return []
    return slice_figures(last, completed)


def _note_key(summary: Mapping[str, Any]) -> str:
    return json.dumps(
        [summary.get("used", []), summary.get("skipped", [])], sort_keys=True, default=str
    )


def _moved(before: Mapping[str, float], after: Mapping[str, float]) -> bool:
    if before.keys() != after.keys():
        return True
    return any(abs(before[k] - after[k]) > _SIMILARITY_TOLERANCE for k in after)


def _best(completed: Sequence[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    """The best feasible trial of a single-objective study, if any."""
    feasible = [t for t in completed if is_feasible(t)]
    if not feasible:
        return None
    sign = sign_of(direction)
    return min(feasible, key=lambda t: sign * float(t.values[0]))


def _source_counts(finished: Sequence[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in finished:
        source = str(t.user_attrs.get(USER_ATTR_SOURCE, "unknown"))
        counts[source] = counts.get(source, 0) + 1
    return counts


@dataclass(frozen=True)
class Unfinished:
    """The target's pruned and failed trials, and the trials the failure model steered.

    Attributes:
        n_pruned: Pruned trials.
        n_failed: Failed trials (an exception, or a NaN or infinite value).
        failure_probabilities: The ``metabo:failure_probability`` of each finished trial that
            carries one (the failure model took part in choosing it), in trial order.
        n_steered_failed: How many of those steered trials failed.
    """

    n_pruned: int = 0
    n_failed: int = 0
    failure_probabilities: tuple[float, ...] = ()
    n_steered_failed: int = 0

    @classmethod
    def of(cls, finished: Sequence[FrozenTrial]) -> Unfinished:
        """Counts them among the target's finished trials.

        Args:
            finished: The target's complete, pruned and failed trials.
        """
        pruned, failed = unfinished_trials(finished)
        failed_numbers = {t.number for t in failed}
        steered = [(t.number, p) for t in finished if (p := _failure_probability(t)) is not None]
        return cls(
            len(pruned),
            len(failed),
            tuple(p for _, p in steered),
            sum(number in failed_numbers for number, _ in steered),
        )


def _failure_probability(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get(USER_ATTR_FAILURE)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------- the note
_PLOT_SIMILARITY = "- *Task similarity*: the table above as bars, and how it changed over trials."
_PLOT_SLICES = (
    "- *Slices through the incumbent*: for the latest proposal, the posterior mean ±2σ and "
    "the log expected improvement (floored 30 below its maximum) along each parameter, "
    "others fixed at the best trial."
)
_PLOT_HISTORY = (
    "- *Target history*: observed values by source, the best so far and the model's "
    f"prediction ±2σ; early `{SOURCE_PRIOR_DESIGN}` trials near the final best mean the priors "
    "helped."
)
_PLOT_INFEASIBLE = " Crosses: trials that violate a constraint."
_PLOT_UNFINISHED = (
    " Along the bottom edge, by trial number: pruned (triangles) and failed (diamonds) trials,"
    " whose values are not on the objective's scale."
)
_PLOT_PARETO = (
    "- *Pareto front*: the target's trials by source, its non-dominated feasible trials "
    "ringed, and each prior study's front faded behind (with more than two objectives, the "
    "first two; the hover text lists all)."
)


def transfer_note(
    summary: Mapping[str, Any],
    n_completed: int,
    trial_number: int,
    sources: Mapping[str, int],
    best: FrozenTrial | None,
    front: Sequence[FrozenTrial] | None = None,
    n_feasible: int | None = None,
    unfinished: Unfinished | None = None,
) -> str:
    """The study note: what was transferred from which prior study, in Markdown.

    Args:
        summary: ``MetaBOSampler.prior_summary()``-style dictionary.
        n_completed: Completed target trials so far.
        trial_number: The trial after which the note was written.
        sources: Number of finished trials by ``metabo:source``.
        best: The incumbent target trial of a single-objective study, if any.
        front: The non-dominated feasible trials of a multi-objective study; None for a
            single-objective one.
        n_feasible: How many completed trials satisfy every constraint; None without
            constraints.
        unfinished: The target's pruned and failed trials and the steered ones; none if None.
    """
    used = list(summary.get("used", []))
    skipped = list(summary.get("skipped", []))
    similarity = dict(summary.get("task_similarity", {}))
    unfinished = unfinished or Unfinished()
    lines = [f"## {NOTE_TITLE}", ""]
    lines += _status_lines(n_completed, trial_number, sources, best, front, n_feasible)
    lines += _unfinished_lines(summary, used, unfinished) + _output_lines(summary, used)
    lines += _used_lines(used, similarity) + _parameter_differences(used)
    lines += _skipped_lines(skipped) + _similarity_lines(similarity)
    lines += _plot_lines(front is not None, n_feasible is not None, unfinished)
    return "\n".join(lines) + "\n"


def _status_lines(
    n_completed: int,
    trial_number: int,
    sources: Mapping[str, int],
    best: FrozenTrial | None,
    front: Sequence[FrozenTrial] | None,
    n_feasible: int | None,
) -> list[str]:
    status = f"Refreshed after trial #{trial_number}, with {n_completed} completed trials"
    if n_feasible is not None:
        status += f" ({n_feasible} feasible)"
    if best is not None:
        status += f"; best value so far {_fmt(best.values[0], 6)} (trial #{best.number})"
    if front:
        numbers = ", ".join(f"#{t.number}" for t in front)
        status += f"; {len(front)} on the Pareto front ({numbers})"
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(sources.items())) or "none yet"
    return [status + ".", "", f"Finished trials by `{USER_ATTR_SOURCE}`: {counts}.", ""]


def _unfinished_lines(
    summary: Mapping[str, Any], used: list[Mapping[str, Any]], unfinished: Unfinished
) -> list[str]:
    """Once the target or a used prior has pruned or failed trials: how many, how many the
    model used, and the trials the failure model steered."""
    prior_pruned, prior_failed = _prior_unfinished(used)
    steered = unfinished.failure_probabilities
    if not (unfinished.n_pruned or unfinished.n_failed or prior_pruned or prior_failed or steered):
        return []
    n_used = int(summary.get("target_unfinished_used", 0))
    lines = [
        "### Pruned and failed trials",
        "",
        f"- Target: {unfinished.n_pruned} pruned, {unfinished.n_failed} failed; the model used "
        f"{n_used} of them at the latest trial, as pseudo-observations of the value they did "
        "not reach.",
    ]
    if prior_pruned or prior_failed:
        lines.append(
            f"- Prior studies: the model was given {prior_pruned} of their pruned trials and "
            f"{prior_failed} of their failed ones (by study in the table below)."
        )
    if steered:
        mean = sum(steered) / len(steered)
        lines.append(
            f"- The failure model steered {_plural(len(steered), 'trial')} (those with "
            f"`{USER_ATTR_FAILURE}`), with a mean predicted failure probability of "
            f"{_probability(mean)}; {unfinished.n_steered_failed} of them failed."
        )
    return lines + [""]


def _probability(p: float) -> str:
    """``p`` to three significant digits, or "< 0.001" (tinier values are fit noise)."""
    return "< 0.001" if p < 1e-3 else _fmt(p, 3)


def _prior_unfinished(used: list[Mapping[str, Any]]) -> tuple[int, int]:
    """The pruned and the failed trials of the used priors that the model was given."""
    pruned = sum(int(u.get("n_pruned_used", 0)) for u in used)
    return pruned, sum(int(u.get("n_failed_used", 0)) for u in used)


def _output_lines(summary: Mapping[str, Any], used: list[Mapping[str, Any]]) -> list[str]:
    """With several objectives or constraints: the target's outputs and how each used prior's
    metrics were matched to them."""
    if "objectives" not in summary:
        return []
    objectives = ", ".join(f"`{_md(str(o))}`" for o in summary["objectives"])
    constraints = ", ".join(f"`{_md(str(c))}`" for c in summary.get("constraints", []))
    lines = [
        "### Objectives and constraints",
        "",
        f"Target objectives: {objectives}; constraints: {constraints or 'none'}.",
        "",
    ]
    if used:
        lines += ["How each prior study's metrics were matched (target <- prior):", ""]
        lines += [f"- **{_md(u['study_name'])}**: {_md(str(u.get('outputs', '')))}" for u in used]
        lines.append("")
    return lines


def _plot_lines(multi_objective: bool, constrained: bool, unfinished: Unfinished) -> list[str]:
    """The plots section: what each plot written for this kind of study shows."""
    if multi_objective:
        return ["", "### Plots", "", _PLOT_SIMILARITY, _PLOT_PARETO]
    history = _PLOT_HISTORY + (_PLOT_INFEASIBLE if constrained else "")
    if unfinished.n_pruned or unfinished.n_failed:
        history += _PLOT_UNFINISHED
    # No slices where the GP behind the proposal has no single view: with constraints or a
    # failure model.
    no_slices = constrained or bool(unfinished.failure_probabilities)
    return ["", "### Plots", "", _PLOT_SIMILARITY, *([] if no_slices else [_PLOT_SLICES]), history]


def _used_lines(used: list[Mapping[str, Any]], similarity: Mapping[str, float]) -> list[str]:
    lines = [f"### Prior studies used ({len(used)})", ""]
    if not used:
        return lines + ["None: MetaBOSampler runs as a plain GP sampler."]
    unfinished = _prior_unfinished(used) != (0, 0)  # Their columns only where any was used.
    lines += [
        "| study | trials in the model | usable trials | all trials | similarity |"
        + (" pruned used | failed used |" if unfinished else ""),
        "|---|---:|---:|---:|---:|" + ("---:|---:|" if unfinished else ""),
    ]
    for u in used:
        name = u["study_name"]
        row = (
            f"| {_md(name)} | {u['n_trials_used']} | {u['n_trials_usable']} "
            f"| {u['n_trials_total']} | {_fmt(similarity.get(name), 3)} |"
        )
        if unfinished:
            row += f" {u.get('n_pruned_used', 0)} | {u.get('n_failed_used', 0)} |"
        lines.append(row)
    return lines


def _skipped_lines(skipped: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", f"### Prior studies skipped ({len(skipped)})", ""]
    if not skipped:
        return lines + ["None."]
    return lines + [f"- **{_md(s['study_name'])}**: {_md(str(s['reason']))}" for s in skipped]


def _similarity_lines(similarity: Mapping[str, float]) -> list[str]:
    lines = ["", "### Learned task similarity", ""]
    if not similarity:
        return lines + ["Not learned yet."]
    lines += [
        "Correlation between each prior task and the target learned by the multi-task GP "
        "(1: same landscape, 0: unrelated, below 0: opposite).",
        "",
        "| prior study | similarity |",
        "|---|---:|",
    ]
    for name, corr in sorted(similarity.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {_md(name)} | {_fmt(corr, 3)} |")
    return lines


def _parameter_differences(used: list[Mapping[str, Any]]) -> list[str]:
    """Markdown lines on the parameters each used prior lacked or had extra, and their handling."""
    rows = []
    for u in used:
        for name, how in u.get("lacked", {}).items():
            if how["handling"] == LACKED_DEFAULT:
                handled = f"held at `{how['value']!r}` (prior_defaults)"
            else:
                learned = how.get("learned_value")
                shown = _fmt(learned) if isinstance(learned, (int, float)) else repr(learned)
                handled = "unknown: the value it was held at is learned" + (
                    f" (now ≈ `{shown}`)" if learned is not None else ""
                )
            rows.append(f"| {_md(u['study_name'])} | lacks `{_md(name)}` | {handled} |")
        for name, how in u.get("extra", {}).items():
            handled = "model input at the target's fixed value" if how == EXTRA_FIXED else how
            rows.append(f"| {_md(u['study_name'])} | also tuned `{_md(name)}` | {handled} |")
    if not rows:
        return []
    header = ["", "### Parameters that differ from the target's", ""]
    return header + ["| prior study | parameter | handling |", "|---|---|---|", *rows]
