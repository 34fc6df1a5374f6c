"""CASH on the OpenML datasets both YAHPO surrogates cover: an MLP (LCBench) or a tree (rpart).

``model`` is ``"mlp"`` or ``"tree"``. The mlp branch tunes LCBench's 7 parameters and scores
the surrogate's ``val_accuracy`` (as a fraction) after :data:`MLP_EPOCH` epochs; the tree
branch tunes rpart's 4 and scores ``acc`` at ``trainsize = 1``, ``repl = 10`` and
``impute.median``. Each task is one OpenML dataset (maximized accuracy).

**Why the MLP trains for** :data:`MLP_EPOCH` **epochs, not 52.** At LCBench's last epoch the
MLP branch holds the best configuration on every one of the 30 datasets (28 of 30 by the best
of 2,000 random configurations per branch), so the choice of ``model`` would not matter. With
a tight training budget for the MLP, each branch is best on a fair share of the datasets:
:data:`MLP_SHARES` gives, per epoch, on how many datasets the MLP branch is best, by the best
of 2,000 random configurations per branch and by the best after the local search of the
regret bounds (:func:`~benchmarks.regret.estimate_bounds`, run on each branch alone). At 2
epochs the MLP is best on 10 (random) or 19 (refined) of the 30, the tree on the others: the
tree wins more often at random, the MLP at its optimum, the trap of a conditional space.

**Task map.** LCBench keys its tasks by OpenML *task* id, ``rbv2_rpart`` by OpenML *dataset*
id. :data:`DATASETS` maps each LCBench task to its dataset (name, id). The names of the
LCBench tasks are those of the LCBench data (Zimmer, Lindauer, Hutter, TPAMI 2021, the
``data_2k`` learning curves, one OpenML task per dataset), the dataset ids those of OpenML
(``https://www.openml.org/d/<id>``). This list was cross-checked against public listings:
task id to name as the LCBench wrappers of ``benchmark_apis`` and ``mf-prior-bench`` list
them, and name to dataset id in the OpenML-CC18 and AutoML-benchmark lists (for example the
35 LCBench dataset ids in the alphabetical order of their names, and Auto-PyTorch's tests).
The network was not reachable here, so it was not read back from the OpenML server. The
LCBench tasks that are not in ``rbv2_rpart`` (covertype 1596, airlines 1169, albert 41147,
dionis 41167) are left out; numerai28.6 (task 167083) is not in LCBench's config space.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks.problems.base import Problem
from benchmarks.problems.lcbench import OUTPUTS as LCBENCH_OUTPUTS
from benchmarks.problems.lcbench import PARAMS as MLP_PARAMS
from benchmarks.problems.rbv2_rpart import PARAMS as TREE_PARAMS
from benchmarks.problems.yahpo import Surrogate


__all__ = ["CASH", "DATASETS", "MLP_EPOCH"]
#: LCBench (OpenML) task id -> (dataset name, OpenML dataset id).
DATASETS: dict[str, tuple[str, str]] = {
    "3945": ("KDDCup09_appetency", "1111"),
    "34539": ("Amazon_employee_access", "4135"),
    "126025": ("adult", "1590"),
    "126026": ("nomao", "1486"),
    "126029": ("bank-marketing", "1461"),
    "146212": ("shuttle", "40685"),
    "167104": ("Australian", "40981"),
    "167149": ("kr-vs-kp", "3"),
    "167152": ("mfeat-factors", "12"),
    "167161": ("credit-g", "31"),
    "167168": ("vehicle", "54"),
    "167181": ("kc1", "1067"),
    "167184": ("blood-transfusion-service-center", "1464"),
    "167185": ("cnae-9", "1468"),
    "167190": ("phoneme", "1489"),
    "167200": ("higgs", "23512"),
    "167201": ("connect-4", "40668"),
    "168329": ("helena", "41169"),
    "168330": ("jannis", "41168"),
    "168331": ("volkert", "41166"),
    "168335": ("MiniBooNE", "41150"),
    "168868": ("APSFailure", "41138"),
    "168908": ("christine", "41142"),
    "168910": ("fabert", "41164"),
    "189862": ("jasmine", "41143"),
    "189865": ("sylvine", "41146"),
    "189905": ("car", "40975"),
    "189906": ("segment", "40984"),
    "189908": ("Fashion-MNIST", "40996"),
    "189909": ("jungle_chess_2pcs_raw_endgame_complete", "41027"),
}
MLP_EPOCH = 2
#: Epochs of the MLP -> (datasets of 30 whose best of 2,000 random configurations per branch
#: is an MLP, the same after the local search of the bounds); seed 0 for both.
MLP_SHARES = {1: (1, 3), 2: (10, 19), 3: (15, 26), 52: (28, 30)}
MODELS = ("mlp", "tree")
IMPUTE = "impute.median"
TRAINSIZE, REPL = 1.0, 10


class CASH(Problem):
    """Leave-one-dataset-out transfer over a ``model`` choice with branch-only parameters.

    Task ids are OpenML dataset ids (strings). The space is ``model`` in ``{"mlp", "tree"}``,
    then the 7 LCBench parameters (mlp) or the 4 rpart parameters (tree), with the ranges of
    the surrogates' config spaces; no parameter is shared by the branches.

    Args:
        data_dir: YAHPO data directory (see :func:`~benchmarks.problems.yahpo.yahpo_dir`).
        mlp_epoch: Training epochs of the MLP branch (1 .. 52).
    """

    family = "cash"
    #: Eight targets: in the order of :data:`DATASETS`, the first four datasets that each
    #: branch wins by at least 0.015 in accuracy, both by the best of 2,000 random
    #: configurations per branch and after the local search (tree: Amazon_employee_access,
    #: bank-marketing, shuttle, kr-vs-kp; mlp: adult, nomao, mfeat-factors, cnae-9).
    TARGETS = ("4135", "1590", "1486", "1461", "40685", "3", "12", "1468")

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, mlp_epoch: int = MLP_EPOCH
    ) -> None:
        super().__init__("cash", direction="maximize")
        self.mlp = Surrogate("lcbench", data_dir)
        self.tree = Surrogate("rbv2_rpart", data_dir)
        self.mlp_epoch = mlp_epoch
        self._mlp_code = self.mlp.codes["OpenML_task_id"]
        self._tree_code = self.tree.codes["task_id"]
        self._impute = self.tree.codes["num.impute.selected.cpo"][IMPUTE]
        self._task_of = {dataset: task for task, (_, dataset) in DATASETS.items()}
        missing = [
            f"{name} (task {task}, dataset {dataset})"
            for task, (name, dataset) in DATASETS.items()
            if task not in self.mlp.choices("OpenML_task_id")
            or dataset not in self.tree.choices("task_id")
        ]
        if missing:
            raise ValueError(f"YAHPO surrogates lack the CASH datasets {', '.join(missing)}.")

    def tasks(self) -> list[str]:
        """Return the 30 OpenML dataset ids, in the order of :data:`DATASETS`."""
        return [dataset for _, dataset in DATASETS.values()]

    def default_targets(self) -> list[str]:
        """The eight targets of :attr:`TARGETS`."""
        return list(self.TARGETS)

    def dataset_name(self, task: str) -> str:
        """The OpenML name of dataset ``task``.

        Args:
            task: OpenML dataset id.
        """
        return DATASETS[self._task_of[task]][0]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define ``model`` and the parameters of the chosen branch."""
        model = trial.suggest_categorical("model", list(MODELS))
        surrogate, names = (self.mlp, MLP_PARAMS) if model == "mlp" else (self.tree, TREE_PARAMS)
        return {"model": model, **{name: surrogate.suggest(trial, name) for name in names}}

    def evaluate(self, task: str, params: dict[str, Any]) -> float:
        """Predict the accuracy (0-1) of ``params`` on dataset ``task``."""
        return float(self.evaluate_many(task, [params])[0])

    def evaluate_many(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        """Batched prediction, one surrogate call per branch.

        Args:
            task: OpenML dataset id.
            params: List of configurations.
        """
        values = np.full(len(params), np.nan)
        mlp = [i for i, p in enumerate(params) if p["model"] == "mlp"]
        tree = [i for i, p in enumerate(params) if p["model"] == "tree"]
        if mlp:
            values[mlp] = self._mlp_accuracy(task, [params[i] for i in mlp])
        if tree:
            values[tree] = self._tree_accuracy(task, [params[i] for i in tree])
        return values

    def _mlp_accuracy(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        x_cat = np.full((len(params), 1), self._mlp_code[self._task_of[task]])
        # (n, 8): the epoch, then the 7 parameters in the surrogate's order.
        x_cont = np.array([[self.mlp_epoch] + [p[name] for name in MLP_PARAMS] for p in params])
        out = self.mlp.predict(x_cat, x_cont)[:, LCBENCH_OUTPUTS.index("val_accuracy")]
        return out.astype(float) / 100.0

    def _tree_accuracy(self, task: str, params: list[dict[str, Any]]) -> np.ndarray:
        x_cat = np.tile([self._tree_code[task], self._impute], (len(params), 1))
        # (n, 6): the 4 parameters, then trainsize and repl.
        x_cont = np.array([[p[name] for name in TREE_PARAMS] + [TRAINSIZE, REPL] for p in params])
        return self.tree.predict(x_cat, x_cont)[:, 0].astype(float)
