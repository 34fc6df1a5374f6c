"""Re-uses the evaluations of a configuration that was trained before on the same task.

On the CPU the Hugging Face ``Trainer`` is deterministic: the same hyperparameters, data and
seed give the same evaluations bit for bit (``benchmarks/test_minilm.py`` checks this). Many
trials of the MiniLM benchmark repeat a configuration that another arm of the same (topic,
seed) has trained: GPSampler and TPE draw the same ten random startup trials with the same
seed, warm-start TPE's random trials after its enqueued ones are TPE's first ones, and
MetaBOSampler's prior-design trials are often warm-start TPE's enqueued bests. A
:class:`MemoTrainer` replays such a trial's stored reports instead of training again: the
trial gets the same intermediate values at the same global steps, is pruned where the pruner
says so, and records the epochs it stands for. Replayed trials carry the user attribute
``minilm:replayed_from``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import math
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import transformers
from transformers.trainer_utils import TrainOutput


EPOCHS_ATTR = "minilm:epochs"
SECONDS_ATTR = "minilm:seconds"
REPLAYED_ATTR = "minilm:replayed_from"

_Key = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Curve:
    """The reports of one training run.

    Attributes:
        steps: Global steps of the evaluations.
        values: The objective at each of them.
        complete: Whether training ran to its last epoch (not pruned).
        origin: ``"<study>#<trial number>"`` of the trial that trained.
    """

    steps: tuple[int, ...]
    values: tuple[float, ...]
    complete: bool
    origin: str


class Memo:
    """Curves of trained configurations of one (task, training seed), by parameters."""

    def __init__(self) -> None:
        self._curves: dict[_Key, Curve] = {}

    def __len__(self) -> int:
        return len(self._curves)

    @staticmethod
    def key(params: Mapping[str, Any]) -> _Key:
        """The exact parameters, in name order.

        Args:
            params: ``trial.params``.

        Returns:
            A hashable key.
        """
        return tuple(sorted(params.items()))

    def get(self, params: Mapping[str, Any]) -> Curve | None:
        """The stored curve of a configuration, if any.

        Args:
            params: ``trial.params``.

        Returns:
            The curve, or ``None``.
        """
        return self._curves.get(self.key(params))

    def put(self, params: Mapping[str, Any], curve: Curve) -> None:
        """Stores a curve unless the stored one is complete or longer.

        Args:
            params: ``trial.params``.
            curve: The reports of a run with these parameters.
        """
        known = self.get(params)
        if known is None or (not known.complete and len(curve.steps) > len(known.steps)):
            self._curves[self.key(params)] = curve

    def add_study(self, study: optuna.Study) -> None:
        """Stores every trained (not replayed) finished trial of a study.

        Args:
            study: A study of the same task and training seed.
        """
        for trial in study.get_trials(deepcopy=False):
            trained = REPLAYED_ATTR not in trial.user_attrs and trial.intermediate_values
            if trained and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                self.put(trial.params, _curve_of(study.study_name, trial))


def _curve_of(study_name: str, trial: FrozenTrial) -> Curve:
    steps = tuple(sorted(trial.intermediate_values))
    return Curve(
        steps=steps,
        values=tuple(trial.intermediate_values[s] for s in steps),
        complete=trial.state == TrialState.COMPLETE,
        origin=f"{study_name}#{trial.number}",
    )


class _Recorder(transformers.TrainerCallback):
    """Records the objective of each evaluation at the global step."""

    def __init__(self, compute_objective: Callable[[dict[str, float]], float]) -> None:
        self.compute_objective = compute_objective
        self.steps: list[int] = []
        self.values: list[float] = []

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(int(state.global_step))
        self.values.append(float(self.compute_objective(kwargs["metrics"])))


class MemoTrainer(transformers.Trainer):
    """A ``Trainer`` whose ``hyperparameter_search`` trials replay known configurations.

    Args:
        *args: ``transformers.Trainer`` arguments.
        memo: The curves of this task and seed; trained trials are added to it.
        log_line: Called with one line per finished trial.
        **kwargs: ``transformers.Trainer`` keyword arguments.
    """

    objective: float | None

    def __init__(
        self, *args: Any, memo: Memo, log_line: Callable[[str], None] = print, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.memo = memo
        self.log_line = log_line

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: optuna.Trial | dict[str, Any] | None = None,
        ignore_keys_for_eval: list[str] | None = None,
    ) -> TrainOutput:
        """Trains, or replays the stored reports of the trial's configuration.

        Args:
            resume_from_checkpoint: As in ``transformers.Trainer.train``.
            trial: The search's ``optuna.Trial``.
            ignore_keys_for_eval: As in ``transformers.Trainer.train``.

        Returns:
            What ``transformers.Trainer.train`` returns; for a replay, its last step.

        Raises:
            optuna.TrialPruned: If the study's pruner prunes the trial.
        """
        if not isinstance(trial, optuna.Trial):
            return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)
        self.hp_space(trial)  # Suggests the parameters; the Trainer's own call gets the same.
        known = self.memo.get(trial.params)
        if known is not None and known.complete:
            return self._replay(trial, known)
        recorder = _Recorder(self.compute_objective)
        self.add_callback(recorder)
        start = time.perf_counter()
        complete = False
        try:
            output = super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)
            complete = True
            return output
        finally:
            self.remove_callback(recorder)
            seconds = time.perf_counter() - start
            if recorder.steps:
                origin = f"{trial.study.study_name}#{trial.number}"
                curve = Curve(tuple(recorder.steps), tuple(recorder.values), complete, origin)
                self.memo.put(trial.params, curve)
            self._finish(trial, recorder.values, seconds, complete)

    def _replay(self, trial: optuna.Trial, curve: Curve) -> TrainOutput:
        trial.set_user_attr(REPLAYED_ATTR, curve.origin)
        for count, (step, value) in enumerate(zip(curve.steps, curve.values), start=1):
            trial.report(value, step)
            self.objective = value
            if trial.should_prune():
                self._finish(trial, curve.values[:count], 0.0, complete=False)
                raise optuna.TrialPruned(f"Pruned at step {step} (replayed).")
        self._finish(trial, curve.values, 0.0, complete=True)
        return TrainOutput(curve.steps[-1], math.nan, {})

    def _finish(
        self, trial: optuna.Trial, values: Sequence[float], seconds: float, complete: bool
    ) -> None:
        """Records the epochs and seconds of a trial, and logs it."""
        trial.set_user_attr(EPOCHS_ATTR, len(values))
        trial.set_user_attr(SECONDS_ATTR, seconds)
        source = trial.user_attrs.get("metabo:source", "")
        state = ("complete" if complete else "pruned") if values else "failed"
        value = f"{values[-1]:.3f}" if values else "-"
        replayed = " replayed" if REPLAYED_ATTR in trial.user_attrs else ""
        self.log_line(
            f"  #{trial.number:<2} {source:<12} {state:<8} {value} epochs={len(values)} "
            f"{seconds:.0f}s{replayed} {trial.params}"
        )
