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
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path.name


@FIGURES.register("accuracy_vs_size")
def accuracy_vs_size(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Headline accuracy against training-set size, one line per method, 95 % CI as error bars."""
    metric = _headline(spec)
    sizes = {label: values.get("n_train") for label, values in spec["setting_values"].items()}
    sel = stats[(stats["experiment"] == experiment) & (stats["metric"] == metric)].copy()
    sel["n_train"] = sel["setting"].map(sizes)
    sel = sel.dropna(subset=["n_train"])
    if sel.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, group in sel.groupby("method", sort=False):
        group = group.sort_values("n_train")
        err = np.vstack([group["mean"] - group["ci_low"], group["ci_high"] - group["mean"]])
        ax.errorbar(group["n_train"], group["mean"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel(metric)
    ax.set_title(spec.get("title", experiment))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


@FIGURES.register("convergence")
def convergence(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Test accuracy per epoch (mean over seeds, band of ± one std), one line per method and setting."""
    curves = mean_curves(results.curves[results.curves["experiment"] == experiment] if not results.curves.empty
                         else results.curves, "test", "acc")
    if curves.empty:
        curves = mean_curves(results.curves[results.curves["experiment"] == experiment], "val", "acc")
    if curves.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for (setting, method), group in curves.groupby(["setting", "method"], sort=False):
        label = method if curves["setting"].nunique() == 1 else f"{method} ({setting})"
        ax.plot(group["epoch"], group["mean"], label=label)
        ax.fill_between(group["epoch"], group["mean"] - group["std"].fillna(0), group["mean"] + group["std"].fillna(0),
                        alpha=0.15)
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("test accuracy")
    ax.set_title(spec.get("title", experiment))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


@FIGURES.register("agreement")
def agreement(results: Results, stats: pd.DataFrame, experiment: str, spec: Mapping[str, Any]):
    """Pairwise agreement across seeds per method (bars), with the paper's numbers as markers where known."""
    sel = stats[(stats["experiment"] == experiment) & (stats["metric"] == "agreement")]
    if sel.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{m}\n({s})" if sel["setting"].nunique() > 1 else m for s, m in zip(sel["setting"], sel["method"])]
    ax.bar(range(len(sel)), sel["mean"], yerr=sel["std"].fillna(0), capsize=3, color="tab:blue", alpha=0.8)
    paper = spec.get("paper", {}) if _headline(spec) == "agreement" else {}
    marks = [(i, paper.get(s, {}).get(m)) for i, (s, m) in enumerate(zip(sel["setting"], sel["method"]))]
    marks = [(i, v) for i, v in marks if v is not None]
    if marks:
        ax.plot(*zip(*marks), "r*", markersize=12, linestyle="none", label="paper")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(sel)), labels, fontsize=8)
    ax.set_ylim(0.5, 1.0)
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
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))

