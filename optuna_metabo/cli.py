"""The ``optuna-metabo`` command line.

Sub-commands: ``demo``, ``priors`` and ``bench run`` / ``bench report`` (``bench`` runs the
harness in ``benchmarks/`` of a clone of the repository; it is not installed with the
package). Exit codes: 0 on success, 1 on a runtime failure (a storage that cannot be opened, an
unknown study, a failed benchmark run), 2 on a usage error (bad arguments). Errors are printed
to stderr as one line, without a traceback; progress bars go to stderr and only appear on a
terminal.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import json
import os
from pathlib import Path
import re
import subprocess
import sys
from typing import Any
from typing import TextIO


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
BENCH_ROOT_ENV = "OPTUNA_METABO_BENCHMARKS"
BENCH_MODULES = {"run": "benchmarks.runner", "report": "benchmarks.report"}
_BENCH_PROGRESS = re.compile(r"^\[bench(?P<prior> prior)? (?P<i>\d+)/(?P<n>\d+)\]")


class CLIError(Exception):
    """A failure to report to the user as one line on stderr, with exit code 1."""


# -------------------------------------------------------------------------------- progress
class ProgressCallback:
    """An Optuna study callback that advances a tqdm progress bar by one per finished trial.

    Args:
        bar: The tqdm bar to advance.
        label: Shown next to the bar, e.g. the study being optimized.
    """

    def __init__(self, bar: Any, label: str) -> None:
        self.bar = bar
        self.label = label

    def __call__(self, study: Any, trial: Any) -> None:
        self.bar.set_description(self.label, refresh=False)
        self.bar.update(1)


def _progress_bar(total: int, enabled: bool | None, desc: str = "") -> Any:
    from tqdm.auto import tqdm

    # disable=None hides the bar when stderr is not a terminal (pipes, CI logs, tests).
    return tqdm(
        total=total, desc=desc, unit="trial", file=sys.stderr, disable=None if enabled else True
    )


# ------------------------------------------------------------------------------------- demo
def _run_demo(
    storage: str, n_prior_trials: int, n_trials: int, seed: int, progress: bool | None
) -> dict[str, list[float]]:
    """``optuna_metabo.demo.run_demo`` with a progress bar over all trials it runs."""
    from optuna_metabo import demo

    _check_storage(storage)
    total = demo.n_missing_prior_trials(storage, n_prior_trials) + 2 * n_trials
    with _progress_bar(total, progress, "demo") as bar:
        return demo.run_demo(
            storage, n_prior_trials, n_trials, seed, lambda label: ProgressCallback(bar, label)
        )


def _check_storage(url: str) -> None:
    """Fails with a one-line message when ``url`` cannot be opened as an Optuna storage."""
    import optuna

    try:
        optuna.storages.get_storage(url)
    except Exception as error:  # Any driver or URL error is a user-facing failure.
        raise CLIError(f"cannot open storage {_redact(url)!r}: {_one_line(error)}") from error


def _demo(args: argparse.Namespace) -> int:
    from optuna_metabo.demo import format_curves

    if args.n_trials < 3 or args.n_prior_trials < 1:
        raise _UsageError("demo needs --n-trials >= 3 and --n-prior-trials >= 1")
    curves = _run_demo(
        args.storage, args.n_prior_trials, args.n_trials, args.seed, not args.no_progress
    )
    print(format_curves(curves))
    for label, curve in curves.items():
        print(f"{label}: best after 3 trials {curve[2]:.4f}, after {len(curve)} {curve[-1]:.4f}")
    print(f"\nInspect both studies and the priors with:\n  optuna-dashboard {args.storage}")
    return EXIT_OK


# ----------------------------------------------------------------------------------- priors
def _json_mapping(option: str, text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"{option} must be a JSON object, e.g. '{{\"epochs\": 5}}': {error}"
        raise _UsageError(message) from error
    if not isinstance(value, dict):
        raise _UsageError(f"{option} must be a JSON object, not {text!r}")
    return value


def _priors(args: argparse.Namespace) -> int:
    import optuna
    from optuna.trial import TrialState

    storage = _open(args.storage)
    names = optuna.get_all_study_names(storage)
    if args.target_like is not None and args.target_like not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise CLIError(f"no study named {args.target_like!r} (studies: {listed})")
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        params = ", ".join(sorted({p for t in done for p in t.params})) or "-"
        directions = ", ".join(d.name.lower() for d in study.directions)
        rows.append((name, directions, f"{len(done)}/{len(trials)}", params))
    print(f"Studies in {_redact(args.storage)}: {len(names)}")
    if rows:
        print(_table(("study", "direction", "complete/all trials", "parameters"), rows))
    if args.target_like is None:
        return EXIT_OK
    print()
    target = optuna.load_study(study_name=args.target_like, storage=storage)
    _print_compatibility(target, storage, args)
    return EXIT_OK


def _open(url: str) -> Any:
    """The storage at ``url``, opened for reading as the sampler opens its priors."""
    from optuna_metabo import open_prior_storage

    return open_prior_storage(url)


def _handling_text(prior: Mapping[str, Any]) -> str:
    """One line on how a prior's parameters differ from the target's and what is done."""
    parts = [
        f"lacks {name} ("
        + (f"default {how['value']!r}" if "value" in how else "unknown: value learned")
        + (f"; {how['note']}" if "note" in how else "")
        + ")"
        for name, how in prior["lacked"].items()
    ]
    parts += [f"extra {name} ({how})" for name, how in prior["extra"].items()]
    return "; ".join(parts) or "none"


def _print_compatibility(target: Any, storage: Any, args: argparse.Namespace) -> None:
    """Prints which studies MetaBOSampler would use as priors for ``target`` and why not,
    from ``MetaBOSampler.explain_priors``: the very matching the sampler does."""
    from optuna_metabo import MetaBOSampler

    sampler = MetaBOSampler(
        prior_storage=storage,
        prior_defaults=_json_mapping("--prior-defaults", args.prior_defaults),
        fixed_params=_json_mapping("--fixed-params", args.fixed_params),
    )
    if not target.trials:
        raise CLIError(
            f"study {target.study_name!r} has no trials, so its search space is unknown"
        )
    explained = sampler.explain_priors(target)
    space = explained["search_space"]
    described = ", ".join(f"{k} ({_describe(v)})" for k, v in space.items())
    print(f"Target search space of {target.study_name!r}: {described or '(empty)'}")
    compatible = [
        (
            u["study_name"],
            f"{u['n_trials_usable']} usable trials of {u['n_trials_total']} in the space",
            _handling_text(u),
        )
        for u in explained["used"]
    ]
    incompatible = [
        (s["study_name"], s["reason"])
        for s in explained["skipped"]
        if s["study_name"] != target.study_name
    ]
    print(f"\nCompatible prior studies for {target.study_name!r}: {len(compatible)}")
    if compatible:
        print(_table(("study", "why", "parameters that differ"), compatible))
    print(f"\nIncompatible studies: {len(incompatible)}")
    if incompatible:
        print(_table(("study", "why not"), incompatible))


def _describe(dist: Any) -> str:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"categorical {list(dist.choices)}"
    kind = type(dist).__name__.replace("Distribution", "").lower()
    log = ", log" if getattr(dist, "log", False) else ""
    return f"{kind} [{dist.low}, {dist.high}]{log}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()
    return "\n".join([head, *lines])


# ------------------------------------------------------------------------------------ bench
def find_benchmarks(root: str | None = None) -> Path:
    """The clone of the repository whose ``benchmarks`` package ``bench`` runs.

    The harness is not part of the installed package (it needs the repository's problems,
    surrogate data and stored results), so ``bench`` works from a clone only.

    Args:
        root: A directory to use instead of searching; its ``benchmarks/`` must exist.

    Searched in order: ``root``, ``$OPTUNA_METABO_BENCHMARKS``, the current directory and its
    parents, and the source tree optuna_metabo was imported from (an editable install).

    Raises:
        CLIError: If no directory with ``benchmarks/runner.py`` and ``benchmarks/report.py``
            is found.
    """
    given = root or os.environ.get(BENCH_ROOT_ENV)
    if given:
        candidates = [Path(given)]
    else:
        cwd = Path.cwd()
        candidates = [cwd, *cwd.parents, Path(__file__).resolve().parents[1]]
    for candidate in candidates:
        package = candidate / "benchmarks"
        if all((package / f"{m.split('.')[-1]}.py").is_file() for m in BENCH_MODULES.values()):
            return candidate.resolve()
    where = given or "the current directory, its parents or the optuna-metabo source tree"
    raise CLIError(
        f"benchmark harness not found: no benchmarks/runner.py and benchmarks/report.py in "
        f"{where}. `optuna-metabo bench` works from a clone of the optuna-metabo repository "
        f"only (the harness is not installed with the package): run it inside the clone, or "
        f"pass --root CLONE (or set {BENCH_ROOT_ENV})."
    )


def _bench(args: argparse.Namespace) -> int:
    module = BENCH_MODULES[args.bench_command]
    forwarded = list(args.forwarded)
    wants_help = any(a in ("-h", "--help") for a in forwarded)
    if wants_help:
        print(
            f"usage: optuna-metabo bench [--root DIR] {args.bench_command} [ARGS ...]\n\n"
            f"Runs `python -m {module} ARGS` of the repository's benchmark harness. Its own "
            "help follows.\n",
            flush=True,
        )
    root = find_benchmarks(args.root)
    command = [sys.executable, "-m", module, *forwarded]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    if args.bench_command == "run" and not wants_help:
        return _run_with_progress(command, env, not args.no_progress)
    return subprocess.call(command, env=env)


def _run_with_progress(command: list[str], env: dict[str, str], progress: bool) -> int:
    """Runs the benchmark runner, turning its ``[bench i/N]`` lines into progress bars.

    Without a terminal (or with ``progress`` false) every line is passed through unchanged;
    with bars, only progress lines of failed runs are printed. Stdout is inherited.
    """
    from tqdm.auto import tqdm

    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stderr is not None
    bars: dict[str, Any] = {}
    try:
        for line in process.stderr:
            match = _BENCH_PROGRESS.match(line)
            if match is None or not progress:
                _write(sys.stderr, line)
                continue
            desc = "bench priors" if match["prior"] else "bench runs"
            if desc not in bars:
                bars[desc] = tqdm(total=int(match["n"]), desc=desc, file=sys.stderr, disable=None)
            bar = bars[desc]
            if bar.disable:
                _write(sys.stderr, line)
                continue
            bar.update(int(match["i"]) - bar.n)
            if "FAILED" in line:
                tqdm.write(line.rstrip("\n"), file=sys.stderr)
    except KeyboardInterrupt:
        process.terminate()
        raise
    finally:
        for bar in bars.values():
            bar.close()
    return process.wait()


def _write(stream: TextIO, line: str) -> None:
    stream.write(line)
    stream.flush()


# ------------------------------------------------------------------------------------- main
class _UsageError(Exception):
    """A usage error found after parsing; reported like argparse's own (exit code 2)."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _redact(url: str) -> str:
    from optuna_metabo._history.storages import redact_url

    return redact_url(url)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="optuna-metabo",
        description="Meta-learning Bayesian optimization for Optuna.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="Write prior studies, then tune a new task with MetaBOSampler and TPE.",
        description="Write prior studies (once), then tune a new task of the same family with "
        "MetaBOSampler and with TPE, and print best-so-far against trials for both.",
    )
    demo.add_argument("--storage", default="sqlite:///metabo-demo.db", help="Storage URL.")
    demo.add_argument("--n-trials", type=int, default=15, help="Trials per sampler (>= 3).")
    demo.add_argument(
        "--n-prior-trials", type=int, default=30, help="Trials per prior study, if created."
    )
    demo.add_argument("--seed", type=int, default=0, help="Seed of every sampler.")
    demo.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    demo.set_defaults(handler=_demo)

    priors = commands.add_parser(
        "priors",
        help="List the studies of a storage and which can serve as priors for a target.",
        description="List the studies in a storage. With --target-like, tell which of them "
        "MetaBOSampler can use as priors for that study's search space, and why the others "
        "cannot. Only reads the storage.",
    )
    priors.add_argument(
        "--storage", required=True, help="Storage URL, or a journal file path (*.log)."
    )
    priors.add_argument(
        "--target-like", metavar="STUDY", help="A study in the storage whose space to match."
    )
    priors.add_argument(
        "--prior-defaults",
        metavar="JSON",
        help="MetaBOSampler's prior_defaults as a JSON object, e.g. '{\"epochs\": 5}'.",
    )
    priors.add_argument(
        "--fixed-params",
        metavar="JSON",
        help="MetaBOSampler's fixed_params as a JSON object, e.g. '{\"momentum\": 0.9}'.",
    )
    priors.set_defaults(handler=_priors)

    bench = commands.add_parser(
        "bench",
        help="Run benchmarks or write the report (from a clone of the repository only).",
        description="Thin wrappers over the benchmark harness in benchmarks/ of a clone of the "
        "optuna-metabo repository; the harness is not installed with the package, so these "
        "work from a clone only. `bench run ARGS` runs `python -m benchmarks.runner ARGS` with "
        "progress bars, `bench report ARGS` runs `python -m benchmarks.report ARGS`. Use "
        "`bench run --help` for their options.",
    )
    bench.add_argument(
        "--root",
        help="The clone whose benchmarks/ to run (default: the current directory or a parent, "
        f"then the source tree of an editable install; ${BENCH_ROOT_ENV}).",
    )
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    for action, help_text in (
        ("run", "Run the missing benchmark runs (python -m benchmarks.runner)."),
        ("report", "Aggregate stored runs into a report (python -m benchmarks.report)."),
    ):
        sub = bench_commands.add_parser(action, help=help_text, add_help=False)
        if action == "run":
            sub.add_argument("--no-progress", action="store_true")
        sub.set_defaults(handler=_bench, forwards=True, no_progress=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``optuna-metabo``; returns the exit code.

    Args:
        argv: Arguments without the program name (defaults to ``sys.argv[1:]``).
    """
    from optuna_metabo import PriorStudyError

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exit_:  # argparse: --help gives 0, usage errors give 2.
        return int(exit_.code or 0)
    if extra and not getattr(args, "forwards", False):
        return _usage_error(parser, f"unrecognized arguments: {' '.join(extra)}")
    args.forwarded = extra
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args))
    except _UsageError as error:
        return _usage_error(parser, str(error))
    except (CLIError, PriorStudyError, OSError) as error:
        message = str(error) if not isinstance(error, OSError) else _one_line(error)
        print(f"optuna-metabo: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("optuna-metabo: interrupted", file=sys.stderr)
        return 130


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
