"""The ``optuna-metabo`` command line: every command, its help, exit codes and error messages."""

from __future__ import annotations

import io
from pathlib import Path
import subprocess
import sys

import optuna
from optuna.trial import create_trial
import pytest

from optuna_metabo.cli import _run_with_progress
from optuna_metabo.cli import CLIError
from optuna_metabo.cli import find_benchmarks
from optuna_metabo.cli import main
from optuna_metabo.cli import ProgressCallback


ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ help and usage
@pytest.mark.parametrize("argv", [[], ["demo"], ["priors"], ["bench"]])
def test_help_of_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: optuna-metabo")
    assert "--help" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required: COMMAND"),
        (["nope"], "invalid choice"),
        (["priors"], "required: --storage"),
        (["demo", "--n-trials", "x"], "invalid int value"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["demo", "--n-trials", "1"], "--n-trials >= 3"),
        (["bench"], "required: ACTION"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_console_entry_point_exit_codes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "optuna_metabo.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert run("--help").returncode == 0
    assert run("priors").returncode == 2
    missing = run("priors", "--storage", f"sqlite:///{tmp_path / 'missing.db'}")
    assert missing.returncode == 1
    assert missing.stderr.startswith("optuna-metabo: error: ")
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "missing.db").exists()


# ------------------------------------------------------------------------------------- demo
@pytest.mark.slow
def test_demo_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = f"sqlite:///{tmp_path / 'demo.db'}"
    argv = ["demo", "--storage", storage, "--n-trials", "3", "--n-prior-trials", "4"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["trial", "MetaBOSampler", "TPESampler"]
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert lines[4].startswith("MetaBOSampler: best after 3 trials ")
    assert lines[5].startswith("TPESampler: best after 3 trials ")
    assert lines[-1] == f"  optuna-dashboard {storage}"
    names = set(optuna.get_all_study_names(storage))
    assert {"demo-task-a", "demo-new-task-MetaBOSampler-seed0"} <= names
    # The demo shows the dashboard note of the MetaBOSampler study only (DashboardCallback).
    from optuna_dashboard import get_note

    metabo = optuna.load_study(study_name="demo-new-task-MetaBOSampler-seed0", storage=storage)
    tpe = optuna.load_study(study_name="demo-new-task-TPESampler-seed0", storage=storage)
    assert "MetaBOSampler: transfer from prior studies" in get_note(metabo)
    assert get_note(tpe) == ""


def test_demo_unreachable_storage(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg2://nobody@127.0.0.1:1/none"
    assert main(["demo", "--storage", url, "--n-trials", "3"]) == 1
    err = capsys.readouterr().err
    assert "cannot open storage" in err and "nobody" not in err and "Traceback" not in err


def test_progress_callback_advances_the_bar() -> None:
    from tqdm import tqdm

    with tqdm(total=2, file=io.StringIO(), disable=False) as bar:
        callback = ProgressCallback(bar, "MetaBOSampler")
        callback(None, None)
        callback(None, None)
        assert bar.n == 2 and bar.desc.startswith("MetaBOSampler")


# ----------------------------------------------------------------------------------- priors
def _add(study: optuna.Study, params: dict, distributions: dict, value: float = 1.0) -> None:
    study.add_trial(create_trial(params=params, distributions=distributions, value=value))


@pytest.fixture()
def prior_storage(tmp_path: Path) -> str:
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution as Float

    url = f"sqlite:///{tmp_path / 'priors.db'}"
    space = {"x": Float(0, 1), "y": Float(1e-3, 1, log=True)}
    target = optuna.create_study(storage=url, study_name="target")
    _add(target, {"x": 0.5, "y": 0.1}, space)
    good = optuna.create_study(storage=url, study_name="good")
    for x in (0.1, 0.2, 2.0):  # 2.0 lies far outside the target range.
        _add(good, {"x": x, "y": 0.01}, {"x": Float(0, 3), "y": space["y"]})
    lacking = optuna.create_study(storage=url, study_name="lacking")
    _add(lacking, {"x": 0.3}, {"x": space["x"]})
    kind = optuna.create_study(storage=url, study_name="categorical-y")
    _add(kind, {"x": 0.3, "y": "a"}, {"x": space["x"], "y": Cat(["a", "b"])})
    multi = optuna.create_study(storage=url, study_name="multi", directions=["minimize"] * 2)
    multi.add_trial(
        create_trial(params={"x": 0.1}, distributions={"x": space["x"]}, values=[1.0, 2.0])
    )
    optuna.create_study(storage=url, study_name="empty")
    return url


def test_priors_lists_studies(prior_storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["priors", "--storage", prior_storage]) == 0
    out = capsys.readouterr().out
    assert "Studies in " in out and ": 6" in out.splitlines()[0]
    assert "good" in out and "minimize, minimize" in out and "3/3" in out


def test_priors_explains_compatibility(
    prior_storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["priors", "--storage", prior_storage, "--target-like", "target"]) == 0
    out = capsys.readouterr().out
    compatible = out.split("Compatible prior studies")[1].split("Incompatible")[0]
    incompatible = out.split("Incompatible studies: ")[1]
    assert "good" in compatible and "2 usable trials of 3" in compatible
    rows = {line.split()[0]: line for line in compatible.splitlines() if line.strip()}
    assert "lacks y (unknown: value learned)" in rows["lacking"]
    assert "categorical with non-numeric choices in this prior" in rows["categorical-y"]
    assert incompatible.startswith("2")
    assert "2 objective(s) and the target 1" in incompatible
    assert "no completed trial" in incompatible
    assert "x (float [0.0, 1.0])" in out and "y (float [0.001, 1.0], log)" in out


def test_priors_shows_defaults_and_fixed_params(
    prior_storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["priors", "--storage", prior_storage, "--target-like", "target"]
    assert main([*argv, "--prior-defaults", '{"y": 0.5}']) == 0
    compatible = capsys.readouterr().out.split("Compatible prior studies")[1]
    assert "lacks y (default 0.5)" in compatible
    assert main([*argv, "--prior-defaults", "[1]"]) == 2
    assert "--prior-defaults must be a JSON object" in capsys.readouterr().err


def test_priors_on_a_journal_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    path = tmp_path / "studies.log"
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="journal-study")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert main(["priors", "--storage", str(path), "--target-like", "journal-study"]) == 0
    assert "journal-study" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target-like", "nope"], "no study named 'nope'"),
        (["--target-like", "empty"], "has no trials"),
    ],
)
def test_priors_user_errors_exit_1(
    prior_storage: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["priors", "--storage", prior_storage, *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_priors_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["priors", "--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("optuna-metabo: error: ") and "Traceback" not in err


# ------------------------------------------------------------------------------------ bench
def test_bench_without_harness_says_it_needs_a_clone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--root", str(tmp_path), "run"]) == 1
    err = capsys.readouterr().err
    assert "benchmark harness not found" in err and "from a clone" in err
    with pytest.raises(CLIError, match="not installed with the package"):
        find_benchmarks(str(tmp_path))
    assert main(["bench", "--help"]) == 0
    assert "clone" in capsys.readouterr().out


def test_bench_progress_passes_lines_and_exit_code(capfd: pytest.CaptureFixture[str]) -> None:
    script = (
        "import sys; print('[bench prior 1/1] prior p', file=sys.stderr); "
        "print('[bench 1/2] done a', file=sys.stderr); print('other', file=sys.stderr); "
        "sys.exit(3)"
    )
    assert _run_with_progress([sys.executable, "-c", script], {}, progress=True) == 3
    err = capfd.readouterr().err
    assert "[bench 1/2] done a" in err and "other" in err  # No terminal: lines pass through.


def _harness() -> Path:
    try:
        return find_benchmarks(str(ROOT))
    except CLIError:
        pytest.skip("benchmarks/ is not in this checkout")


@pytest.mark.parametrize("action, option", [("run", "--problems"), ("report", "--out")])
def test_bench_help_forwards(action: str, option: str, capfd: pytest.CaptureFixture[str]) -> None:
    _harness()
    assert main(["bench", "--root", str(ROOT), action, "--help"]) == 0
    out = capfd.readouterr().out
    assert f"optuna-metabo bench [--root DIR] {action}" in out and option in out


@pytest.mark.slow
def test_bench_run_and_report(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    _harness()
    storage = f"sqlite:///{tmp_path / 'bench.db'}"
    run = ["--problems", "branin", "--samplers", "random", "--targets", "1", "--seeds", "1"]
    run += ["--budget", "3", "--n-priors", "1", "--prior-trials", "3", "--jobs", "1"]
    assert main(["bench", "run", *run, "--storage", storage]) == 0
    names = optuna.get_all_study_names(storage)
    assert any(name.startswith("run-branin-") for name in names)
    report = ["--storage", storage, "--out", str(tmp_path / "out"), "--name", "r"]
    report += ["--cache-dir", str(tmp_path / "cache"), "--bound-samples", "200"]
    assert main(["bench", "report", *report]) == 0
    assert (tmp_path / "out" / "r.md").is_file()
    assert main(["bench", "run", "--no-such-option"]) == 2  # The runner's usage error.
    capfd.readouterr()
