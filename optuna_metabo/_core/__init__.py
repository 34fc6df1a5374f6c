"""The numeric core on arrays, like Optuna's ``optuna/_gp``: the search space's encoding, the
multi-task GP (``model``), the acquisition functions, their optimizer, Pareto fronts, the
imputation of unfinished trials, and the proposal engines that chain them. It knows nothing of
Optuna studies and imports nothing else of the package; its plain data types (``types``) are
torch-free."""
