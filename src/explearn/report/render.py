"""Render a report folder from its manifest and stored runs: ``results.csv``, ``search.csv``, ``aggregate.csv``,
``summary.md`` and the PNG figures; no training."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from explearn.errors import ConfigError
from explearn.files import atomic_path, atomic_write
from explearn.report.figures import draw
from explearn.report.tables import render_summary
from explearn.report.verdict_table import verdict_section
from explearn.results import (Results, aggregate, agreement, agreement_differences, collect, paired_differences,
                              protocol_runs, reference_differences, reference_pairs)


class NoStoredRuns(ConfigError):
    """None of a report's evaluation runs is stored: rendering it would replace its tables with empty ones."""


def check_runs_stored(report_dir: str | Path, results: Results) -> None:
    """Refuse to render a report none of whose evaluation runs is stored (e.g. a committed report: its ``runs/``
    is not committed), since that would empty its tables. A report with some runs missing renders, and says so.

    Raises:
        NoStoredRuns: naming the runs folder, the damaged results if any, and the command that regenerates them.
    """
    stored = set(results.eval_runs()["run_id"]) if not results.runs.empty else set()
    if any(e["role"] == "eval" and e["run_id"] in stored for e in results.manifest["entries"]):
        return
    runs_dir = os.path.normpath(results.runs_dir)
    damaged = {e["run_id"] for e in results.missing if e["role"] == "eval"} & set(results.damaged)
    why = f"the runs of this report are not in {runs_dir} (run folders are not committed)"
    if damaged:
        first = sorted(damaged)[0]
        why = (f"none of the evaluation runs of this report is readable in {runs_dir}: {len(damaged)} have a damaged "
               f"result.json ({results.damaged[first]}{', ...' if len(damaged) > 1 else ''}), the others are not there")
    raise NoStoredRuns(f"{report_dir}: {why}; re-rendering would empty its tables: nothing was changed; rerun "
                       f"`{regenerate_command(report_dir, results.manifest)}` to regenerate them")


def regenerate_command(report_dir: str | Path, manifest: dict) -> str:
    """The ``explearn reproduce`` command that (re)trains the runs of the report in ``report_dir`` and renders it
    again, from its manifest: e.g. ``explearn reproduce paper --preset quick --out reports/paper``, and
    ``... ablations --preset quick --out reports/ablations --only loss`` for a study reported apart."""
    collection = Path(manifest["collection"])
    name = collection.name if collection.parent.name == "experiments" else str(collection)  # a shipped collection
    report_dir = Path(os.path.normpath(report_dir))
    out = Path(os.path.normpath(report_dir / manifest.get("runs", "runs"))).parent  # OUT holds OUT/runs
    only = "".join(f" --only {spec}" for spec in manifest["specs"]) if out != report_dir else ""
    return f"explearn reproduce {name} --preset {manifest['preset']} --out {out}{only}"


def render(report_dir: str | Path, results: Results | None = None) -> Path:
    """(Re-)render the report in ``report_dir`` from its manifest and stored runs; no training. Returns the path
    of ``summary.md``.

    Args:
        results: the report's ``collect(report_dir)``, if already loaded (``explearn report`` checks every folder
            before writing any).

    Raises:
        NoStoredRuns: none of the report's evaluation runs is stored (``check_runs_stored``); nothing is written.
        DataError: a damaged ``manifest.json`` (``explearn.results.read_manifest``).
    """
    report_dir = Path(report_dir)
    results = collect(report_dir) if results is None else results
    check_runs_stored(report_dir, results)
    manifest = results.manifest
    runs = results.runs
    stats_parts, diff_parts = [], []
    if not runs.empty:
        for name, spec in manifest["specs"].items():
            metrics = [m for m in _metrics(spec) if m != "agreement"]
            part = runs[runs["experiment"] == name]
            epochs = spec.get("epochs")  # the bound of epoch counts (epochs_to_95); absent in hand-made manifests
            stats_parts.append(aggregate(part, metrics, epochs))
            if spec.get("baseline"):
                diff_parts.append(paired_differences(part, spec["baseline"], metrics, epochs))
            for protocol, columns in protocol_metrics(part, spec).items():
                mine = protocol_runs(part, protocol)  # the runs of this protocol's hyperparameter choices
                stats_parts.append(aggregate(mine, columns, epochs))
                if spec.get("baseline"):
                    diff_parts.append(paired_differences(mine, spec["baseline"], columns, epochs))
            if spec.get("reference"):
                parts = spec["setting_parts"]
                diff_parts.append(reference_differences(part, name, spec["reference"], parts, metrics, epochs))
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
    evaluated = runs[runs["role"].isin(["eval", "protocol"])] if not runs.empty else runs  # role "protocol": a
    # candidate only another selection protocol chose (docs/design.md, "Selection protocols")
    for name, table in (("results.csv", evaluated), ("search.csv", search), ("aggregate.csv", stats)):
        with atomic_path(report_dir / name) as tmp:
            table.to_csv(tmp, index=False)
    figures = []
    for name, spec in manifest["specs"].items():
        for kind in spec.get("figures", []):
            made = draw(kind, results, stats, name, spec, report_dir / "figures")
            if made:
                figures.append(made)
    path = report_dir / "summary.md"
    devices = runs["device"].value_counts().to_dict() if "device" in runs and not runs.empty else {}
    atomic_write(path, render_summary(manifest, stats, diffs, search, results.missing_runs(), figures,
                                      results.damaged, verdict_section(manifest, runs), devices))
    return path


def protocol_metrics(runs, spec: dict) -> dict[str, list[str]]:
    """The columns of the selection-protocol table that these runs have, per protocol: its first headline metric,
    its shortcut reliance and its all-tied flag."""
    from explearn.selection import PROTOCOLS

    headline = _metrics(spec)[0]
    out = {p: [f"{p}:{m}" for m in (headline, "shortcut/reliance", "all_tied")] for p in PROTOCOLS}
    out = {p: [c for c in cols if c in runs.columns and runs[c].notna().any()] for p, cols in out.items()}
    return {p: cols for p, cols in out.items() if cols}


def _metrics(spec: dict) -> list[str]:
    headline = spec["headline"]
    headline = [headline] if isinstance(headline, str) else list(headline)
    return list(dict.fromkeys([*headline, "test/acc", "val/acc", "test/align", "epochs_to_95"]))

