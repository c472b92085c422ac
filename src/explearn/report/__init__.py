"""Reports drawn from aggregated results: ``results.csv``, ``search.csv``, ``summary.md`` and PNG figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from explearn.files import atomic_path, atomic_write
from explearn.report.figures import FIGURES, draw
from explearn.report.tables import render_summary
from explearn.results import (aggregate, agreement, agreement_differences, collect, paired_differences,
                              reference_differences, reference_pairs)


def render(report_dir: str | Path) -> Path:
    """(Re-)render the report in ``report_dir`` from its manifest and stored runs; no training. Returns the path
    of ``summary.md``."""
    report_dir = Path(report_dir)
    results = collect(report_dir)
    manifest = results.manifest
    runs = results.runs
    stats_parts, diff_parts = [], []
    if not runs.empty:
        for name, spec in manifest["specs"].items():
            metrics = [m for m in _metrics(spec) if m != "agreement"]
            part = runs[runs["experiment"] == name]
            stats_parts.append(aggregate(part, metrics))
            if spec.get("baseline"):
                diff_parts.append(paired_differences(part, spec["baseline"], metrics))
            if spec.get("reference"):
                parts = spec["setting_parts"]
                diff_parts.append(reference_differences(part, name, spec["reference"], parts, metrics))
                diff_parts.append(agreement_differences(
                    results, "", pairs=reference_pairs(runs, name, spec["reference"], parts)))
        for baseline in {spec.get("baseline") for spec in manifest["specs"].values()} - {None}:
            agree = agreement_differences(results, baseline)
            if not agree.empty:
                own = agree["experiment"].map(lambda e: manifest["specs"][e].get("baseline")) == baseline
                diff_parts.append(agree[own])
        stats_parts.append(agreement(results))
    stats = pd.concat([p for p in stats_parts if not p.empty], ignore_index=True) if stats_parts else pd.DataFrame(
        columns=["experiment", "setting", "method", "metric", "n", "mean", "std", "ci_low", "ci_high"])
    diffs = pd.concat([p for p in diff_parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in diff_parts) else pd.DataFrame()
    search = pd.DataFrame(manifest.get("search") or [])

    # every file written atomically: two launches of one sweep may render the same report at once
    for name, table in (("results.csv", results.eval_runs()), ("search.csv", search), ("aggregate.csv", stats)):
        with atomic_path(report_dir / name) as tmp:
            table.to_csv(tmp, index=False)
    figures = []
    for name, spec in manifest["specs"].items():
        for kind in spec.get("figures", []):
            made = draw(kind, results, stats, name, spec, report_dir / "figures")
            if made:
                figures.append(made)
    path = report_dir / "summary.md"
    atomic_write(path, render_summary(manifest, stats, diffs, search, len(results.missing), figures))
    return path


def _metrics(spec: dict) -> list[str]:
    headline = spec["headline"]
    headline = [headline] if isinstance(headline, str) else list(headline)
    return list(dict.fromkeys([*headline, "test/acc", "val/acc", "test/align", "epochs_to_95"]))


__all__ = ["FIGURES", "render"]
