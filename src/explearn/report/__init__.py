"""Reports drawn from aggregated results: ``results.csv``, ``search.csv``, ``summary.md`` and PNG figures.

``render.py`` renders a report folder from its manifest and stored runs; ``tables.py`` writes the markdown tables,
``verdict_table.py`` the verdict tables at the top, ``figures.py`` the PNG figures."""

from explearn.report.figures import FIGURES
from explearn.report.render import NoStoredRuns, check_runs_stored, regenerate_command, render

__all__ = ["FIGURES", "NoStoredRuns", "check_runs_stored", "regenerate_command", "render"]
