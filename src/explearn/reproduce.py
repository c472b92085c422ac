"""``reproduce(collection, preset)``: run a collection of experiment specs end to end into a report folder.

Two phases, both resumable sweeps into ``OUT/runs``: first the hyperparameter search (each candidate on the
search seeds; the best mean validation score wins, per experiment, setting and method, and each selection protocol
the runs recorded makes its own choice: ``explearn.selection``), then the evaluation runs with the chosen values
on the evaluation seeds. ``OUT/manifest.json`` records which run belongs where, the search
table and the choices; the report is rendered from it and the stored runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from explearn.files import atomic_write
from explearn.planning import Planned, plan_eval, plan_search
from explearn.search import choose, choose_lexicographic
from explearn.selection import DELTA
from explearn.specs import ExperimentSpec, collection_cluster, experiments_dir, load_specs
from explearn.store import RunStore
from explearn.execution import SweepOutcome
from explearn.sweep import run_sweep

CLUSTER_ENV = "EXPLEARN_CLUSTER"  # a Dask scheduler address, used when no cluster is passed


def choose_all(specs: list[ExperimentSpec], plan: list[Planned], store: RunStore) -> tuple[dict, list[dict]]:
    """The chosen candidate per (experiment, setting, method) under the train-like protocol (the validation
    split's ``search_metric``), and the search table (one row per candidate; rows of the other protocols carry
    their name in ``protocol``). The other protocols' choices are keyed (experiment, setting, method,
    protocol) in the same dict (``choose_by_protocol``)."""
    metric_of = {s.name: s.get("search_metric", "val/acc") for s in specs}
    scores: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    for p in plan:
        cell = scores.setdefault((p.experiment, p.setting, p.method), {})
        results = cell.setdefault(p.candidate, [])
        if store.is_done(p.run.run_id):
            results.append(store.load(p.run.run_id))
    chosen, table = {}, []
    for (experiment, setting, method), cell in scores.items():
        metric = metric_of[experiment]
        values = {cand: [float(r["metrics"][metric]) for r in results] for cand, results in cell.items()}
        try:
            best, _ = choose(values)
        except ValueError:
            best = None
        chosen[(experiment, setting, method)] = best
        for cand, vals in values.items():
            table.append({"experiment": experiment, "setting": setting, "method": method, "candidate": cand,
                          "metric": metric, "n": len(vals), "mean": sum(vals) / len(vals) if vals else None,
                          "chosen": cand == best, "protocol": "train_like"})
        for protocol, (best, rows) in choose_by_protocol(cell, metric).items():
            chosen[(experiment, setting, method, protocol)] = best
            table += [{"experiment": experiment, "setting": setting, "method": method, **row} for row in rows]
    return chosen, table


def choose_by_protocol(cell: dict[str, list[dict]], metric: str) -> dict[str, tuple[str | None, list[dict]]]:
    """The ``oracle`` and ``explanation`` protocols' choices among one cell's candidates (stored search results
    per candidate key), where the runs recorded them (``explearn.selection``): ``oracle`` by ``metric`` read on
    ``val_oracle`` at the last epoch; ``explanation`` by ``search.choose_lexicographic`` over each run's
    explanation-chosen epoch (score ``metric``, reliance = ``metric`` minus the same on val_intervened). Returns protocol ->
    (chosen key or None, search-table rows)."""
    out: dict[str, tuple[str | None, list[dict]]] = {}
    oracle_metric = metric.replace("val/", "val_oracle/", 1)
    for protocol in ("oracle", "explanation"):
        runs = {cand: [r["protocols"][protocol]["metrics"] for r in results if protocol in r.get("protocols", {})]
                for cand, results in cell.items()}
        if not any(runs.values()):
            continue
        read = oracle_metric if protocol == "oracle" else metric
        values = {cand: [float(m[read]) for m in ms] for cand, ms in runs.items()}
        try:
            if protocol == "oracle":
                best, _ = choose(values)
            else:
                intervened = metric.replace("val/", "val_intervened/", 1)  # the same score on both
                reliance = {cand: [float(m[metric]) - float(m[intervened]) for m in ms] for cand, ms in runs.items()}
                best, _ = choose_lexicographic(values, reliance, DELTA)
        except ValueError:
            best = None
        rows = [{"candidate": cand, "metric": read, "n": len(vals), "mean": sum(vals) / len(vals) if vals else None,
                 "chosen": cand == best, "protocol": protocol} for cand, vals in values.items()]
        out[protocol] = (best, rows)
    return out


def reproduce(collection: str = "paper", preset: str = "quick", out: str | Path = "reports/paper",
              workers: int | None = None, only: list[str] | None = None,
              log: Callable[[str], None] = print, cluster: str | None = None,
              option: str = "out") -> tuple[list[Path], SweepOutcome]:
    """Run the specs of ``collection`` at ``preset`` into ``out`` and render the report(s).

    Every run of every spec goes through one search sweep and one evaluation sweep into ``out/runs``, so runs
    shared by specs are trained once. Specs with ``report = "together"`` (the paper's) share one report in
    ``out``; specs with ``report = "apart"`` (the ablation studies) get ``out/<spec name>/`` each.

    Args:
        collection: a shipped collection ("paper", "ablations") or a folder of spec files.
        preset: smoke, quick or full.
        out: the report folder; runs are stored in ``out/runs`` and reused by later calls. Checked before
            anything is planned or written (``check_out``).
        workers: worker processes (default one per core; 0 = in this process).
        only: names of the specs to run (default all).
        cluster: address of a Dask scheduler to train on (``tcp://host:port``), or "local" for local worker
            processes; default: ``$EXPLEARN_CLUSTER``, else the ``cluster`` entry of the collection's
            ``_defaults.toml``, else local processes. Where runs train changes no run id and no result.
        option: how messages name ``out`` (the command line: ``--out``).

    Returns:
        The paths of the ``summary.md`` files written and the outcome of the sweeps (failed runs with their
        tracebacks). A report none of whose evaluation runs finished is not rendered (its files stay as they
        were; ``explearn.report.check_runs_stored``).

    Raises:
        ConfigError: ``out`` is not a folder ``reproduce`` may write (``check_out``); nothing is written then.
        ClusterError: the cluster cannot be used (finished runs stay stored; a relaunch resumes).
    """
    from explearn.report import NoStoredRuns, render

    folder = experiments_dir(collection)
    specs = load_specs(folder, preset, only)
    out = Path(out)
    check_out(out, folder, specs, option)  # before hours of training, not after
    store = RunStore(out / "runs")
    start = time.perf_counter()
    reports = _reports(out, specs)
    cluster = resolve_cluster(cluster, folder)
    if cluster:
        log(f"training on the Dask scheduler at {cluster}")

    search = [p for spec in specs for p in plan_search(spec)]
    _write_manifests(out, reports, folder, preset, search, {}, [], None)
    log(f"search: {len({p.run.run_id for p in search})} runs")
    first = run_sweep([p.run for p in search], store, workers, _progress(log, "search"), cluster, log=log)
    chosen, table = choose_all(specs, search, store)

    evaluation = [p for spec in specs for p in plan_eval(spec, chosen)]
    _write_manifests(out, reports, folder, preset, search + evaluation, chosen, table, None)
    log(f"evaluation: {len({p.run.run_id for p in evaluation})} runs")
    second = run_sweep([p.run for p in evaluation], store, workers, _progress(log, "evaluation"), cluster, log=log)

    outcome = first.merge(second)
    seconds = time.perf_counter() - start
    _write_manifests(out, reports, folder, preset, search + evaluation, chosen, table,
                     {"seconds": seconds, "trained": len(outcome.trained), "skipped": len(outcome.skipped),
                      "by_other_launch": len(outcome.by_other), "failed": sorted(outcome.failed),
                      "specs": [s.name for s in specs]})
    summaries = []
    for path in reports:
        try:
            summaries.append(render(path))
        except NoStoredRuns:  # every evaluation run failed: keep the report that was there, say why below
            log(f"{path}: not rendered: none of its evaluation runs finished (their failures follow)")
    log(f"{outcome.describe()} in {seconds:.0f} s")
    return summaries, outcome


#: the keys by which a manifest.json is recognised as one that ``reproduce`` wrote
MANIFEST_KEYS = ("collection", "preset", "specs", "entries")


def check_out(out: Path, folder: Path, specs: list[ExperimentSpec], option: str = "out") -> None:
    """Check that ``reproduce`` may write its report(s) and runs into ``out`` (docs/user-guide.md, "From the shell").

    ``out`` must neither be, hold nor lie inside the collection's folder ``folder``; ``out`` and each report
    folder of ``specs`` in it (``out/<spec name>`` for specs reported apart) must be new, empty, or a folder that
    ``reproduce`` wrote (``is_report_folder``): its files are then the ones it replaces, and its finished runs are
    reused. A file where ``out`` or ``out/runs`` should be is refused too.

    Raises:
        ConfigError: naming ``option`` and the folder, and listing what is there; nothing is written.
    """
    from explearn.errors import ConfigError
    from explearn.outputs import check_output_folder, check_own_folder

    check_output_folder(out, option, read_folders=[folder],
                        reason="a report and its runs written there would mix with the spec files")
    what = "a report folder that `explearn reproduce` wrote (its manifest.json names specs and entries)"
    for path in dict.fromkeys([out, *_reports(out, specs)]):
        check_own_folder(path, option, ours=is_report_folder, what=what)
    if (out / "runs").exists() and not (out / "runs").is_dir():
        raise ConfigError(f"{option} {out}: {out / 'runs'} is a file; runs are stored in that folder: choose another "
                          f"folder for the report")


def is_report_folder(path: Path) -> bool:
    """Whether ``reproduce`` wrote the folder ``path``: its ``manifest.json`` is a JSON object with
    ``MANIFEST_KEYS``, or (a collection reported apart, e.g. the ablation studies) it holds nothing but ``runs/``
    and at least one folder with such a manifest (names starting with a dot not counted)."""
    from explearn.outputs import json_with

    manifest = json_with(*MANIFEST_KEYS)
    if manifest(path / "manifest.json"):
        return True
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    reports = [p for p in entries if p.is_dir() and manifest(p / "manifest.json")]
    return bool(reports) and all(p in reports or (p.name == "runs" and p.is_dir()) for p in entries)


def resolve_cluster(cluster: str | None, folder: Path) -> str | None:
    """The scheduler address to train on, None for local processes: ``cluster`` if given ("local" means local),
    else ``$EXPLEARN_CLUSTER``, else the collection's ``_defaults.toml``."""
    if cluster is None:
        cluster = os.environ.get(CLUSTER_ENV) or collection_cluster(folder)
    return None if not cluster or cluster.strip().lower() == "local" else cluster.strip()


def _reports(out: Path, specs: list[ExperimentSpec]) -> dict[Path, list[ExperimentSpec]]:
    """Report folder -> its specs: ``out`` for the specs reported together, ``out/<name>`` for each one apart."""
    reports: dict[Path, list[ExperimentSpec]] = {}
    for spec in specs:
        reports.setdefault(out / spec.name if spec["report"] == "apart" else out, []).append(spec)
    return reports


def _write_manifests(out: Path, reports: dict[Path, list[ExperimentSpec]], folder: Path, preset: str,
                     plan: list[Planned], chosen: dict, table: list[dict], timing: dict | None) -> None:
    for path, specs in reports.items():
        names = {s.name for s in specs}
        _write_manifest(path, folder, preset, specs, [p for p in plan if p.experiment in names],
                        {k: v for k, v in chosen.items() if k[0] in names},
                        [row for row in table if row["experiment"] in names], timing,
                        runs=os.path.relpath(out / "runs", path))


def _write_manifest(out: Path, folder: Path, preset: str, specs: list[ExperimentSpec], plan: list[Planned],
                    chosen: dict, table: list[dict], timing: dict | None, runs: str = "runs") -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "collection": _shown(folder), "preset": preset, "runs": runs,
        "specs": {s.name: {**s.raw, "settings": [st.label for st in s.settings],
                           "setting_values": {st.label: dict(st.values) for st in s.settings},
                           "setting_parts": {st.label: {"point": st.point, "variant": st.variant}
                                             for st in s.settings}} for s in specs},
        "entries": [p.entry() for p in plan],
        "chosen": [{"experiment": k[0], "setting": k[1], "method": k[2], "candidate": c,
                    "protocol": k[3] if len(k) > 3 else "train_like"} for k, c in chosen.items()],
        "search": table, "timing": timing,
    }
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=1, default=str))  # two launches may write at once


def _shown(folder: Path) -> str:
    """A collection folder as a report names it: relative to the working folder when inside it (``experiments/paper``,
    not this machine's absolute path), else as it is."""
    try:
        return Path(os.path.abspath(folder)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(folder)


def _progress(log: Callable[[str], None], phase: str) -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] > 10:
            last[0] = now
            log(f"  {phase}: {done}/{total} runs")

    return report
