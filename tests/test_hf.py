"""Tests of ``optuna_metabo.hf`` and ``examples/hf_trainer.py``: transfer inside
``Trainer.hyperparameter_search(backend="optuna")``.

The end-to-end tests train tiny from-scratch BERT models with the real ``transformers.Trainer``
on a few dozen offline texts.
"""

from __future__ import annotations

from collections.abc import Iterator
import gc
import logging
from pathlib import Path
import subprocess
import sys
from typing import Any

import pytest


transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("datasets")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.study import StudyDirection  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
import torch  # noqa: E402

from examples import hf_trainer  # noqa: E402
from optuna_metabo import MetaBOSampler  # noqa: E402
from optuna_metabo import USER_ATTR_SOURCE  # noqa: E402
from optuna_metabo.hf import EpochPruner  # noqa: E402
from optuna_metabo.hf import hp_search_kwargs  # noqa: E402
from optuna_metabo.hf import metric_direction  # noqa: E402
from optuna_metabo.hf import MetricObjective  # noqa: E402
from optuna_metabo.hf import set_training_arguments  # noqa: E402
from optuna_metabo.hf import TrainerHpSpace  # noqa: E402


HAS_WARMUP_RATIO = "warmup_ratio" in transformers.TrainingArguments.__dataclass_fields__
WARMUP_FIELD = "warmup_ratio" if HAS_WARMUP_RATIO else "warmup_steps"
MAXIMIZE = StudyDirection.MAXIMIZE


@pytest.fixture(autouse=True, scope="module")
def _quiet() -> Iterator[None]:
    torch.set_num_threads(2)
    saved = optuna.logging.get_verbosity(), transformers.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    yield
    optuna.logging.set_verbosity(saved[0])
    transformers.logging.set_verbosity(saved[1])


def training_args(tmp_path: Path, **kwargs: Any) -> Any:
    return transformers.TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, **kwargs
    )


def trainer_cast(args: Any, values: dict[str, Any]) -> dict[str, Any]:
    """What ``Trainer._hp_search_setup`` stores: each value cast to its current value's type."""
    return {k: type(getattr(args, k))(v) for k, v in values.items()}


# ------------------------------------------------------------------------------- objective
@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("eval_loss", "minimize"),
        ("loss", "minimize"),
        ("eval_accuracy", "maximize"),
        ("eval_macro_f1", "maximize"),
        ("eval_f1", "maximize"),
        ("eval_matthews_correlation", "maximize"),
        ("eval_rougeL", "maximize"),
        ("eval_word_error_rate", "minimize"),
        ("eval_wer", "minimize"),
        ("eval_runtime", "minimize"),
        ("eval_samples_per_second", "maximize"),
        ("eval_perplexity", "minimize"),
        ("eval_accuracy_loss", "minimize"),
    ],
)
def test_metric_direction(metric: str, direction: str) -> None:
    assert metric_direction(metric) == direction


def test_metric_direction_unknown_name_asks_for_direction() -> None:
    with pytest.raises(ValueError, match="direction="):
        metric_direction("eval_score")


def test_metric_objective_picks_one_metric_where_the_default_sums_them() -> None:
    from transformers.trainer_utils import default_compute_objective

    metrics = {
        "eval_loss": 0.9,
        "eval_accuracy": 0.75,
        "eval_macro_f1": 0.5,
        "eval_runtime": 3.0,
        "eval_samples_per_second": 100.0,
        "epoch": 2.0,
    }
    assert default_compute_objective(metrics) == pytest.approx(1.25)  # what it fixes
    assert MetricObjective("eval_accuracy")(metrics) == 0.75
    assert MetricObjective("accuracy")(metrics) == 0.75  # the eval_ prefix is optional
    assert MetricObjective("eval_loss")(metrics) == 0.9
    with pytest.raises(ValueError, match=r"no 'eval_f1'.*eval_accuracy, eval_loss"):
        MetricObjective("eval_f1")(metrics)


# ------------------------------------------------------------------------------ arguments
def test_trainer_cast_loses_values_that_set_training_arguments_keeps(tmp_path: Path) -> None:
    args = training_args(tmp_path, weight_decay=0)  # an int where a float is declared
    assert trainer_cast(args, {"weight_decay": 0.05}) == {"weight_decay": 0}  # the problem

    values = set_training_arguments(
        args,
        {
            "learning_rate": 3e-4,
            "weight_decay": 0.05,
            "num_train_epochs": 2,
            "per_device_train_batch_size": 32,
            "warmup_ratio": 0.1,
        },
    )
    expected = {
        "learning_rate": 3e-4,
        "weight_decay": 0.05,
        "num_train_epochs": 2.0,
        "per_device_train_batch_size": 32,
        WARMUP_FIELD: 0.1,
    }
    assert values == expected
    assert {k: getattr(args, k) for k in expected} == expected
    assert trainer_cast(args, values) == expected  # the Trainer's own copy changes nothing
    assert isinstance(args.num_train_epochs, float)
    assert isinstance(args.per_device_train_batch_size, int)


@pytest.mark.skipif(HAS_WARMUP_RATIO, reason="this transformers still has warmup_ratio")
def test_warmup_ratio_becomes_a_fractional_warmup_steps(tmp_path: Path) -> None:
    args = training_args(tmp_path)
    assert args.warmup_steps == 0 and isinstance(args.warmup_steps, int)
    assert trainer_cast(args, {"warmup_steps": 0.1}) == {"warmup_steps": 0}  # the problem
    set_training_arguments(args, {"warmup_ratio": 0.1})
    assert args.warmup_steps == 0.1
    assert args.get_warmup_steps(200) == 20
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        set_training_arguments(args, {"warmup_ratio": 1.0})
    with pytest.raises(ValueError, match="set already"):
        set_training_arguments(args, {"warmup_ratio": 0.1, "warmup_steps": 0.2})


def test_set_training_arguments_rejects_what_the_trainer_would_drop(tmp_path: Path) -> None:
    args = training_args(tmp_path)
    before = args.learning_rate
    with pytest.raises(ValueError, match="'hidden_dropout_prob' is not a field.*model_init"):
        set_training_arguments(args, {"learning_rate": 1e-3, "hidden_dropout_prob": 0.1})
    with pytest.raises(ValueError, match="integer training argument"):
        set_training_arguments(args, {"per_device_train_batch_size": 16.5})
    assert args.learning_rate == before  # nothing is set when anything is wrong
    assert set_training_arguments(args, {"per_device_train_batch_size": 16.0}) == {
        "per_device_train_batch_size": 16
    }
    with pytest.raises(TypeError):
        set_training_arguments({"learning_rate": 1e-3}, {"learning_rate": 1e-3})


def test_trainer_hp_space_works_with_fixed_trials_and_warns_without_evaluation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = training_args(tmp_path, eval_strategy="no")
    hp_space = TrainerHpSpace(hf_trainer.make_hp_space((1e-4, 1e-3), 3), args)
    params = {
        "learning_rate": 5e-4,
        "per_device_train_batch_size": 32,
        "num_train_epochs": 2,
        "weight_decay": 0.01,
        "warmup_ratio": 0.05,
    }
    # Other DDP ranks call hp_space with a FixedTrial of the main rank's trial.params.
    values = hp_space(optuna.trial.FixedTrial(params))
    assert values[WARMUP_FIELD] == 0.05 and args.learning_rate == 5e-4

    def warnings_after(space: TrainerHpSpace, pruner: optuna.pruners.BasePruner) -> int:
        caplog.clear()
        study = optuna.create_study(pruner=pruner)
        with caplog.at_level(logging.WARNING, logger="optuna_metabo.hf"):
            space(study.ask())
            space(study.ask())
        return sum("never prunes" in r.getMessage() for r in caplog.records)

    assert warnings_after(hp_space, optuna.pruners.MedianPruner()) == 1  # once, not per trial
    space = hf_trainer.make_hp_space((1e-4, 1e-3), 3)
    assert warnings_after(TrainerHpSpace(space, args), optuna.pruners.NopPruner()) == 0
    args.eval_strategy = "epoch"
    assert warnings_after(TrainerHpSpace(space, args), optuna.pruners.MedianPruner()) == 0


# --------------------------------------------------------------------------------- kwargs
def make_prior(
    storage: str, name: str, metric: str | None, direction: StudyDirection = MAXIMIZE
) -> None:
    study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    if metric is not None:
        study.set_metric_names([metric])
    for i in range(3):
        study.enqueue_trial({"learning_rate": 1e-4 * (i + 1)})
        study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-2, log=True), 1)


def test_hp_search_kwargs_records_the_metric_and_picks_priors_of_that_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path / 'history.db'}"
    make_prior(storage, "bert-a", "eval_accuracy")
    make_prior(storage, "bert-b", None)  # no metric recorded: kept
    make_prior(storage, "bert-c", "eval_loss", StudyDirection.MINIMIZE)  # another metric: left out
    make_prior(storage, "cnn-a", "eval_accuracy")  # outside the glob

    with caplog.at_level(logging.WARNING, logger="optuna_metabo.hf"):
        kwargs = hp_search_kwargs(
            storage, "bert-new", metric="eval_accuracy", prior_studies="bert-*", seed=3
        )
    assert "'bert-c' optimizes 'eval_loss'" in caplog.text
    assert set(kwargs) == {
        "direction", "compute_objective", "sampler", "pruner", "storage", "study_name",
        "load_if_exists",
    }  # fmt: skip
    # Without a pruner, none: Optuna's default MedianPruner would act on the Trainer's reports.
    assert isinstance(kwargs["pruner"], optuna.pruners.NopPruner)
    assert kwargs["direction"] == "maximize"
    assert kwargs["compute_objective"]({"eval_accuracy": 0.5, "eval_loss": 1.0}) == 0.5
    assert kwargs["storage"] == storage and kwargs["study_name"] == "bert-new"
    assert kwargs["load_if_exists"] is True
    target = optuna.load_study(study_name="bert-new", storage=storage)
    assert target.metric_names == ["eval_accuracy"]
    assert target.direction == MAXIMIZE

    # The Trainer opens the study with these kwargs; the sampler uses exactly the kept priors.
    sampler = kwargs["sampler"]
    assert isinstance(sampler, MetaBOSampler)
    study = optuna.create_study(
        direction=kwargs["direction"],
        **{k: kwargs[k] for k in ("sampler", "storage", "study_name", "load_if_exists")},
    )
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-2, log=True), 1)
    assert study.trials[0].user_attrs[USER_ATTR_SOURCE] == "prior_design"
    assert {u["study_name"] for u in sampler.prior_summary()["used"]} == {"bert-a", "bert-b"}

    # Called again (a second run of the same search): the study is loaded, not duplicated.
    again = hp_search_kwargs(storage, "bert-new", metric="accuracy", prior_studies=["bert-*"])
    assert again["direction"] == "maximize"
    with pytest.raises(ValueError, match="is to maximize, not to minimize"):
        hp_search_kwargs(storage, "bert-new", metric="eval_loss")
    with pytest.raises(ValueError, match="optimizes 'eval_accuracy', not 'eval_f1'"):
        hp_search_kwargs(storage, "bert-new", metric="eval_f1")


def test_hp_search_kwargs_without_priors_is_a_plain_gp_search(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'history.db'}"
    pruner = optuna.pruners.MedianPruner()
    kwargs = hp_search_kwargs(
        storage, "bert-first", prior_studies=["bert-*"], pruner=pruner, n_startup_trials=2
    )
    assert kwargs["direction"] == "minimize"  # eval_loss, the default metric
    assert kwargs["pruner"] is pruner
    study = optuna.create_study(
        direction="minimize", sampler=kwargs["sampler"], storage=storage, study_name="bert-first",
        load_if_exists=True,
    )  # fmt: skip
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) ** 2, 3)
    sources = [t.user_attrs.get(USER_ATTR_SOURCE) for t in study.trials]
    assert sources[-1] == "model" and "prior_design" not in sources
    assert kwargs["sampler"].prior_summary()["used"] == []


def test_importing_the_module_does_not_import_transformers() -> None:
    code = (
        "import sys, optuna_metabo, optuna_metabo.hf; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------ with the Trainer
@pytest.mark.timeout(180)
def test_two_trainer_searches_the_second_starts_from_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metabo_level = logging.getLogger("optuna_metabo").level
    storage = f"sqlite:///{tmp_path / 'hf.db'}"
    first_task, second_task = "stdlib_docs-files-network", "stdlib_docs-math-concurrency"
    studies = hf_trainer.main(
        [
            "--datasets", first_task, second_task, "--n-trials", "3", "--storage", storage,
            "--model", "bert-tiny",
            "--max-train-samples", "96", "--max-eval-samples", "48", "--max-epochs", "2",
            "--max-length", "32", "--vocab-size", "400", "--hidden-size", "32",
            "--num-layers", "1", "--device", "cpu", "--output-dir", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    first, second = studies
    assert logging.getLogger("optuna_metabo").level == metabo_level  # main() restores logging
    assert [s.study_name for s in studies] == [
        f"bert-tiny-{first_task}",
        f"bert-tiny-{second_task}",
    ]
    for study in studies:
        assert study.metric_names == ["eval_accuracy"]
        assert study.direction == MAXIMIZE
        for trial in study.trials:
            assert trial.state == TrialState.COMPLETE
            # The Trainer reported eval_accuracy after every epoch; the value is the last one.
            epochs = trial.params["num_train_epochs"]
            assert len(trial.intermediate_values) == epochs
            assert trial.value == trial.intermediate_values[max(trial.intermediate_values)]
            assert 0.0 <= trial.value <= 1.0

    assert "prior_design" not in {t.user_attrs[USER_ATTR_SOURCE] for t in first.trials}
    opening = second.trials[0]
    assert opening.user_attrs[USER_ATTR_SOURCE] == "prior_design"
    # It re-uses one of the first search's configurations.
    assert any(
        opening.params.keys() == t.params.keys()
        and all(opening.params[k] == pytest.approx(v, rel=1e-9) for k, v in t.params.items())
        for t in first.trials
    )
    out = capsys.readouterr().out
    assert f"study {first.study_name}: priors none" in out
    assert f"study {second.study_name}: priors {first.study_name} (3 trials)" in out
    assert "  #0  prior_design eval_accuracy=" in out


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report and nothing else."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1


@pytest.mark.timeout(180)
def test_trainer_reports_prune_and_hyperparameters_reach_the_arguments(tmp_path: Path) -> None:
    task = hf_trainer.load_text_task(
        "stdlib_docs-files-network", "bert-tiny", max_length=32, vocab_size=400,
        max_train_samples=64, max_eval_samples=32,
    )  # fmt: skip
    trainer = hf_trainer.build_trainer(
        task,
        "bert-tiny",
        output_dir=str(tmp_path),
        max_length=32,
        hidden_size=32,
        num_layers=1,
        device="cpu",
    )

    def hp_space(trial: optuna.Trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 5e-3, log=True),
            "per_device_train_batch_size": trial.suggest_categorical(
                "per_device_train_batch_size", [16, 32]
            ),
            "num_train_epochs": trial.suggest_int("num_train_epochs", 2, 3),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
        }

    storage = f"sqlite:///{tmp_path / 'prune.db'}"
    study, _ = hf_trainer.run_search(
        trainer,
        storage=storage,
        study_name="bert-tiny-prune",
        hp_space=hp_space,
        n_trials=3,
        prior_studies=None,
        pruner=PruneTrialOne(),
    )
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    for trial in study.trials:
        steps_per_epoch = -(-64 // trial.params["per_device_train_batch_size"])
        epochs = 1 if trial.state == TrialState.PRUNED else trial.params["num_train_epochs"]
        # Reported at the global step of each epoch's evaluation; pruned after the first.
        assert sorted(trial.intermediate_values) == [
            steps_per_epoch * (e + 1) for e in range(epochs)
        ]
    assert study.trials[1].params["num_train_epochs"] >= 2  # so pruning cut it short

    # The Trainer ran the last trial with its suggested values, warmup included.
    last = study.trials[-1].params
    assert trainer.args.learning_rate == last["learning_rate"]
    assert trainer.args.per_device_train_batch_size == last["per_device_train_batch_size"]
    assert trainer.args.num_train_epochs == last["num_train_epochs"]
    assert getattr(trainer.args, WARMUP_FIELD) == last["warmup_ratio"]
    assert trainer.state.max_steps == steps_per_epoch * last["num_train_epochs"]
    assert study.trials[2].user_attrs[USER_ATTR_SOURCE] in {"startup", "model"}


# ---------------------------------------------------------------------------- Hyperband
@pytest.fixture
def frozen_gc() -> Iterator[None]:
    """accelerate runs gc.collect() after every trial; frozen, the test's heap costs nothing."""
    gc.freeze()
    yield
    gc.unfreeze()


def _hyperband_decisions(pruner: optuna.pruners.BasePruner, steps_per_epoch: list[int]) -> list:
    """Epoch at which each of 12 trials is pruned (``None``: completed), reporting the same
    curves at ``epoch * steps_per_epoch[i]``."""
    curves = [[0.5 + 0.03 * ((7 * i) % 11) + 0.01 * e for e in range(3)] for i in range(12)]
    study = optuna.create_study(study_name="hb", direction="maximize", pruner=pruner)
    decisions = []
    for curve, per_epoch in zip(curves, steps_per_epoch):
        trial = study.ask()
        pruned_at = None
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch * per_epoch)
            if trial.should_prune():
                pruned_at = epoch
                break
        if pruned_at is None:
            study.tell(trial, curve[-1])
        else:
            study.tell(trial, state=TrialState.PRUNED)
        decisions.append(pruned_at)
    steps = sorted(study.trials[0].intermediate_values)
    assert steps[0] == steps_per_epoch[0]  # the trial keeps its global steps
    return decisions


def test_epoch_pruner_decides_on_epochs_whatever_the_batch_size() -> None:
    hyperband = lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3)  # noqa: E731
    mixed = [4, 2] * 6  # batch 16 and batch 32: 4 and 2 global steps per epoch
    by_epoch = _hyperband_decisions(hyperband(), [1] * 12)
    assert any(d is not None for d in by_epoch) and None in by_epoch
    assert _hyperband_decisions(EpochPruner(hyperband()), mixed) == by_epoch
    assert _hyperband_decisions(hyperband(), mixed) != by_epoch  # what the wrapper fixes
    with pytest.raises(ValueError, match="counts epochs"):
        EpochPruner(EpochPruner(hyperband()))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_trainer_search_with_metabo_and_hyperband_prunes_and_never_repeats(
    tmp_path: Path, frozen_gc: None
) -> None:
    """HyperbandPruner hands the sampler its bracket view of the study; MetaBOSampler reads
    every trial through it, and proposes no configuration twice, pruned ones included."""
    task = hf_trainer.load_text_task(
        "stdlib_docs-files-network", "bert-tiny", max_length=32, vocab_size=400,
        max_train_samples=48, max_eval_samples=24,
    )  # fmt: skip
    trainer = hf_trainer.build_trainer(
        task, "bert-tiny", output_dir=str(tmp_path), max_length=32, hidden_size=32,
        num_layers=1, device="cpu",
    )  # fmt: skip
    storage = f"sqlite:///{tmp_path / 'hb.db'}"
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9)  # global steps
    kwargs = hp_search_kwargs(  # the loss, whose values differ from trial to trial
        storage, "hb", metric="eval_loss", pruner=pruner, seed=0, n_startup_trials=3
    )
    assert kwargs["pruner"] is pruner
    trainer.hyperparameter_search(
        hp_space=TrainerHpSpace(hf_trainer.make_hp_space((1e-4, 5e-3), 3), trainer.args),
        n_trials=8,
        backend="optuna",
        **kwargs,
    )
    trials = optuna.load_study(study_name="hb", storage=storage).trials
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert TrialState.FAIL not in states
    configurations = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configurations)) == len(trials)  # pruned ones are not proposed again
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            assert len(trial.intermediate_values) <= trial.params["num_train_epochs"]
    assert "model" in {t.user_attrs[USER_ATTR_SOURCE] for t in trials[3:]}
