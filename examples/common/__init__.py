"""Pieces shared by the example objectives: data loading, the training loop and the CLI."""
