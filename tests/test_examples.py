"""End-to-end tests of the example objectives and workflow scripts, on tiny offline data.

Every objective trains for real (a few epochs of a tiny model on a few hundred examples), so
these tests check that training lowers the loss or beats chance, that the metric lands in the
trial, that pruning works, and that the workflow scripts run at their smallest size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import subprocess
import sys
from typing import Any

import pytest


pytest.importorskip("datasets")
pytest.importorskip("sklearn")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import datasets  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
import torch  # noqa: E402

from examples import accuracy_vs_time  # noqa: E402
from examples import build_history  # noqa: E402
from examples import digits_family  # noqa: E402
from examples import families  # noqa: E402
from examples import tune_with_priors  # noqa: E402
from examples.common import data as data_lib  # noqa: E402
from examples.common import training  # noqa: E402
from examples.image_cnn import CNNObjective  # noqa: E402
from examples.image_resnet import ResNetObjective  # noqa: E402


CONTROLS = {
    "lr_plateau": True,
    "lr_plateau_factor": 0.5,
    "lr_plateau_patience": 1,
    "early_stopping_patience": 4,
}
CNN_PARAMS = {
    "learning_rate": 3e-3,
    "batch_size": 32,
    "epochs": 3,
    "weight_decay": 1e-5,
    "momentum": 0.9,
    "optimizer": "Adam",
    "n_conv_layers": 2,
    "base_filters": 8,
    "dense_units": 32,
    "dropout_rate": 0.1,
    **CONTROLS,
}
RESNET_PARAMS = {
    "learning_rate": 0.05,
    "batch_size": 32,
    "epochs": 2,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "optimizer": "SGD",
    "blocks_per_stage": 1,
    "width": 8,
    **CONTROLS,
}
TEXT_PARAMS = {
    "learning_rate": 5e-3,
    "batch_size": 16,
    "epochs": 3,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    **CONTROLS,
}
TINY_TEXT: dict[str, Any] = {
    "max_length": 32,
    "vocab_size": 800,
    "hidden_size": 32,
    "num_layers": 1,
}


class AlwaysPrune(optuna.pruners.BasePruner):
    """Prunes every trial at its first report."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


@pytest.fixture(autouse=True, scope="module")
def _quiet_and_small() -> None:
    torch.set_num_threads(2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def digits_task() -> data_lib.TaskData:
    return data_lib.load_task_data(
        "digits-0to4", "image", max_train_samples=300, max_eval_samples=150
    )


@pytest.fixture(scope="module")
def text_task() -> data_lib.TaskData:
    return data_lib.load_task_data(
        "stdlib_docs-files-network", "text", max_train_samples=256, max_eval_samples=128
    )


def run_one(
    objective: Any, params: dict[str, Any], pruner: optuna.pruners.BasePruner | None = None
) -> optuna.trial.FrozenTrial:
    """Runs one trial of ``objective`` with ``params`` and returns it."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=1)
    return study.trials[0]


def assert_trained(trial: optuna.trial.FrozenTrial, chance: float) -> None:
    """Checks that a completed trial trained, beat chance and recorded its metrics."""
    assert trial.state == TrialState.COMPLETE
    history = trial.user_attrs["history"]
    assert len(history) == trial.params["epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert trial.value == pytest.approx(max(h["accuracy"] for h in history))
    assert trial.value is not None and trial.value > chance
    assert sorted(trial.intermediate_values) == list(range(len(history)))
    assert 0.0 <= trial.user_attrs["f1"] <= 1.0
    assert trial.user_attrs["n_parameters"] > 0


@pytest.mark.slow
def test_cnn_objective_trains(digits_task: data_lib.TaskData) -> None:
    objective = CNNObjective(digits_task, max_epochs=3, device="cpu")
    assert_trained(run_one(objective, CNN_PARAMS), chance=0.5)


@pytest.mark.slow
def test_cnn_objective_trains_with_the_adaptive_optimizer(
    digits_task: data_lib.TaskData,
) -> None:
    objective = CNNObjective(digits_task, max_epochs=3, device="cpu")
    trial = run_one(objective, {**CNN_PARAMS, "optimizer": "adaptive", "lr_plateau": False})
    assert_trained(trial, chance=0.5)
    learning_rates = trial.user_attrs["learning_rates"]
    assert learning_rates == [h["lr"] for h in trial.user_attrs["history"]]
    assert len(learning_rates) == 3
    assert learning_rates[-1] != pytest.approx(CNN_PARAMS["learning_rate"])  # adapted


def test_optimizer_choices() -> None:
    assert "adaptive" in CNNObjective.OPTIMIZERS and "adaptive" in ResNetObjective.OPTIMIZERS
    assert {"Adam", "SGD", "RMSprop"} <= set(ResNetObjective.OPTIMIZERS)
    assert digits_family.DIGITS_OPTIMIZERS == ("Adam", "SGD", "RMSprop")
    task = data_lib.load_task_data("digits-5to9-n100", "image", max_eval_samples=50)
    fixed = CNNObjective(task, optimizers=["SGD"], max_epochs=1, device="cpu")
    study = optuna.create_study(direction="maximize")
    study.optimize(fixed, n_trials=1)
    assert study.trials[0].params["optimizer"] == "SGD"
    assert len(study.trials[0].user_attrs["learning_rates"]) == study.trials[0].params["epochs"]


@pytest.mark.slow
def test_resnet_objective_trains(digits_task: data_lib.TaskData) -> None:
    objective = ResNetObjective(digits_task, max_epochs=2, device="cpu")
    assert_trained(run_one(objective, RESNET_PARAMS), chance=0.3)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bert-tiny", "distilbert-tiny", "roberta-tiny"])
def test_text_objective_trains(text_task: data_lib.TaskData, model: str) -> None:
    pytest.importorskip("transformers")
    from examples.text_bert import TextClassificationObjective

    objective = TextClassificationObjective(
        text_task, model=model, max_epochs=3, device="cpu", metric="f1", **TINY_TEXT
    )
    trial = run_one(objective, TEXT_PARAMS)
    assert trial.state == TrialState.COMPLETE
    history = trial.user_attrs["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert trial.value == pytest.approx(max(h["f1"] for h in history))
    assert 0.0 <= trial.user_attrs["accuracy"] <= 1.0
    # Warmup ramps the learning rate up to the suggested peak within the first epoch.
    assert history[0]["lr"] == pytest.approx(TEXT_PARAMS["learning_rate"])


def test_text_search_space_ranges(text_task: data_lib.TaskData) -> None:
    pytest.importorskip("transformers")
    from examples.text_bert import PRETRAINED_LR_RANGE
    from examples.text_bert import TextClassificationObjective
    from examples.text_bert import TINY_LR_RANGE

    objective = TextClassificationObjective(text_task, **TINY_TEXT)
    trial = optuna.create_study().ask()
    params, model_params = objective.suggest(trial)
    assert params.batch_size in (16, 32) and 1 <= params.epochs <= 5
    assert model_params == {}
    dist = trial.distributions["learning_rate"]
    assert isinstance(dist, optuna.distributions.FloatDistribution) and dist.log
    assert (dist.low, dist.high) == TINY_LR_RANGE
    assert PRETRAINED_LR_RANGE == (1e-5, 5e-4)  # the spec's range for pretrained models


@pytest.mark.slow
def test_pruning_marks_trial_pruned(digits_task: data_lib.TaskData) -> None:
    objective = CNNObjective(digits_task, max_epochs=3, device="cpu")
    trial = run_one(objective, CNN_PARAMS, pruner=AlwaysPrune())
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    assert len(trial.user_attrs["history"]) == 1


def _toy_fit(lr: float, controls: training.TrainingControls, epochs: int) -> Any:
    """Fits a linear classifier on a fixed toy problem."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(4, 2)
    loader = training.TensorLoader({"x": x, "labels": y}, 16)
    return training.fit(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        loader,
        loader,
        forward=lambda m, b: m(b["x"]),
        epochs=epochs,
        device=torch.device("cpu"),
        controls=controls,
    )


def test_early_stopping_and_plateau_schedule() -> None:
    stalled = _toy_fit(
        0.0,
        training.TrainingControls(lr_plateau=True, plateau_factor=0.5, early_stopping_patience=2),
        epochs=10,
    )
    assert stalled.stopped_early and len(stalled.history) == 3
    assert [h["lr"] for h in stalled.history] == [0.0, 0.0, 0.0]
    plateau = _toy_fit(
        1e-5, training.TrainingControls(lr_plateau=True, plateau_factor=0.5), epochs=3
    )
    lrs = [h["lr"] for h in plateau.history]  # recorded before each epoch's plateau step
    assert lrs == pytest.approx([1e-5, 1e-5, 5e-6])
    learning = _toy_fit(0.5, training.TrainingControls(), epochs=5)
    assert learning.best_value > 0.8 and not learning.stopped_early


def test_device_and_precision() -> None:
    assert training.resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert training.resolve_device("auto").type == expected
    assert training.amp_dtype(torch.device("cpu")) is None
    if torch.cuda.is_available():
        assert training.amp_dtype(torch.device("cuda")) in (torch.bfloat16, torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cnn_objective_on_cuda(digits_task: data_lib.TaskData) -> None:
    objective = CNNObjective(digits_task, max_epochs=3, device="cuda")
    assert_trained(run_one(objective, CNN_PARAMS), chance=0.5)


def test_digits_variants() -> None:
    variant = data_lib.parse_digits_variant("digits-odd-n120-noise30")
    assert variant == data_lib.DigitsVariant(classes=(1, 3, 5, 7, 9), n_train=120, noise=0.3)
    splits = data_lib.digits_splits("digits-3to5-n60")
    assert len(splits["train"]) == 60
    assert set(splits["validation"]["label"]) == {0, 1, 2}
    with pytest.raises(ValueError, match="Unknown token"):
        data_lib.parse_digits_variant("digits-rotated")


def test_local_files(tmp_path: Path) -> None:
    texts = data_lib.stdlib_docs_splits("stdlib_docs-math-files")["train"].select(range(40))
    as_strings = texts.map(lambda e: {"topic": texts.features["label"].int2str(e["label"])})
    as_strings.remove_columns("label").to_csv(tmp_path / "docs.csv")
    as_strings.to_json(tmp_path / "docs.jsonl")
    as_strings.to_parquet(tmp_path / "docs.parquet")
    for name in ("docs.csv", "docs.jsonl", "docs.parquet"):
        task = data_lib.load_task_data(
            "docs", "text", data_files=[str(tmp_path / name)], label_column="topic"
        )
        assert task.num_labels == 2
        assert task.train.column_names == ["text", "label"]
        assert len(task.train) + len(task.validation) == 40
    pixels = {f"pixel{i}": [i % 7 * 30] * 20 for i in range(16)}
    datasets.Dataset.from_dict({"label": [i % 3 for i in range(20)], **pixels}).to_csv(
        tmp_path / "pixels.csv"
    )
    images = data_lib.load_task_data("px", "image", data_files=[str(tmp_path / "pixels.csv")])
    x, y = data_lib.image_tensors(images.train)
    assert x.shape[1:] == (1, 4, 4) and float(x.max()) <= 1.0 and images.num_labels == 3


def test_digits_family_api() -> None:
    assert set(digits_family.HISTORY_TASKS) < set(digits_family.TASKS)
    assert digits_family.study_name("digits-odd") == "cnn-digits-odd"
    objective = digits_family.make_objective("digits-5to9-n100", max_epochs=1, seed=0)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=2)
    values = [t.value for t in study.trials]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in values)
    again = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    again.optimize(objective, n_trials=2)
    assert [t.value for t in again.trials] == values  # deterministic on the CPU


def test_family_cli_runs_a_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'single.db'}"
    study = families.run_family_cli(
        "resnet",
        ["--dataset", "digits-0to4", "--max-train-samples", "100", "--max-eval-samples", "50",
         "--max-epochs", "1", "--n-trials", "1", "--storage", storage, "--device", "cpu"],
    )  # fmt: skip
    assert study.study_name == "resnet-digits-0to4"
    assert study.trials[0].state == TrialState.COMPLETE


@pytest.fixture(scope="module")
def history_storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    storage = f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.db'}"
    build_history.main(
        ["--family", "cnn", "--datasets", "digits-0to4", "digits-5to9", "--n-trials", "3",
         "--max-epochs", "1", "--max-train-samples", "120", "--max-eval-samples", "60",
         "--storage", storage, "--pruner", "none", "--device", "cpu"],
    )  # fmt: skip
    return storage


@pytest.mark.slow
def test_build_history(history_storage: str) -> None:
    assert sorted(optuna.get_all_study_names(history_storage)) == [
        "cnn-digits-0to4",
        "cnn-digits-5to9",
    ]
    study = optuna.load_study(study_name="cnn-digits-0to4", storage=history_storage)
    assert len(study.trials) == 3
    # A second run tops up instead of adding trials.
    build_history.main(
        ["--datasets", "digits-0to4", "--n-trials", "3", "--storage", history_storage]
    )
    study = optuna.load_study(study_name="cnn-digits-0to4", storage=history_storage)
    assert len(study.trials) == 3


def _tune(history_storage: str, tmp_path: Path, samplers: list[str]) -> dict[str, Any]:
    summary_path = tmp_path / "summary.json"
    summary = tune_with_priors.main(
        ["--family", "cnn", "--dataset", "digits-odd-n100", "--prior-storage", history_storage,
         "--storage", f"sqlite:///{tmp_path / 'new.db'}", "--n-trials", "3", "--seeds", "0",
         "--samplers", *samplers, "--max-epochs", "1", "--max-eval-samples", "60",
         "--target", "0.2", "--summary-json", str(summary_path), "--device", "cpu"],
    )  # fmt: skip
    assert json.loads(summary_path.read_text())["dataset"] == "digits-odd-n100"
    return summary


@pytest.mark.slow
def test_tune_with_priors_tpe(
    history_storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = _tune(history_storage, tmp_path, ["tpe"])
    curve = summary["curves"]["tpe"][0]
    assert len(curve) == 3 and all(a <= b for a, b in zip(curve, curve[1:]))
    out = capsys.readouterr().out
    assert "Best-so-far" in out and "optuna-dashboard sqlite:///" in out
    assert summary["trials_to_target"][0.2]["tpe"][0] is not None


@pytest.mark.slow
def test_tune_with_priors_metabo(history_storage: str, tmp_path: Path) -> None:
    try:
        from optuna_metabo import MetaBOSampler  # noqa: F401
    except ImportError as error:
        pytest.skip(f"MetaBOSampler is not available yet: {error}")
    summary = _tune(history_storage, tmp_path, ["metabo", "tpe"])
    assert summary["prior_studies"] == ["cnn-*"]
    assert len(summary["curves"]["metabo"][0]) == 3
    assert not math.isnan(summary["curves"]["metabo"][0][-1])


@pytest.mark.slow
def test_prior_resolution_leaves_out_the_new_task(history_storage: str) -> None:
    resolved = tune_with_priors.resolve_prior_studies(
        ["cnn-*"], history_storage, exclude="cnn-digits-0to4"
    )
    assert resolved == ["cnn-digits-5to9"]
    with pytest.raises(SystemExit):
        tune_with_priors.resolve_prior_studies(["resnet-*"], history_storage, exclude="x")


@pytest.mark.slow
def test_scripts_help(capsys: pytest.CaptureFixture[str]) -> None:
    for main in (tune_with_priors.main, lambda argv: families.run_family_cli("bert", argv)):
        with pytest.raises(SystemExit) as exit_info:
            main(["--family", "bert", "--help"] if main is tune_with_priors.main else ["--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "--max-epochs" in out and "--model" in out
    result = subprocess.run(
        [sys.executable, "-m", "examples.build_history", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--datasets" in result.stdout and "--device" in result.stdout


@pytest.mark.slow
def test_accuracy_vs_time_transfers_two_objectives_and_a_constraint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'mo.db'}"
    study = accuracy_vs_time.main(
        ["--storage", storage, "--n-prior-trials", "4", "--n-trials", "3", "--max-epochs", "1",
         "--max-parameters", "15000"]
    )  # fmt: skip
    assert study.metric_names == ["accuracy", "seconds"]
    assert sorted(optuna.get_all_study_names(storage)) == [
        "mo-digits-0to4", "mo-digits-5to9", study.study_name
    ]  # fmt: skip
    # The history's Pareto fronts come first (model trials once they run out).
    assert study.trials[0].user_attrs["metabo:source"] == "prior_design"
    for trial in study.trials:
        (constraint,) = trial.system_attrs["constraints"]
        assert constraint == trial.user_attrs["n_parameters"] - 15000
    summary = study.sampler.prior_summary()
    assert [u["outputs"] for u in summary["used"]] == [
        "accuracy <- accuracy, seconds <- seconds, constraint 0 (by name)"
    ] * 2
    assert "Pareto front of" in capsys.readouterr().out
