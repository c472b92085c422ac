"""The verdict table at the top of a report (issue 14, item 8): per experiment with controls, grid point and
selection protocol, the headroom the controls leave, each method's share of it closed, its paired difference to
the lower bound, its shortcut reliance and its verdict under the rules of ``docs/verdicts.md``
(``explearn.verdicts``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import pandas as pd

from explearn.metrics import difference_bounds
from explearn.report.tables import NOT_EVIDENCE, at_preset, fmt, fmt_signed, lower_is_better, report_methods
from explearn.results import protocol_runs
from explearn.selection import PROTOCOLS
from explearn.verdicts import DELTA, DELTA_RELIANCE, Comparison, decide, headroom_and_share, paired_test


def verdict_section(manifest: Mapping[str, Any], runs: pd.DataFrame) -> str:
    """Markdown for every spec that names an ``upper_bound`` variant (and a ``baseline`` and ``reference``); ""
    when none does or no run has finished. Holm's correction runs over all comparisons of the collection under
    one protocol (docs/verdicts.md: one verdict table per collection and protocol), shown spec by spec."""
    if runs.empty:
        return ""
    blocks = [block for name, spec in manifest["specs"].items()
              if spec.get("upper_bound") and spec.get("baseline") and spec.get("reference")
              for block in _blocks(name, spec, runs, manifest.get("search") or [])]
    if not blocks:
        return ""
    family = {}
    for protocol in PROTOCOLS:
        family[protocol] = [c for b in blocks if b.protocol == protocol for c in b.comparisons]
        decide(family[protocol])
        decide([row.comparison for b in blocks if b.protocol == protocol for row in b.placebo_rows])  # own family
        decide([c for b in blocks if b.protocol == protocol for c in b.reliance])  # and reliance its own
        _positive_controls([b for b in blocks if b.protocol == protocol])
        _mask_information([b for b in blocks if b.protocol == protocol])
    _against_train_like(blocks)
    preset = manifest["preset"]
    sizes = ", ".join(f"{len(cs)} under `{p}`" for p, cs in family.items() if cs)
    head = ["## Verdicts", "",
            "Decided by the rules written down before the full runs (`docs/verdicts.md` in explearn): the lower "
            "bound is the baseline in the paper's setting, the upper bound the baseline on the same data without "
            "the problem; headroom = mean(upper - lower) with a paired bootstrap 95 % interval; share closed = "
            "mean(method - lower) / headroom (shown where the headroom's lower bound exceeds 0.05); difference = "
            "method - lower, paired by seed, mean [95 % CI, cut to the metric's range]; reliance: its mean, and its "
            "paired difference to the lower bound with its own verdict (margin 0.05, lower is better, its own Holm "
            f"family). Holm's correction over the comparisons of this report under one protocol ({sizes}); a "
            "report of part of a collection (`--only`) corrects over fewer than the whole collection's, whose "
            "verdicts are the ones of record. `oracle` is an upper bound no practitioner has.", ""]
    return "\n".join(head + [line for b in blocks for line in b.render(preset)])


class _Row(NamedTuple):
    """One method against the lower bound at one grid point."""

    point: str
    headroom: str
    variant: str
    method: str
    share: Any
    comparison: Comparison
    reliance: float
    reliance_comparison: Comparison | None


class _PlaceboRow(NamedTuple):
    point: str
    true: str
    placebo: str
    method: str
    comparison: Comparison


@dataclass
class _Block:
    """One spec's comparisons under one protocol."""

    name: str
    metric: str
    protocol: str
    rows: list[_Row] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    fallback: bool = False
    controls: dict[str, list] = field(default_factory=dict)  # grid point -> shares of the positive controls
    placebo_rows: list[_PlaceboRow] = field(default_factory=list)
    reliance: list[Comparison] = field(default_factory=list)  # method - lower bound in shortcut reliance

    def render(self, preset: str) -> list[str]:
        lines = [f"**{self.name}**, {self.metric}, protocol `{self.protocol}`", "",
                 "| setting | headroom | variant | method | share closed | difference [95 % CI] | verdict | reliance "
                 "(difference [95 % CI]: verdict) |",
                 "|---|---|---|---|---|---|---|---|"]
        for point, head_text, variant, method, share, c, reliance, rc in self.rows:
            share_text = "headroom not established" if share is None or share.mean is None else \
                f"{fmt(share.mean)} [{fmt(share.ci_low)}, {fmt(share.ci_high)}]"
            low, high = difference_bounds(self.metric)
            ci_low, ci_high = max(c.test.ci95[0], low), min(c.test.ci95[1], high)  # as every other table
            diff = f"{fmt_signed(c.test.mean)} [{fmt_signed(ci_low)}, {fmt_signed(ci_high)}]"
            notes = "" if preset in NOT_EVIDENCE else "".join(f"; {n}" for n in c.notes)  # no claims from toy runs
            rel = "" if math.isnan(reliance) else fmt_signed(reliance)
            if rc is not None:
                lo_r, hi_r = max(rc.test.ci95[0], -2.0), min(rc.test.ci95[1], 2.0)  # a difference of reliances
                rel += (f" ({fmt_signed(rc.test.mean)} [{fmt_signed(lo_r)}, {fmt_signed(hi_r)}]: "
                        f"{at_preset(rc.verdict, preset)})")
            lines.append(f"| {point or '-'} | {head_text} | {variant} | {method} | {share_text} | {diff} | "
                         f"{at_preset(c.verdict, preset)}{notes} | {rel} |")
        if self.placebo_rows:
            lines += ["", f"Placebo checks, protocol `{self.protocol}`: the method with its true masks minus the same "
                      "method with placebo masks, paired by seed (\"helps\": the masks' information, not their amount, "
                      "made the difference).", "",
                      "| setting | true masks | placebo | method | difference [95 % CI] | verdict |",
                      "|---|---|---|---|---|---|"]
            low, high = difference_bounds(self.metric)
            for point, true, placebo, method, c in self.placebo_rows:
                diff = f"{fmt_signed(c.test.mean)} [{fmt_signed(max(c.test.ci95[0], low))}, " \
                       f"{fmt_signed(min(c.test.ci95[1], high))}]"
                lines.append(f"| {point or '-'} | {true} | {placebo} | {method} | {diff} | "
                             f"{at_preset(c.verdict, preset)} |")
        if self.fallback:
            lines.append("")
            lines.append(f"The upper bound's runs record no `{self.protocol}` choice (their validation data have no "
                         "annotated shortcut): their epoch is the `train_like` one.")
        return lines + [""]


def _blocks(name: str, spec: Mapping[str, Any], runs: pd.DataFrame, search: list[dict]) -> list[_Block]:
    metric = spec.get("primary") or ([spec["headline"]] if isinstance(spec["headline"], str)
                                     else list(spec["headline"]))[0]
    baseline, reference, upper_variant = spec["baseline"], spec["reference"], spec["upper_bound"]
    positive = set(spec.get("positive_controls") or [])
    setting_parts: Mapping[str, Mapping[str, str]] = spec.get("setting_parts", {})
    mine = runs[runs["experiment"] == name] if "experiment" in runs else runs
    blocks = []
    for protocol in PROTOCOLS:
        column = f"{protocol}:{metric}"
        if column not in mine or mine[column].isna().all():
            continue
        pr = protocol_runs(mine, protocol)
        block = _Block(name, metric, protocol)
        points = list(dict.fromkeys(p["point"] for p in setting_parts.values()))
        for point in points:
            labels = [label for label, p in setting_parts.items() if p["point"] == point]
            ref = next((label for label in labels if setting_parts[label]["variant"] == reference), None)
            up = next((label for label in labels if setting_parts[label]["variant"] == upper_variant), None)
            if ref is None or up is None:
                continue
            lower, upper = _by_seed(pr, ref, baseline, column), _by_seed(pr, up, baseline, column)
            if not upper and protocol != "train_like":  # no shortcut in the upper arm's validation data to read
                upper = _by_seed(protocol_runs(mine, "train_like"), up, baseline, f"train_like:{metric}")
                block.fallback = True
            seeds = sorted(set(lower) & set(upper))
            if len(seeds) < 2:
                continue
            head, _ = headroom_and_share([lower[s] for s in seeds], [upper[s] for s in seeds])
            head_text = f"{fmt_signed(head.mean)} [{fmt_signed(head.ci_low)}, {fmt_signed(head.ci_high)}]"
            paper = spec.get("paper", {}).get(ref, {})
            for label in labels:
                if label == up:
                    continue
                for method in sorted(set(pr[pr["setting"] == label]["method"]), key=_order(spec)):
                    if label == ref and method == baseline:
                        continue
                    values = _by_seed(pr, label, method, column)
                    common = [s for s in seeds if s in values]
                    if len(common) < 2:
                        continue
                    m = [values[s] for s in common]
                    lo, upv = [lower[s] for s in common], [upper[s] for s in common]
                    _, share = headroom_and_share(lo, upv, m)
                    test = paired_test([a - b for a, b in zip(m, lo)], DELTA)
                    tied = (_tied(pr, label, method, protocol) or _tied(pr, ref, baseline, protocol)
                            or _candidates_tied(search, name, label, method, protocol))
                    paper_diff = (paper[method] - paper[baseline]) if label == ref and method in paper \
                        and baseline in paper else None
                    comparison = Comparison(test, not lower_is_better(metric), tied, head, paper_diff)
                    block.comparisons.append(comparison)
                    rel_column = f"{protocol}:shortcut/reliance"
                    reliance = _mean(pr, label, method, rel_column)
                    rel_m, rel_lo = _by_seed(pr, label, method, rel_column), _by_seed(pr, ref, baseline, rel_column)
                    both = [s for s in common if s in rel_m and s in rel_lo]
                    rel_cmp = None
                    if len(both) >= 2:  # lower reliance is better: "helps" = the method relies less on the shortcut
                        rel_cmp = Comparison(paired_test([rel_m[s] - rel_lo[s] for s in both], DELTA_RELIANCE),
                                             False, tied)
                        block.reliance.append(rel_cmp)
                    block.rows.append(_Row(point, head_text, setting_parts[label]["variant"], method, share, comparison,
                                           reliance, rel_cmp))
                    if setting_parts[label]["variant"] in positive:
                        block.controls.setdefault(point, []).append(share)
            _placebo_checks(block, spec, pr, column, point, labels, setting_parts, head)
        if block.rows:
            blocks.append(block)
    return blocks


def _placebo_checks(block: _Block, spec: Mapping[str, Any], runs: pd.DataFrame, column: str, point: str,
                    labels: list[str], setting_parts: Mapping[str, Mapping[str, str]], head) -> None:
    """The spec's ``placebos`` (placebo variant -> the variant with the true masks): for every method run in both
    at this grid point, true minus placebo, paired by seed (docs/verdicts.md, "placebo")."""
    by_variant = {setting_parts[label]["variant"]: label for label in labels}
    for placebo, true in (spec.get("placebos") or {}).items():
        if placebo not in by_variant or true not in by_variant:
            continue
        methods = set(runs[runs["setting"] == by_variant[placebo]]["method"]) & \
            set(runs[runs["setting"] == by_variant[true]]["method"])
        for method in sorted(methods, key=_order(spec)):
            a, b = _by_seed(runs, by_variant[true], method, column), _by_seed(runs, by_variant[placebo], method, column)
            common = sorted(set(a) & set(b))
            if len(common) < 2:
                continue
            test = paired_test([a[s] - b[s] for s in common], DELTA)
            comparison = Comparison(test, not lower_is_better(block.metric), False, head)
            block.placebo_rows.append(_PlaceboRow(point, true, placebo, method, comparison))


def _positive_controls(blocks: list[_Block]) -> None:
    """Add the note "no positive control worked" to a grid point's null verdicts (equivalent, inconclusive) when
    the spec names positive controls and none of them closes a share whose 95 % interval excludes 0."""
    for block in blocks:
        for point, shares in block.controls.items():
            if any(s is not None and s.ci_low is not None and s.ci_low > 0 for s in shares):
                continue
            for row in block.rows:
                c = row.comparison
                if row.point == point and (c.verdict == "equivalent" or c.verdict.startswith("inconclusive")):
                    c.notes.append("no positive control worked")


def _mask_information(blocks: list[_Block]) -> None:
    """docs/verdicts.md, "placebo": a method "helps because of the masks" only if it helps against the lower bound
    and against every placebo the spec pairs with its variant (both, where there are two). Notes on the rows that
    help: "helps because of the masks (N placebos)", or which placebo verdict falls short."""
    for block in blocks:
        for row in block.rows:
            if row.comparison.verdict != "helps":
                continue
            checks = [p for p in block.placebo_rows
                      if p.point == row.point and p.true == row.variant and p.method == row.method]
            if not checks:
                continue
            short = [f"{p.placebo}: {p.comparison.verdict}" for p in checks if p.comparison.verdict != "helps"]
            row.comparison.notes.append(
                f"helps because of the masks (beats {len(checks)} placebo{'s' if len(checks) > 1 else ''})"
                if not short else "not shown to come from the masks' information (against " + "; ".join(short) + ")")


def _against_train_like(blocks: list[_Block]) -> None:
    """On the rows of the other protocols, the note "train_like: V" where the verdict under ``train_like`` (what a
    practitioner can select) differs: an ``oracle`` "helps" beside a ``train_like`` "protocol uninformative" says
    the effect exists but no practitioner could have chosen it."""
    verdicts = {(b.name, row.point, row.variant, row.method): row.comparison.verdict
                for b in blocks if b.protocol == "train_like" for row in b.rows}
    for block in blocks:
        if block.protocol == "train_like":
            continue
        for row in block.rows:
            theirs = verdicts.get((block.name, row.point, row.variant, row.method))
            if theirs is not None and theirs.split(" (")[0] != row.comparison.verdict.split(" (")[0]:
                row.comparison.notes.append(f"train_like: {theirs}")


def _candidates_tied(search: list[dict], experiment: str, setting: str, method: str, protocol: str) -> bool:
    """Whether the cell's hyperparameter search had two or more candidates and they all tied on the protocol's
    score (the protocol could not choose among them: docs/verdicts.md, "protocol uninformative")."""
    means = [row.get("mean") for row in search if row.get("experiment") == experiment and row.get("setting") == setting
             and row.get("method") == method and row.get("protocol", "train_like") == protocol]
    return len(means) >= 2 and None not in means and len(set(means)) == 1


def _by_seed(runs: pd.DataFrame, setting: str, method: str, column: str) -> dict[int, float]:
    if column not in runs:
        return {}
    rows = runs[(runs["setting"] == setting) & (runs["method"] == method)]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if not pd.isna(v)}


def _tied(runs: pd.DataFrame, setting: str, method: str, protocol: str) -> bool:
    """Whether every run of the cell tied on all epochs under the protocol (it could not choose)."""
    column = f"{protocol}:all_tied"
    rows = runs[(runs["setting"] == setting) & (runs["method"] == method)]
    return column in rows and not rows.empty and bool((rows[column] == 1.0).all())


def _mean(runs: pd.DataFrame, setting: str, method: str, column: str) -> float:
    if column not in runs:
        return math.nan
    values = runs[(runs["setting"] == setting) & (runs["method"] == method)][column].dropna()
    return float(values.mean()) if len(values) else math.nan


def _order(spec: Mapping[str, Any]):
    methods = report_methods(spec)
    return lambda m: (methods.index(m) if m in methods else len(methods), m)
