"""The Markdown summary: per experiment, headline metrics over seeds beside the paper's numbers, paired
differences to the baseline with a verdict, agreement, and the hyperparameters chosen on validation."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import pandas as pd


def report_methods(spec: Mapping[str, Any]) -> list[str]:
    """Every method a spec runs, in the order its tables list them: the spec's ``methods``, then those that only
    some variants or scenarios run, in the order they first appear there."""
    found = list(spec.get("methods", []))
    for group in ("scenarios", "variants"):
        for entry in spec.get(group) or []:
            if isinstance(entry, Mapping):
                found += list(entry.get("methods", []))
    return list(dict.fromkeys(found))


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; blank for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def fmt_signed(value: float, digits: int = 3) -> str:
    return "" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


#: how the summary's intervals are computed (``explearn.results.ci95``), said once at the top
CI_NOTE = ("95 % confidence intervals of means and of paired differences are Student's t-intervals over seeds, cut "
           "to the values the metric can take ([0, 1] for accuracies, alignment, wrong-reason score and agreement, "
           "[-1, 1] for their differences; [-1, 1] for shortcut reliance and [-2, 2] for its differences; 0 to "
           "the epochs trained for epoch counts such as epochs_to_95, "
           "-epochs to +epochs for their differences; >= 0 for gradient norms): the true mean lies in that range, "
           "so the cut keeps the 95 % coverage. Agreement differences: percentile bootstrap over seeds.")


def cell(row: Mapping[str, Any]) -> str:
    """'mean ± std [ci_low, ci_high]' (parts left out where undefined)."""
    text = fmt(row["mean"])
    if not math.isnan(row.get("std", float("nan"))):
        text += f" ± {fmt(row['std'])}"
    if not math.isnan(row.get("ci_low", float("nan"))):
        text += f" [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
    return text


#: metrics for which a smaller value is better (a positive difference is a loss)
LOWER_IS_BETTER = ("epochs_to_", "wrong_score")  # epochs to converge; the share of confounder pixels attributed


def lower_is_better(metric: str | None) -> bool:
    """Whether a smaller value of ``metric`` is better (``epochs_to_95``, ``test/wrong_score``, ...)."""
    return metric is not None and any(part in metric for part in LOWER_IS_BETTER)

#: presets whose verdicts are not evidence for or against a claim, and why (said at the top of the summary);
#: {trained} is what the manifest's specs train ("1 epoch on 2 to 3 seeds per cell", see ``trained``). Sample
#: counts are not given: a smoke preset may train 16 samples or 500 (spurious), and always proves only the pipeline.
NOT_EVIDENCE = {
    "smoke": "trains {trained} to prove that the pipeline runs: its numbers, intervals and verdicts say nothing "
             "about the methods or the paper's claims",
    "quick": "trains fewer seeds and epochs than the `full` preset{trained}: its intervals are wide and its "
             "verdicts are indications to check with `--preset full`",
}


def trained(specs: Mapping[str, Mapping[str, Any]]) -> str:
    """'1 epoch on 2 to 3 seeds per cell': the epochs and evaluation seeds of the specs (from their ``epochs``
    and ``seeds``, the range over specs); "" when the specs do not say."""
    epochs = [s["epochs"] for s in specs.values() if isinstance(s.get("epochs"), int)]
    seeds = [s["seeds"] for s in specs.values() if isinstance(s.get("seeds"), int)]
    if not epochs or not seeds:
        return ""
    return f"{_count(epochs, 'epoch')} on {_count(seeds, 'seed')} per cell"


def _count(values: list[int], noun: str) -> str:
    low, high = min(values), max(values)
    return f"{low} {noun}{'s' if low != 1 else ''}" if low == high else f"{low} to {high} {noun}s"


def evidence_note(preset: str, specs: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The summary's opening warning for a preset whose verdicts are not evidence; empty for ``full``.

    Args:
        specs: the manifest's specs, for what the preset trains (``trained``); said in general words without them.
    """
    why = NOT_EVIDENCE.get(preset)
    if not why:
        return ""
    what = trained(specs or {})
    if preset == "smoke":
        why = why.format(trained=what or "a few seeds for an epoch or so")
    else:
        why = why.format(trained=f" (here {what})" if what else "")
    return f"**Not evidence.** Preset `{preset}` {why}; every verdict below says so."


def at_preset(text: str, preset: str) -> str:
    """A verdict as the summary shows it at ``preset``: replaced at ``smoke`` (toy runs), marked at ``quick``."""
    if not text or preset not in NOT_EVIDENCE:
        return text
    return f"not evidence ({preset} preset)" if preset == "smoke" else f"{text} ({preset} preset: not evidence)"


def verdict(diff: Mapping[str, Any]) -> str:
    """'gain' if the paired 95 % CI lies on the better side of 0 (above, or below for a metric where lower is
    better, e.g. epochs to converge), 'loss' if on the worse side, else 'no clear difference'."""
    if math.isnan(diff["ci_low"]):
        return "too few seeds"
    better = -1 if lower_is_better(diff.get("metric")) else 1
    if diff["ci_low"] > 0:
        return "gain" if better > 0 else "loss"
    if diff["ci_high"] < 0:
        return "loss" if better > 0 else "gain"
    return "no clear difference"


def claim_verdict(ours: Mapping[str, Any] | None, paper_diff: float) -> str:
    """Our paired difference against the paper's difference (method minus baseline).

    reproduced: our 95 % CI excludes 0 on the paper's side and contains the paper's difference; weaker/stronger
    effect: the sign is reproduced but the paper's difference lies outside our CI; not reproduced: our CI contains
    0; contradicted: our CI excludes 0 on the other side.
    """
    if ours is None or math.isnan(ours["ci_low"]):
        return "not enough seeds"
    lo, hi = ours["ci_low"], ours["ci_high"]
    sign = 1 if paper_diff >= 0 else -1
    if lo <= 0 <= hi:
        return "not reproduced (no clear difference)"
    if (lo > 0) != (sign > 0):
        return "contradicted"
    if lo <= paper_diff <= hi:
        return "reproduced"
    return "direction reproduced, weaker effect" if abs(ours["mean"]) < abs(paper_diff) else \
        "direction reproduced, stronger effect"


def claims_section(manifest: Mapping[str, Any], stats: pd.DataFrame, diffs: pd.DataFrame) -> str:
    """Every number the paper reports beside ours, with the verdict on each claimed difference (marked as no
    evidence at the smoke and quick presets, ``at_preset``)."""
    preset = manifest.get("preset", "")
    sources = [spec["source"] for spec in manifest["specs"].values() if spec.get("source") and spec.get("paper")]
    title = "## The paper's numbers beside ours" if not sources else "## Published numbers beside ours"
    lines = [title, "",
             "| experiment | setting | metric | method | paper | ours | paper's difference | our difference [95 % CI] | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    found = False
    for name, spec in manifest["specs"].items():
        paper, baseline = spec.get("paper") or {}, spec.get("baseline")
        metric = spec["headline"] if isinstance(spec["headline"], str) else spec["headline"][0]
        for setting, numbers in paper.items():
            for method, value in numbers.items():
                found = True
                hit = stats[(stats["experiment"] == name) & (stats["setting"] == setting)
                            & (stats["method"] == method) & (stats["metric"] == metric)] if not stats.empty else stats
                ours = cell(hit.iloc[0]) if not hit.empty else "not run at this preset"
                paper_diff = our_diff = verdict_text = ""
                if method != baseline and baseline in numbers:
                    pdiff = value - numbers[baseline]
                    paper_diff = fmt_signed(pdiff)
                    d = diffs[(diffs["experiment"] == name) & (diffs["setting"] == setting) & (diffs["method"] == method)
                              & (diffs["metric"] == metric) & (diffs["baseline"] == baseline)] if not diffs.empty else diffs
                    if not d.empty:
                        r = d.iloc[0]
                        our_diff = f"{fmt_signed(r['mean'])} [{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]"
                        verdict_text = at_preset(claim_verdict(r, pdiff), preset)
                    elif not hit.empty:
                        base = stats[(stats["experiment"] == name) & (stats["setting"] == setting)
                                     & (stats["method"] == baseline) & (stats["metric"] == metric)]
                        if not base.empty:
                            our_diff = fmt_signed(hit.iloc[0]["mean"] - base.iloc[0]["mean"])
                            verdict_text = at_preset("no interval for this metric: compare the numbers", preset)
                lines.append(f"| {name} | {setting} | {metric} | {method} | {fmt(value)} | {ours} | {paper_diff} | "
                             f"{our_diff} | {verdict_text} |")
    return "\n".join(lines + [""]) if found else ""


def experiment_section(name: str, spec: Mapping[str, Any], stats: pd.DataFrame, diffs: pd.DataFrame,
                       chosen: pd.DataFrame, preset: str = "full") -> str:
    """One experiment's part of the summary.

    Args:
        spec: the resolved spec (title, claim, headline, paper, baseline, methods, settings).
        stats: aggregated rows (experiment, setting, method, metric, n, mean, std, ci_low, ci_high), including
            agreement rows.
        diffs: paired differences to the baseline (experiment, setting, method, metric, n, mean, ci_low, ci_high).
        chosen: search table rows of this experiment (setting, method, candidate, metric, n, mean, chosen).
        preset: the preset the runs were made at; verdicts are marked as no evidence at smoke and quick.
    """
    headline = [spec["headline"]] if isinstance(spec["headline"], str) else list(spec["headline"])
    paper = spec.get("paper", {})
    lines = [f"## {name}: {spec.get('title', '')}".rstrip(": "), ""]
    if spec.get("claim"):
        lines += [f"Paper's claim: {spec['claim']}", ""]
    stats = stats[stats["experiment"] == name]
    seeds = sorted(set(stats[stats["metric"] != "agreement"]["n"])) or sorted(set(stats["n"]))
    per_cell = ", ".join(map(str, seeds)) or "none (no run of this experiment has finished)"
    lines += [f"Mean ± standard deviation over seeds [95 % confidence interval of the mean]; seeds per cell: "
              f"{per_cell}. Agreement: mean over all pairs of models (± std over pairs).", ""]
    header = ["setting", "method", *headline]
    has_paper = bool(paper)
    if has_paper:
        header.append(f"paper ({headline[0]})")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reference = spec.get("reference")
    parts = spec.get("setting_parts", {})
    for setting in spec["settings"]:
        for method in report_methods(spec):
            row_stats = stats[(stats["setting"] == setting) & (stats["method"] == method)]
            if row_stats.empty:
                continue
            cells = []
            for metric in headline:
                hit = row_stats[row_stats["metric"] == metric]
                cells.append(cell(hit.iloc[0]) if not hit.empty else "")
            if has_paper:
                cells.append(fmt(paper.get(setting, {}).get(method)))
            shown = f"**{setting}** (reference)" if reference and parts.get(setting, {}).get("variant") == reference \
                else setting
            lines.append(f"| {shown} | {method} | " + " | ".join(cells) + " |")
    lines.append("")
    protocols = protocol_table(name, spec, stats, diffs, preset)
    if protocols:
        lines.append(protocols)
    if reference:
        lines.append(reference_table(name, spec, diffs, preset))

    baseline = spec.get("baseline")
    d = diffs[(diffs["experiment"] == name) & (diffs["metric"] == headline[0])
              & (diffs["baseline"] == baseline)] if not diffs.empty else diffs
    if baseline and not d.empty:
        lines += [f"Paired difference to `{baseline}` in {headline[0]} (same run seeds, so the same initialisation,"
                  " data order and, where the data seed follows the run seed, the same data):", ""]
        cols = ["setting", "method", "pairs", "difference [95 % CI]", "verdict"] + (["paper's difference"] if has_paper else [])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in d.iterrows():
            row = [r["setting"], r["method"], str(r["n"]),
                   f"{fmt_signed(r['mean'])} [{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]",
                   at_preset(verdict(r), preset)]
            if has_paper:
                p = paper.get(r["setting"], {})
                row.append(fmt_signed(p[r["method"]] - p[baseline]) if r["method"] in p and baseline in p else "")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")

    if not chosen.empty and "protocol" in chosen:
        others = chosen[chosen["protocol"] != "train_like"]
        chosen = chosen[chosen["protocol"] == "train_like"]
        picked = others[others["chosen"].astype(bool)] if not others.empty else others
        if not picked.empty:
            lines += ["Hyperparameters the other selection protocols chose (`oracle`: on `val_oracle` at the last "
                      "epoch; `explanation`: lowest intervention reliance within 0.02 of the best validation score):",
                      "", "| setting | method | protocol | chosen | score |", "|---|---|---|---|---|"]
            for _, r in picked.iterrows():
                lines.append(f"| {r['setting']} | {r['method']} | {r['protocol']} | {_candidate(r['candidate'])} | "
                             f"{r['metric']} {fmt(r['mean'])} |")
            lines.append("")
    if not chosen.empty:
        lines += ["Hyperparameters chosen on the validation split (mean over search seeds; every candidate in "
                  "`search.csv`):", "", "| setting | method | chosen | validation score | candidates |",
                  "|---|---|---|---|---|"]
        for (setting, method), group in chosen.groupby(["setting", "method"], sort=False):
            best = group[group["chosen"]]
            text = _candidate(best.iloc[0]["candidate"]) if not best.empty else "(none finished)"
            score = f"{best.iloc[0]['metric']} {fmt(best.iloc[0]['mean'])}" if not best.empty else ""
            lines.append(f"| {setting} | {method} | {text} | {score} | {len(group)} |")
        lines.append("")
    if spec.get("source"):
        lines += [f"Published numbers ({headline[0]}): {spec['source']}", ""]
    if spec.get("paper_note"):
        lines += [f"Note: {spec['paper_note']}", ""]
    return "\n".join(lines)


def protocol_table(name: str, spec: Mapping[str, Any], stats: pd.DataFrame, diffs: pd.DataFrame,
                   preset: str = "full") -> str:
    """The first headline metric of the model each selection protocol chose (``explearn.selection``), from the same
    runs: mean [95 % CI], the paired difference to the baseline under the same protocol, and how many runs' epochs
    all tied under it ("uninformative"). Empty when the runs recorded no protocol but ``train_like``."""
    from explearn.selection import PROTOCOLS

    metric = ([spec["headline"]] if isinstance(spec["headline"], str) else list(spec["headline"]))[0]
    stats = stats[stats["experiment"] == name]
    present = [p for p in PROTOCOLS if not stats[stats["metric"] == f"{p}:{metric}"].empty]
    if present == [] or present == ["train_like"]:
        return ""
    baseline = spec.get("baseline")
    d = diffs[(diffs["experiment"] == name) & (diffs["baseline"] == baseline)] if not diffs.empty else diffs
    lines = [f"{metric} of the model each selection protocol chose from the same runs (explearn's docs/design.md, "
             "'Selection protocols'): mean [95 % CI]" + (f"; in brackets the paired difference to `{baseline}` under the same "
                                             "protocol" if baseline else "") + ". `oracle` is an upper bound no "
             "practitioner has; \\* marks runs whose epochs all tied under the protocol (it could not tell them "
             "apart).", "", "| setting | method | " + " | ".join(present) + " |", "|" + "---|" * (len(present) + 2)]
    for setting in spec["settings"]:
        for method in report_methods(spec):
            cells = []
            for p in present:
                hit = stats[(stats["setting"] == setting) & (stats["method"] == method)
                            & (stats["metric"] == f"{p}:{metric}")]
                if hit.empty:
                    cells.append("")
                    continue
                r = hit.iloc[0]
                text = f"{fmt(r['mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
                dd = d[(d["setting"] == setting) & (d["method"] == method) & (d["metric"] == f"{p}:{metric}")] \
                    if not d.empty else d
                if not dd.empty:
                    q = dd.iloc[0]
                    text += f" ({fmt_signed(q['mean'])} [{fmt_signed(q['ci_low'])}, {fmt_signed(q['ci_high'])}])"
                tied = stats[(stats["setting"] == setting) & (stats["method"] == method)
                             & (stats["metric"] == f"{p}:all_tied")]
                if not tied.empty and tied.iloc[0]["mean"] > 0:
                    text += f" \\* {round(tied.iloc[0]['mean'] * tied.iloc[0]['n'])}/{tied.iloc[0]['n']}"
                cells.append(text)
            if any(cells):
                lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    note = " At this preset these numbers are not evidence." if preset in NOT_EVIDENCE else ""
    return "\n".join(lines + ["", note.strip(), ""] if note else lines + [""])


def reference_table(name: str, spec: Mapping[str, Any], diffs: pd.DataFrame, preset: str = "full") -> str:
    """Every variant minus the reference variant (same method, scenario and seed), in every headline metric; the
    ↑ / ↓ marks (interval above / below 0) are left out at the smoke preset (toy runs, not evidence)."""
    headline = [spec["headline"]] if isinstance(spec["headline"], str) else list(spec["headline"])
    label = f"{spec['reference']} (reference)"
    d = diffs[(diffs["experiment"] == name) & (diffs["baseline"] == label)] if not diffs.empty else diffs
    if d.empty:
        return ""
    lines = [f"Difference to the reference variant `{spec['reference']}` (the paper's setting), same method, "
             "scenario and run seeds; mean [95 % CI] (agreement: bootstrap over seeds). A verdict needs the "
             "interval to exclude 0.", "",
             "| setting | method | " + " | ".join(headline) + " |", "|" + "---|" * (len(headline) + 2)]
    for (setting, method), group in d.groupby(["setting", "method"], sort=False):
        cells = []
        for metric in headline:
            hit = group[group["metric"] == metric]
            if hit.empty:
                cells.append("")
                continue
            r = hit.iloc[0]
            if math.isnan(r["mean"]):  # e.g. a stage-2 gradient norm of label-only training
                cells.append("")
                continue
            mark = "" if preset == "smoke" else " ↑" if r["ci_low"] > 0 else " ↓" if r["ci_high"] < 0 else ""
            cells.append(f"{fmt_signed(r['mean'])} [{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]{mark}")
        lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    legend = "↑ / ↓: the interval lies above / below 0."
    if preset in NOT_EVIDENCE:
        legend = "No ↑ / ↓ marks: smoke runs are not evidence." if preset == "smoke" else \
            f"{legend} At the {preset} preset these marks are not evidence."
    return "\n".join(lines + ["", legend, ""])


def render_summary(manifest: Mapping[str, Any], stats: pd.DataFrame, diffs: pd.DataFrame, search: pd.DataFrame,
                   missing: int, figures: list[str], damaged: Mapping[str, str] | None = None,
                   verdicts: str = "", devices: Mapping[str, int] | None = None) -> str:
    """The whole ``summary.md``.

    Args:
        missing: the number of distinct runs of the manifest that are not stored (or damaged).
        damaged: run id -> what is wrong with its ``result.json``, for runs counted as missing for that reason.
        verdicts: the verdict tables (``report.verdict_table.verdict_section``), shown before everything else.
        devices: device -> runs trained on it; the report says so when they are of more than one kind.
    """
    timing = manifest.get("timing") or {}
    specs = manifest["specs"]
    apart = len(specs) == 1 and next(iter(specs.values())).get("report") == "apart"
    title = f"Study report: {next(iter(specs))}" if apart else "Reproduction report"
    runs = manifest.get("runs", "runs")
    lines = [f"# {title}", "",
             f"Preset `{manifest['preset']}`, specs from `{manifest['collection']}`. "
             f"Re-render with `explearn report DIR`; every number below comes from the runs stored in `{runs}/`.", ""]
    note = evidence_note(manifest["preset"], specs)
    if note:
        lines += [note, ""]
    lines += [CI_NOTE, ""]
    if timing:
        other = timing.get("by_other_launch", 0)
        by_other = f" ({other} by another launch on the same folder)" if other else ""
        lines += [f"Last sweep: {timing.get('trained', 0)} runs trained, {timing.get('skipped', 0)} reused{by_other}, "
                  f"{len(timing.get('failed', []))} failed, {timing.get('seconds', 0):.0f} s wall time.", ""]
    kinds = {str(d).split(":")[0] for d in (devices or {})}
    if len(kinds) > 1:  # `--device auto` takes CUDA where there is one; a run id does not name the device
        counts = ", ".join(f"{d}: {n}" for d, n in sorted((devices or {}).items()))
        lines += [f"**The runs trained on more than one kind of device ({counts}): a run id does not name the "
                  "device (`auto` takes CUDA where there is one), so a folder shared by machines mixes them; their "
                  "numbers agree only up to float rounding.**", ""]
    if missing:
        lines += [f"**{missing} runs of the manifest have not finished (or failed); their cells are missing.**", ""]
    if damaged:
        lines += [f"**{len(damaged)} of them have a damaged `result.json` beside their `done` marker and count as "
                  "missing (a relaunch of `explearn reproduce` trains them again):**", ""]
        lines += [f"- `{run_id}`: {problem}" for run_id, problem in sorted(damaged.items())] + [""]
    if verdicts:
        lines.append(verdicts)
    claims = claims_section(manifest, stats, diffs)
    if claims:
        lines.append(claims)
    for name, spec in manifest["specs"].items():
        chosen = search[search["experiment"] == name] if not search.empty else search
        lines.append(experiment_section(name, spec, stats, diffs, chosen, manifest["preset"]))
    if figures:
        lines += ["## Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
    return "\n".join(lines)


def _candidate(key: str) -> str:
    values = json.loads(key) if key else {}
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "defaults"
