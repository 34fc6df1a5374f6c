"""LCBench tasks through the YAHPO Gym ONNX surrogate (``val_accuracy`` at epoch 52, maximized).

The data directory holds ``lcbench/model.onnx``, ``config_space.json`` and ``encoding.json``.
It defaults to ``<repo root>/../shared/data/yahpo`` and is overridden by ``METABO_YAHPO_DIR``.
"""

from __future__ import annotations

from functools import lru_cache
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT
from benchmarks.problems.base import Problem


ENV_VAR = "METABO_YAHPO_DIR"
CONT_ORDER = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
OUTPUTS = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)
MAX_EPOCH = 52


def yahpo_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the YAHPO data directory (the one containing ``lcbench/``).

    Args:
        path: Explicit directory; when ``None``, ``$METABO_YAHPO_DIR`` or the default beside
            the repository root is used.
    """
    raw = path or os.environ.get(ENV_VAR) or REPO_ROOT.parent / "shared" / "data" / "yahpo"
    root = Path(raw).expanduser().resolve()
    return root.parent if root.name == "lcbench" else root


def lcbench_available(path: str | os.PathLike[str] | None = None) -> bool:
    """Return whether the surrogate files are present.

    Args:
        path: Data directory, resolved like :func:`yahpo_dir`.
    """
    return (yahpo_dir(path) / "lcbench" / "model.onnx").is_file()


@lru_cache(maxsize=4)
def _session(model_path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


class LCBench(Problem):
    """Leave-one-task-out transfer on the 34 LCBench tasks of YAHPO Gym.

    Args:
        data_dir: YAHPO data directory (see :func:`yahpo_dir`).
        metric: Output column to optimize (maximized).
    """

    family = "lcbench"

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, metric: str = "val_accuracy"
    ) -> None:
        super().__init__("lcbench", direction="maximize")
        self.data_dir = yahpo_dir(data_dir) / "lcbench"
        if not (self.data_dir / "model.onnx").is_file():
            raise FileNotFoundError(
                f"LCBench surrogate not found in {self.data_dir}; set ${ENV_VAR} to the YAHPO "
                "data directory."
            )
        space = json.loads((self.data_dir / "config_space.json").read_text())
        hps = {hp["name"]: hp for hp in space["hyperparameters"]}
        self._ids: list[str] = list(hps["OpenML_task_id"]["choices"])
        self._hps = hps
        encoding = json.loads((self.data_dir / "encoding.json").read_text())
        self._code = {k: int(v) for k, v in encoding["OpenML_task_id"].items()}
        self._col = OUTPUTS.index(metric)

    def tasks(self) -> list[str]:
        """Return the 34 OpenML task ids."""
        return list(self._ids)

    def default_targets(self) -> list[str]:
        """Eight fixed targets spread over the task list (every fourth task)."""
        return self._ids[::4][:8]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define the seven LCBench hyperparameters with the ranges of ``config_space.json``."""
        params: dict[str, Any] = {}
        for name in CONT_ORDER[1:]:
            hp = self._hps[name]
            log = bool(hp.get("log", False))
            if hp["type"] == "uniform_int":
                params[name] = trial.suggest_int(name, hp["lower"], hp["upper"], log=log)
            else:
                params[name] = trial.suggest_float(name, hp["lower"], hp["upper"], log=log)
        return params

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Predict ``val_accuracy`` (percent) at the last epoch."""
        return float(self.evaluate_many(task, [params])[0])

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Batched surrogate prediction.

        Args:
            task: OpenML task id.
            params: List of configurations.
        """
        session = _session(str(self.data_dir / "model.onnx"))
        x_cat = np.full((len(params), 1), self._code[task], dtype=np.int32)
        x_cont = np.array(
            [[MAX_EPOCH] + [p[name] for name in CONT_ORDER[1:]] for p in params],
            dtype=np.float32,
        )
        inputs = session.get_inputs()
        out = session.run(None, {inputs[0].name: x_cat, inputs[1].name: x_cont})[0]
        return out[:, self._col].astype(float)
