"""Runnable deep-learning objectives and the history-to-new-task workflow for optuna-metabo.

Run the scripts as modules from the repository root, e.g. ``python -m examples.image_cnn --help``.
See ``examples/README.md``.
"""
