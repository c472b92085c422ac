"""Finished runs as tidy tables, and their aggregates over seeds (mean, std, 95 % CI, paired differences,
pairwise agreement, convergence). Reports are drawn from these tables only."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from explearn.errors import DataError
from explearn.metrics import difference_bounds, epochs_to_fraction, metric_bounds, pairwise_agreement
from explearn.store import RunStore

MANIFEST = "manifest.json"
KEYS = ["experiment", "setting", "method"]


@dataclass
class Results:
    """Tidy tables of one report folder.

    Attributes:
        runs: one row per finished run: experiment, setting, method, seed, role (eval/search), candidate,
            run_id, hparams (JSON), every metric of the run as a column, and ``epochs_to_95``.
        curves: one row per (evaluation run, epoch, split, metric): the per-epoch history.
        predictions: run_id -> {split: predicted classes}, for pairwise agreement.
        examples: (experiment, setting, method) -> the stored example images and attribution maps.
        manifest: the manifest (specs, presets, entries, chosen hyperparameters).
        missing: manifest entries whose run has not finished, failed, or left a damaged ``result.json``.
        damaged: run id -> what is wrong with its ``result.json`` (beside a ``done`` marker); these runs are
            among ``missing``.
        runs_dir: the folder holding the report's runs (``report_dir/runs``, or the shared ``../runs`` of a study).
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    predictions: dict[str, dict[str, list[int]]]
    examples: dict[tuple[str, str, str], dict[str, Any]]
    manifest: dict[str, Any]
    missing: list[dict[str, Any]] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    runs_dir: Path = Path("runs")

    def eval_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["role"] == "eval"]

    def missing_runs(self) -> int:
        """The number of distinct runs missing (specs that share a run name it in several entries)."""
        return len({entry["run_id"] for entry in self.missing})


def collect(report_dir: str | Path) -> Results:
    """Load the manifest and every finished run it names from ``report_dir`` (runs live in ``report_dir/runs``).

    A run whose ``done`` marker stands beside a damaged ``result.json`` (not JSON, or without the fields a run
    stores) counts as missing, and ``Results.damaged`` says what is wrong with it.

    Raises:
        FileNotFoundError: no ``manifest.json`` in ``report_dir``.
        DataError: ``manifest.json`` is damaged (``read_manifest``).
    """
    report_dir = Path(report_dir)
    manifest = read_manifest(report_dir / MANIFEST)
    store = RunStore(report_dir / manifest.get("runs", "runs"))  # ablation studies share ../runs
    rows, curve_rows, predictions, examples, missing, damaged = [], [], {}, {}, [], {}
    for entry in manifest["entries"]:
        if not store.is_done(entry["run_id"]):
            missing.append(entry)
            continue
        result, problem = load_result(store, entry["run_id"], entry["role"])
        if result is None:
            damaged[entry["run_id"]] = problem
            missing.append(entry)
            continue
        row = {**{k: entry[k] for k in ("experiment", "setting", "method", "seed", "role", "run_id")},
               # the protocols whose hyperparameter choice this run is; "*": all (a single candidate, or a
               # manifest written before the protocols chose hyperparameters)
               "protocols": ",".join(entry.get("protocols", ["*"])),
               "candidate": entry.get("candidate", ""), "hparams": json.dumps(result["config"]["hparams"], sort_keys=True),
               "data_seed": result["config"]["data"]["data_seed"], "device": result["config"].get("device", "")}
        row.update({k: v for k, v in result["metrics"].items() if not isinstance(v, (list, dict))})
        row.update(protocol_columns(result))
        history = pd.DataFrame(result["history"])
        split = "test" if ((history["split"] == "test") & (history["metric"] == "acc")).any() else "val"
        curve = history[(history["split"] == split) & (history["metric"] == "acc")].sort_values("epoch")["value"]
        row["epochs_to_95"] = epochs_to_fraction(curve.tolist(), 0.95)
        row["convergence_split"] = split
        row.update(_gradient_summary(history))
        rows.append(row)
        if entry["role"] == "eval":
            history.insert(0, "seed", entry["seed"])
            for key in reversed(KEYS):
                history.insert(0, key, entry[key])
            curve_rows.append(history)
            predictions[entry["run_id"]] = result["predictions"]
            if result.get("examples"):
                examples.setdefault((entry["experiment"], entry["setting"], entry["method"]), result["examples"])
    runs = pd.DataFrame(rows, columns=None if rows else [*KEYS, "seed", "role", "run_id", "candidate"])
    curves = pd.concat(curve_rows, ignore_index=True) if curve_rows else pd.DataFrame()
    return Results(runs, curves, predictions, examples, manifest, missing, damaged, store.root)


#: what every manifest has, and what each of its parts holds (``explearn.reproduce`` writes them)
MANIFEST_KEYS = {"collection": str, "preset": str, "specs": dict, "entries": list}
MANIFEST_SPEC_KEYS = ("headline", "settings", "methods")
ENTRY_KEYS = ("experiment", "setting", "method", "seed", "role", "run_id")
REWRITE = ("it is written by `explearn reproduce`: rerun the command that wrote this folder (same collection, "
           "--preset and --out; finished runs are reused) to rewrite it")


def protocol_runs(runs: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The evaluation runs of ``protocol``'s hyperparameter choice, as evaluation rows (``role`` "eval"): rows whose
    ``protocols`` name it or all protocols ("*")."""
    ev = runs[runs["role"].isin(["eval", "protocol"])]
    if "protocols" not in ev:
        return ev
    mine = ev[ev["protocols"].map(lambda text: text == "*" or protocol in text.split(","))]
    return mine.assign(role="eval")


def protocol_columns(result: dict[str, Any]) -> dict[str, float]:
    """A stored run's selection protocols as flat columns (``explearn.selection``): ``{protocol}:{split/metric}``
    for each metric of the protocol's model, ``{protocol}:selected_epoch`` and ``{protocol}:all_tied`` (1.0 where
    every epoch tied on the protocol's selection value: the protocol could not tell them apart, else 0.0). Runs
    stored before the protocols existed give none."""
    out: dict[str, float] = {}
    epochs = result.get("config", {}).get("epochs")
    for name, entry in (result.get("protocols") or {}).items():
        out.update({f"{name}:{k}": v for k, v in entry["metrics"].items()})
        out[f"{name}:selected_epoch"] = entry["selected_epoch"]
        tied = entry["tied_epochs"]  # None: the protocol compares no value (oracle: the last epoch)
        out[f"{name}:all_tied"] = float(epochs is not None and tied is not None and tied >= epochs)
    return out


def read_manifest(path: Path) -> dict[str, Any]:
    """A report's ``manifest.json``, checked for the parts a report is drawn from.

    Raises:
        FileNotFoundError: no such file.
        DataError: naming the file and what is wrong: empty, not JSON (line and column), not a JSON object, a
            missing or mistyped key, a spec or entry without its fields, an entry of an experiment it has no spec of.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a report folder written by `explearn reproduce`")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: the file is empty; {REWRITE}")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                        f"{REWRITE}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: holds a JSON {type(manifest).__name__}, not the object of a report manifest; "
                        f"{REWRITE}")
    lacking = [key for key in MANIFEST_KEYS if key not in manifest]
    if lacking:
        raise DataError(f"{path}: has no {', '.join(map(repr, lacking))}; {REWRITE}")
    for key, kind in MANIFEST_KEYS.items():
        if not isinstance(manifest[key], kind):
            raise DataError(f"{path}: {key!r} is a JSON {type(manifest[key]).__name__}, not a JSON "
                            f"{_json_type(kind)}; {REWRITE}")
    for name, spec in manifest["specs"].items():
        lacking = [k for k in MANIFEST_SPEC_KEYS if not isinstance(spec, dict) or k not in spec]
        if lacking:
            raise DataError(f"{path}: spec {name!r} has no {', '.join(map(repr, lacking))}; {REWRITE}")
        epochs = spec.get("epochs", 1)  # the bound of epoch counts in the report (metric_bounds)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise DataError(f"{path}: spec {name!r} has 'epochs' {epochs!r}, not a number of epochs >= 1; {REWRITE}")
    for i, entry in enumerate(manifest["entries"]):
        lacking = [k for k in ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
        if lacking:
            raise DataError(f"{path}: entry {i} of 'entries' has no {', '.join(map(repr, lacking))}; {REWRITE}")
        if entry["experiment"] not in manifest["specs"]:
            raise DataError(f"{path}: entry {i} of 'entries' belongs to experiment {entry['experiment']!r}, which "
                            f"has no spec in 'specs'; {REWRITE}")
    if not isinstance(manifest.get("runs", "runs"), str) or not isinstance(manifest.get("search") or [], list):
        raise DataError(f"{path}: 'runs' must be a folder name and 'search' a list; {REWRITE}")
    return manifest


def _json_type(kind: type) -> str:
    return {str: "string", dict: "object", list: "array"}[kind]


def load_result(store: RunStore, run_id: str, role: str = "eval") -> tuple[dict[str, Any] | None, str]:
    """The stored result of a finished run, or (None, what is wrong) when its ``result.json`` is not a usable
    record (``RunStore.read``: the same rule by which a sweep trains such a run again). ``role`` is kept for
    callers; every record holds predictions."""
    record, reason = store.read(run_id)
    return (record, "") if record is not None else (None, f"{store.path(run_id) / 'result.json'}: {reason}")


GRADIENT_LOGS = {"grad_norm_stage1": "grad_stage1", "grad_norm_stage2": "grad_stage2"}


def _gradient_summary(history: pd.DataFrame) -> dict[str, float]:
    """Per run: the gradient norm of each stage (mean over an epoch's steps) averaged over the epochs, and its
    smallest and largest epoch value (``grad_stage1/mean``, ``/min``, ``/max``; stage 2 likewise)."""
    out = {}
    for log, name in GRADIENT_LOGS.items():
        values = history[(history["split"] == "train") & (history["metric"] == log)]["value"]
        if len(values):
            out.update({f"{name}/mean": float(values.mean()), f"{name}/min": float(values.min()),
                        f"{name}/max": float(values.max())})
    return out


def ci95(values: list[float], bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """Two-sided 95 % confidence interval of the mean: Student's t-interval intersected with ``bounds``; NaN for
    fewer than two values.

    The true mean of a metric bounded in [low, high] lies in [low, high] too, so the part of the t-interval outside
    is impossible; cutting it off leaves a set that contains the true mean whenever the t-interval does, i.e. with
    the same coverage. (With two seeds the t-interval of accuracies is often wider than [0, 1], e.g. values 0.55
    and 0.98 give [-1.967, 3.497], shown as [0, 1]: the data say nothing about the mean.)

    Args:
        values: one value per seed (NaN values are left out).
        bounds: (lowest, highest) possible value, e.g. ``explearn.metrics.metric_bounds(metric)``.
    """
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean = sum(values) / n
    sem = statistics.stdev(values) / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * sem
    return float(max(mean - half, bounds[0])), float(min(mean + half, bounds[1]))


def aggregate(runs: pd.DataFrame, metrics: list[str], epochs: int | None = None) -> pd.DataFrame:
    """Mean, std, 95 % CI and count over seeds, per experiment, setting, method and metric (evaluation runs).

    The CI is kept within the metric's possible values (``explearn.metrics.metric_bounds``; see ``ci95``).

    Args:
        epochs: the epochs the runs trained (the spec's ``epochs``): the upper bound of epoch counts such as
            ``epochs_to_95``; None leaves them unbounded above.
    """
    rows = []
    for keys, group in runs[runs["role"] == "eval"].groupby(KEYS, sort=False):
        for metric in metrics:
            if metric not in group:
                continue
            values = [float(v) for v in group[metric].dropna()]
            if not values:  # e.g. stage-2 gradient norms of a method without stage 2
                continue
            lo, hi = ci95(values, metric_bounds(metric, epochs))
            rows.append({**dict(zip(KEYS, keys)), "metric": metric, "n": len(values),
                         "mean": _mean(values), "std": _std(values),
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, baseline: str, metrics: list[str], epochs: int | None = None) -> pd.DataFrame:
    """Method minus baseline method in the same setting on the same seed (paired), with mean, 95 % CI and the
    count of pairs. The CI is kept within the possible differences (``explearn.metrics.difference_bounds``: [-1, 1]
    for accuracies and other shares, [-epochs, epochs] for epoch counts when ``epochs`` is given)."""
    return _paired(runs[runs["role"] == "eval"], method_pairs(runs, baseline), metrics, epochs)


def reference_differences(runs: pd.DataFrame, experiment: str, reference: str, parts: dict[str, dict[str, str]],
                          metrics: list[str], epochs: int | None = None) -> pd.DataFrame:
    """Each variant minus the reference variant, for the same method, scenario / grid point and seed (paired).

    Args:
        parts: setting label -> {"point": scenario and grid part, "variant": variant label} (from the manifest).
        epochs: the epochs the runs trained, bounding differences of epoch counts (see ``paired_differences``).
    """
    return _paired(runs[runs["role"] == "eval"], reference_pairs(runs, experiment, reference, parts), metrics, epochs)


#: (experiment, setting, method) compared with (base setting, base method), and the name of the comparison
Pair = tuple[str, str, str, str, str, str]


def method_pairs(runs: pd.DataFrame, baseline: str) -> list[Pair]:
    """Every method against ``baseline`` within each experiment and setting."""
    ev = runs[runs["role"] == "eval"]
    pairs = []
    for (experiment, setting), group in ev.groupby(["experiment", "setting"], sort=False):
        methods = list(dict.fromkeys(group["method"]))
        if baseline in methods:
            pairs += [(experiment, setting, m, setting, baseline, baseline) for m in methods if m != baseline]
    return pairs


def reference_pairs(runs: pd.DataFrame, experiment: str, reference: str, parts: dict[str, dict[str, str]]) -> list[Pair]:
    """Every variant against the reference variant of the same scenario / grid point, method by method."""
    ev = runs[(runs["role"] == "eval") & (runs["experiment"] == experiment)]
    present = set(zip(ev["setting"], ev["method"]))
    base_of = {p["point"]: label for label, p in parts.items() if p["variant"] == reference}
    pairs = []
    for setting, method in dict.fromkeys(zip(ev["setting"], ev["method"])):
        part = parts.get(setting)
        if part is None or part["variant"] == reference or part["point"] not in base_of:
            continue
        base = base_of[part["point"]]
        if (base, method) in present:
            pairs.append((experiment, setting, method, base, method, f"{reference} (reference)"))
    return pairs


def _paired(ev: pd.DataFrame, pairs: list[Pair], metrics: list[str], epochs: int | None = None) -> pd.DataFrame:
    rows = []
    index = {key: g.set_index("seed") for key, g in ev.groupby(KEYS, sort=False)}
    for experiment, setting, method, base_setting, base_method, label in pairs:
        other, base = index[(experiment, setting, method)], index[(experiment, base_setting, base_method)]
        common = other.index.intersection(base.index)
        for metric in metrics:
            if metric not in other or metric not in base:
                continue
            diffs = [float(other.at[s, metric] - base.at[s, metric]) for s in common]
            diffs = [d for d in diffs if not math.isnan(d)]
            if not diffs:  # the metric does not exist for this method (e.g. stage-2 gradients of standard)
                continue
            lo, hi = ci95(diffs, difference_bounds(metric, epochs))
            rows.append({"experiment": experiment, "setting": setting, "method": method, "baseline": label,
                         "metric": metric, "n": len(diffs), "mean": _mean(diffs), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def agreement(results: Results, split: str = "test") -> pd.DataFrame:
    """Pairwise agreement of the evaluation runs of each (experiment, setting, method) on ``split``.

    ``mean`` is the mean over all pairs of models; ``std`` the standard deviation over pairs (pairs share
    models, so no confidence interval is given); ``n`` the number of models.
    """
    rows = []
    ev = results.eval_runs()
    for keys, group in ev.groupby(KEYS, sort=False):
        preds = [results.predictions[r][split] for r in group["run_id"] if split in results.predictions.get(r, {})]
        if len(preds) < 2:
            continue
        import torch

        tensors = [torch.tensor(p) for p in preds]
        pairs = [pairwise_agreement([a, b]) for i, a in enumerate(tensors) for b in tensors[i + 1:]]
        rows.append({**dict(zip(KEYS, keys)), "metric": "agreement", "n": len(preds),
                     "mean": pairwise_agreement(tensors), "std": _std(pairs),
                     "ci_low": float("nan"), "ci_high": float("nan")})
    return pd.DataFrame(rows)


def agreement_matrix(predictions: list[list[int]]) -> "np.ndarray":
    """Share of points on which models i and j agree, for every pair. Shape: (M, M)."""
    import numpy as np

    p = np.asarray(predictions)
    return np.array([[float((p[i] == p[j]).mean()) for j in range(len(p))] for i in range(len(p))])


def agreement_differences(results: Results, baseline: str, split: str = "test", resamples: int = 2000,
                          pairs: list[Pair] | None = None) -> pd.DataFrame:
    """Agreement of each method minus the baseline's, with a 95 % percentile bootstrap interval.

    Models are resampled by seed, the same seeds for both sides (paired); pairs that resample one model twice
    are left out. The bootstrap uses a fixed random seed, so the interval is reproducible. ``pairs`` (e.g. from
    ``reference_pairs``) replaces the method-against-baseline comparisons.
    """
    import numpy as np

    rows = []
    ev = results.eval_runs()
    ids = {key: g.set_index("seed")["run_id"] for key, g in ev.groupby(KEYS, sort=False)}
    for experiment, setting, method, base_setting, base_method, label in (
            method_pairs(ev, baseline) if pairs is None else pairs):
        mine, theirs = ids[(experiment, setting, method)], ids[(experiment, base_setting, base_method)]
        seeds = sorted(set(mine.index) & set(theirs.index))
        if len(seeds) < 3:
            continue
        mats = [agreement_matrix([results.predictions[m[s]][split] for s in seeds]) for m in (mine, theirs)]
        rng = np.random.default_rng(0)
        diffs = []
        for _ in range(resamples):
            pick = rng.integers(len(seeds), size=len(seeds))
            keep = pick[:, None] != pick[None, :]
            if not keep.any():  # one model drawn every time: no pair to compare
                continue
            diffs.append(mats[0][np.ix_(pick, pick)][keep].mean() - mats[1][np.ix_(pick, pick)][keep].mean())
        upper = np.triu_indices(len(seeds), 1)
        rows.append({"experiment": experiment, "setting": setting, "method": method, "baseline": label,
                     "metric": "agreement", "n": len(seeds),
                     "mean": float(mats[0][upper].mean() - mats[1][upper].mean()),
                     "ci_low": float(np.percentile(diffs, 2.5)), "ci_high": float(np.percentile(diffs, 97.5))})
    return pd.DataFrame(rows)


def mean_curves(curves: pd.DataFrame, split: str = "test", metric: str = "acc") -> pd.DataFrame:
    """Mean and std over seeds of one metric per epoch, per experiment, setting and method."""
    if curves.empty:
        return pd.DataFrame(columns=[*KEYS, "epoch", "mean", "std", "n"])
    sel = curves[(curves["split"] == split) & (curves["metric"] == metric)]
    out = sel.groupby([*KEYS, "epoch"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n"})


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
