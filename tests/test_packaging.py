"""The package as users get it: one version, a light import, and a wheel that installs.

The slow test builds the sdist and the wheel (``python -m build``), runs ``twine check`` on
them and installs the wheel into a fresh virtual environment, where ``import optuna_metabo``
must not import torch and the ``optuna-metabo`` command must work without the repository.
Run it alone with ``pytest -m slow tests/test_packaging.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

import optuna_metabo


ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "gpytorch", "plotly", "optuna_dashboard", "scipy.optimize")


def _heavy_modules_after(
    code: str, python: str = sys.executable, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> list[str]:
    """The heavy modules that ``code`` leaves imported, run in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return eval(out.stdout.strip().splitlines()[-1])  # a printed list of str


def test_import_and_construction_do_not_import_torch() -> None:
    """Torch and GPyTorch load at the first model fit; the dashboard's modules at its first
    refresh. Importing the package, making a sampler or a callback loads none of them."""
    code = (
        "import optuna_metabo\n"
        "optuna_metabo.MetaBOSampler(seed=0)\n"
        "optuna_metabo.DashboardCallback()\n"
        "import optuna_metabo.cli"
    )
    assert _heavy_modules_after(code) == []


def test_the_version_lives_in_one_place() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "optuna_metabo.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", optuna_metabo.__version__)
    assignments = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "optuna_metabo").rglob("*.py")
        if re.search(r"^__version__\s*=", path.read_text(), flags=re.MULTILINE)
    ]
    assert assignments == ["optuna_metabo/__init__.py"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{optuna_metabo.__version__}]" in changelog


def test_license_matches_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.slow
def test_sdist_and_wheel_build_check_and_install_in_a_fresh_venv(tmp_path: Path) -> None:
    pytest.importorskip("build")
    pytest.importorskip("twine")
    dist = tmp_path / "dist"
    # Nothing of this checkout may leak into the fresh environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    def run(*command: str | Path, cwd: Path = ROOT) -> str:
        done = subprocess.run(
            [str(c) for c in command],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
            env=env,
        )
        assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    # A copy of what the build reads, so that the build writes nothing into this checkout;
    # --no-isolation builds with this environment's setuptools: no download.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "optuna_metabo",
        source / "optuna_metabo",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source)
    version = optuna_metabo.__version__
    wheel = dist / f"optuna_metabo-{version}-py3-none-any.whl"
    sdist = dist / f"optuna_metabo-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)

    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "optuna_metabo",
        f"optuna_metabo-{version}.dist-info",
    }
    assert "optuna_metabo/py.typed" in names
    assert f"optuna_metabo-{version}.dist-info/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"optuna_metabo-{version}.dist-info/METADATA")
    assert b"License-Expression: MIT" in metadata and b"Requires-Dist: torch" in metadata

    # A fresh venv gets the wheel alone; its dependencies come from this environment, after
    # the venv's own site-packages (a .pth line), so the installed copy is the one imported.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = bin_dir / "python"
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site.strip()) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(
        python, "-c", "import optuna_metabo as m; print(m.__file__, m.__version__)", cwd=elsewhere
    )
    assert where.split()[0].startswith(str(venv)) and where.split()[1] == version
    assert _heavy_modules_after("import optuna_metabo", str(python), elsewhere, env) == []
    cli = bin_dir / "optuna-metabo"
    assert "demo" in run(cli, "--help", cwd=elsewhere)
    bench = subprocess.run(
        [str(cli), "bench", "run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
        env=env,
    )
    assert bench.returncode == 1 and "from a clone" in bench.stderr
