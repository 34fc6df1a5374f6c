"""The ``optuna-metabo`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import sys


def _demo(args: argparse.Namespace) -> int:
    from optuna_metabo.demo import format_curves
    from optuna_metabo.demo import run_demo

    curves = run_demo(args.storage, n_trials=args.n_trials, seed=args.seed)
    print(format_curves(curves))
    for label, curve in curves.items():
        print(f"{label}: best after 3 trials {curve[2]:.4f}, after {len(curve)} {curve[-1]:.4f}")
    print(f"\nInspect both studies and the priors with:\n  optuna-dashboard {args.storage}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="optuna-metabo", description="Meta-learning Bayesian optimization for Optuna."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="Write prior studies, then tune a new task with MetaBOSampler and TPE."
    )
    demo.add_argument("--storage", default="sqlite:///metabo-demo.db", help="Storage URL.")
    demo.add_argument("--n-trials", type=int, default=15, help="Trials per sampler.")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``optuna-metabo``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
