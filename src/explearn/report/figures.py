"""PNG figures drawn from aggregated results; each figure kind is registered by name and named in a spec's
``figures`` list."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from explearn.files import atomic_path  # noqa: E402
from explearn.metrics import metric_bounds  # noqa: E402
from explearn.registry import Registry  # noqa: E402
from explearn.results import Results, mean_curves  # noqa: E402

#: name -> draw(results, stats, experiment, spec, path) -> None
FIGURES: Registry = Registry("figure")


def draw(kind: str, results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any],
         out_dir: Path) -> str | None:
    """Draw figure ``kind`` for ``experiment`` into ``out_dir``; returns the file name, or None if no data."""
    path = out_dir / f"{experiment}_{kind}.png"
    fig = FIGURES.get(kind)(results, stats, experiment, spec)
    if fig is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path.name


@FIGURES.register("accuracy_vs_size")
def accuracy_vs_size(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Headline accuracy against training-set size, one line per method, 95 % CI as error bars. With an
    ``upper_bound`` variant (the baseline on a larger training set) only the ``reference`` variant's settings
    are lines; the upper bound is a dotted horizontal line with its CI as a band, labelled with its size."""
    metric = _headline(spec)
    sizes = {label: values.get("n_train") for label, values in spec["setting_values"].items()}
    parts = spec.get("setting_parts") or {}
    variant = {label: part.get("variant", "") for label, part in parts.items()}
    sel = stats[(stats["experiment"] == experiment) & (stats["metric"] == metric)].copy()
    sel["n_train"] = sel["setting"].map(sizes)
    sel = sel.dropna(subset=["n_train"])
    upper = spec.get("upper_bound")
    bound = sel[sel["setting"].map(variant) == upper] if upper else sel.iloc[:0]
    if upper and spec.get("reference"):
        sel = sel[sel["setting"].map(variant) == spec["reference"]]
    if sel.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, group in sel.groupby("method", sort=False):
        group = group.sort_values("n_train")
        err = np.vstack([group["mean"] - group["ci_low"], group["ci_high"] - group["mean"]])
        ax.errorbar(group["n_train"], group["mean"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=method)
    if not bound.empty:  # the same runs in every cell: one line
        r = bound.iloc[0]
        ax.axhline(r["mean"], color="grey", linestyle=":", label=f"{r['method']}, n_train={int(r['n_train'])} "
                   "(upper bound)")
        if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
            ax.axhspan(r["ci_low"], r["ci_high"], color="grey", alpha=0.12)
    ax.set_xscale("log")
    ticks = sorted(sel["n_train"].unique())
    ax.set_xticks(ticks, [f"{int(n)}" for n in ticks])  # the sizes trained, not the log scale's own ticks
    ax.minorticks_off()
    ax.set_xlabel("training samples")
    ax.set_ylabel(metric)
    ax.set_title(spec.get("title", experiment))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


@FIGURES.register("convergence")
def convergence(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Accuracy per epoch (mean over seeds, band of ± one std), one line per method and setting; test accuracy
    where the spec evaluated the test split every epoch, else validation accuracy. One panel per scenario / grid
    point when the spec has variants."""
    mine = results.curves[results.curves["experiment"] == experiment] if not results.curves.empty else results.curves
    split = "test"
    curves = mean_curves(mine, split, "acc")
    if curves.empty:
        split = "val"
        curves = mean_curves(mine, split, "acc")
    if curves.empty:
        return None
    return _panels(curves, spec, f"{split} accuracy", spec.get("title", experiment), metric_bounds("acc"))


@FIGURES.register("gradients")
def gradients(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Gradient norm of each stage per epoch (mean over an epoch's steps, then over seeds; log scale), to see
    whether a loss makes them explode or vanish."""
    mine = results.curves[results.curves["experiment"] == experiment] if not results.curves.empty else results.curves
    rows = []
    for log, stage in (("grad_norm_stage1", "stage 1 (label loss, all parameters)"),
                       ("grad_norm_stage2", "stage 2 (misalignment loss, mapping layer)")):
        curves = mean_curves(mine, "train", log)
        if not curves.empty:
            rows.append((stage, curves))
    if not rows:
        return None
    points = _points(spec)
    fig, axes = plt.subplots(len(rows), len(points), figsize=(5.5 * len(points), 3.6 * len(rows)), squeeze=False,
                             layout="constrained")
    for i, (stage, curves) in enumerate(rows):
        for j, point in enumerate(points):
            _lines(axes[i, j], curves, spec, point, metric_bounds("grad_norm_stage1"))
            axes[i, j].set_yscale("log")
            axes[i, j].set_ylabel("gradient norm")
            axes[i, j].set_title(f"{point + ': ' if point else ''}{stage}", fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return fig


@FIGURES.register("variants")
def variants(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """The first headline metric of every variant and method (mean and 95 % CI over seeds), one panel per
    scenario / grid point; the reference variant's mean as a dashed line."""
    metric = _headline(spec)
    sel = stats[(stats["experiment"] == experiment) & (stats["metric"] == metric)]
    if sel.empty:
        return None
    parts = spec.get("setting_parts", {})
    points = _points(spec)
    rows_per_panel = max(len(sel[sel["setting"].map(lambda s: parts.get(s, {}).get("point", "")) == p]) for p in points)
    fig, axes = plt.subplots(1, len(points), figsize=(6.5 * len(points), 1.2 + 0.32 * rows_per_panel), squeeze=False,
                             layout="constrained")
    colors = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(sel["method"]))}
    for ax, point in zip(axes[0], points):
        part = sel[sel["setting"].map(lambda s: parts.get(s, {}).get("point", "")) == point]
        labels = []
        for i, (_, r) in enumerate(part.iterrows()):
            variant = parts.get(r["setting"], {}).get("variant") or r["setting"]
            low, high = np.nan_to_num(r["mean"] - r["ci_low"]), np.nan_to_num(r["ci_high"] - r["mean"])
            ax.errorbar(r["mean"], i, xerr=[[low], [high]], fmt="o", color=colors[r["method"]], capsize=3)
            labels.append(f"{variant} ({r['method']})")
            if variant == spec.get("reference") and r["method"] != spec.get("baseline"):
                ax.axvline(r["mean"], color=colors[r["method"]], linestyle="--", linewidth=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric} (mean, 95 % CI)")
        ax.set_title(point or spec.get("title", experiment), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    return fig


def _points(spec: Mapping[str, Any]) -> list[str]:
    """The scenario / grid parts of the spec's settings, in order ([""] without variants)."""
    parts = spec.get("setting_parts") or {}
    points = list(dict.fromkeys(p["point"] for p in parts.values()))
    return points if parts and any(p["variant"] for p in parts.values()) else [""]


def _lines(ax, curves: pd.DataFrame, spec: Mapping[str, Any], point: str,
           bounds: tuple[float, float] = (-np.inf, np.inf)) -> None:
    """One line per setting and method (mean over seeds), with a band of ± one std cut to ``bounds`` (the values
    the metric can take: an accuracy band never leaves [0, 1])."""
    parts = spec.get("setting_parts") or {}
    for (setting, method), group in curves.groupby(["setting", "method"], sort=False):
        part = parts.get(setting, {"point": "", "variant": setting})
        if point and part["point"] != point:
            continue
        name = part["variant"] if point else setting
        label = method if curves["setting"].nunique() == 1 else f"{method} ({name})"
        style = "--" if part.get("variant") and part["variant"] == spec.get("reference") else "-"
        ax.plot(group["epoch"], group["mean"], style, marker=".", label=label)
        spread = group["std"].fillna(0)
        ax.fill_between(group["epoch"], (group["mean"] - spread).clip(*bounds), (group["mean"] + spread).clip(*bounds),
                        alpha=0.12)
    ax.set_xlabel("epoch (0 = before training)")
    ax.grid(alpha=0.3)


def _panels(curves: pd.DataFrame, spec: Mapping[str, Any], ylabel: str, title: str,
            bounds: tuple[float, float] = (-np.inf, np.inf)):
    points = _points(spec)
    fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4), squeeze=False, layout="constrained")
    for ax, point in zip(axes[0], points):
        _lines(ax, curves, spec, point, bounds)
        ax.set_ylabel(ylabel)
        ax.set_title(point or title, fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1) if len(points) > 1 else None)
    return fig


@FIGURES.register("agreement")
def agreement(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Pairwise agreement across seeds per method (bars), with the paper's numbers as markers where known."""
    sel = stats[(stats["experiment"] == experiment) & (stats["metric"] == "agreement")]
    if sel.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{m}\n({s})" if sel["setting"].nunique() > 1 else m for s, m in zip(sel["setting"], sel["method"])]
    spread = sel["std"].fillna(0)
    # ± one std over pairs, cut to [0, 1] where agreement lives
    err = np.vstack([np.minimum(spread, sel["mean"]), np.minimum(spread, 1 - sel["mean"])])
    ax.bar(range(len(sel)), sel["mean"], yerr=err, capsize=3, color="tab:blue", alpha=0.8)
    paper = spec.get("paper", {}) if _headline(spec) == "agreement" else {}
    marks = [(i, paper.get(s, {}).get(m)) for i, (s, m) in enumerate(zip(sel["setting"], sel["method"]))]
    marks = [(i, v) for i, v in marks if v is not None]
    if marks:
        ax.plot(*zip(*marks), "r*", markersize=12, linestyle="none", label="paper")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(sel)), labels, fontsize=8)
    low = float((sel["mean"] - err[0]).min())
    ax.set_ylim(0.5 if low >= 0.5 else max(0.0, np.floor(low * 10) / 10), 1.0)  # every bar shows, even one below 0.5
    ax.set_ylabel("pairwise agreement (test)")
    ax.set_title(spec.get("title", experiment))
    return fig


@FIGURES.register("examples")
def examples(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Example test images, their masks, and each method's attribution map (|input gradient|, seed 0)."""
    found = {(s, m): ex for (e, s, m), ex in results.examples.items() if e == experiment}
    if not found:
        return None
    setting = next(iter(found))[0]
    methods = [m for (s, m) in found if s == setting]
    first = found[(setting, methods[0])]
    images, masks = np.asarray(first["image"]), np.asarray(first["mask"])
    k = min(4, len(images))
    fig, axes = plt.subplots(k, 2 + len(methods), figsize=(1.6 * (2 + len(methods)), 1.7 * k), squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(_hwc(images[i]), cmap="gray", vmin=0, vmax=1)
        axes[i, 1].imshow(masks[i].max(0), cmap="gray", vmin=0, vmax=1)
        for j, method in enumerate(methods):
            attribution = np.abs(np.asarray(found[(setting, method)]["attribution"][i])).sum(0)
            axes[i, 2 + j].imshow(attribution, cmap="inferno")
            axes[i, 2 + j].contour(masks[i].max(0), levels=[0.5], colors="cyan", linewidths=0.6)
    for j, title in enumerate(["image", "mask", *methods]):
        axes[0, j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{experiment} ({setting}): |input gradient of the predicted class|, mask outlined", fontsize=9)
    return fig


def _headline(spec: Mapping[str, Any]) -> str:
    headline = spec["headline"]
    return headline if isinstance(headline, str) else headline[0]


def _hwc(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) or (H, W, C) for imshow; normalised images (values outside [0, 1]) are rescaled to
    [0, 1] by their own minimum and maximum."""
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 1:
        image = (image - lo) / max(hi - lo, 1e-12)
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))

