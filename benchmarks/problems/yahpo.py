"""Shared access to YAHPO Gym ONNX surrogates: data directory, config space, encoding, session.

The data directory holds one folder per scenario (``lcbench/``, ``rbv2_rpart/``), each with
``model.onnx``, ``config_space.json`` and ``encoding.json``. It defaults to
``<repo root>/../shared/data/yahpo`` and is overridden by ``METABO_YAHPO_DIR``.
"""

from __future__ import annotations

from functools import lru_cache
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT


ENV_VAR = "METABO_YAHPO_DIR"
SCENARIOS = ("lcbench", "rbv2_rpart")


def yahpo_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the YAHPO data directory (the one containing ``lcbench/``).

    Args:
        path: Explicit directory; when ``None``, ``$METABO_YAHPO_DIR`` or the default beside
            the repository root is used. A scenario folder is accepted too.
    """
    raw = path or os.environ.get(ENV_VAR) or REPO_ROOT.parent / "shared" / "data" / "yahpo"
    root = Path(raw).expanduser().resolve()
    return root.parent if root.name in SCENARIOS else root


def scenario_available(scenario: str, path: str | os.PathLike[str] | None = None) -> bool:
    """Return whether the surrogate of ``scenario`` is present.

    Args:
        scenario: Scenario folder name, e.g. ``"rbv2_rpart"``.
        path: Data directory, resolved like :func:`yahpo_dir`.
    """
    return (yahpo_dir(path) / scenario / "model.onnx").is_file()


@lru_cache(maxsize=4)
def onnx_session(model_path: str) -> Any:
    """Return a cached single-threaded CPU ONNX Runtime session.

    Args:
        model_path: Path of the ``.onnx`` file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


class Surrogate:
    """One YAHPO scenario: its hyperparameters, categorical encoding and ONNX model.

    Args:
        scenario: Scenario folder name.
        data_dir: YAHPO data directory (see :func:`yahpo_dir`).
    """

    def __init__(self, scenario: str, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = yahpo_dir(data_dir) / scenario
        if not (self.dir / "model.onnx").is_file():
            raise FileNotFoundError(
                f"YAHPO {scenario} surrogate not found in {self.dir}; set ${ENV_VAR} to the "
                "YAHPO data directory."
            )
        space = json.loads((self.dir / "config_space.json").read_text())
        self.hps: dict[str, dict[str, Any]] = {hp["name"]: hp for hp in space["hyperparameters"]}
        encoding = json.loads((self.dir / "encoding.json").read_text())
        self.codes = {k: {c: int(i) for c, i in v.items()} for k, v in encoding.items()}

    def choices(self, name: str) -> list[str]:
        """Return the choices of the categorical hyperparameter ``name``.

        Args:
            name: Hyperparameter name, e.g. the task id column.
        """
        return list(self.hps[name]["choices"])

    def suggest(self, trial: Any, name: str) -> Any:
        """Suggest the numeric hyperparameter ``name`` with its range and log scale.

        Args:
            trial: Optuna trial or :class:`~benchmarks.problems.base.RandomTrial`.
            name: Hyperparameter name.
        """
        hp = self.hps[name]
        log = bool(hp.get("log", False))
        if hp["type"] == "uniform_int":
            return trial.suggest_int(name, hp["lower"], hp["upper"], log=log)
        return trial.suggest_float(name, hp["lower"], hp["upper"], log=log)

    def predict(self, x_cat: np.ndarray, x_cont: np.ndarray) -> np.ndarray:
        """Run the model on encoded categorical and raw continuous inputs (batch first).

        Args:
            x_cat: Integer codes, shape ``(n, n_cat)``.
            x_cont: Raw continuous values, shape ``(n, n_cont)``.
        """
        session = onnx_session(str(self.dir / "model.onnx"))
        inputs = session.get_inputs()
        feed = {
            inputs[0].name: np.asarray(x_cat, dtype=np.int32),
            inputs[1].name: np.asarray(x_cont, dtype=np.float32),
        }
        return np.asarray(session.run(None, feed)[0])
