"""optuna-dashboard output: ``DashboardCallback`` writes a study note and plotly figures. It
reads only the study, ``MetaBOSampler``'s public methods (``prior_summary``, ``prior_fronts``,
``last_proposal``), the vocabulary and the public Pareto helpers."""
