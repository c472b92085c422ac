"""One image's explanation as a PNG: the image beside its attribution map laid over it, the mask outlined."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from explearn.files import atomic_path  # noqa: E402


def save_overlay(path: str | Path, image: torch.Tensor, attribution: torch.Tensor, mask: torch.Tensor | None,
                 title: str, attribution_name: str = "input_gradient") -> Path:
    """Draw the image and the attribution heat map over a grey copy of it; outline the mask (cyan) on both.

    Args:
        path: the PNG to write.
        image: the image in [0, 1] (denormalised).
        attribution: non-negative attribution per pixel.
        mask: the explanation mask in [0, 1], or None.
        title: shown above the panels.
        attribution_name: named in the right panel's title.

    Shape:
        image (C, H, W), attribution (H, W), mask (H, W)
    """
    img = _hwc(image)
    heat = attribution.detach().cpu().numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    grey = img.mean(axis=2) if img.ndim == 3 else img
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4 * img.shape[0] / img.shape[1] + 0.6))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    axes[0].set_title("image" + (" (mask outlined)" if mask is not None else ""), fontsize=8)
    axes[1].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(heat, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    axes[1].set_title(f"{attribution_name} of the predicted class", fontsize=8)
    if mask is not None:
        m = mask.detach().cpu().numpy()
        for ax in axes:
            ax.contour(m, levels=[0.5], colors="cyan", linewidths=0.8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:  # an overlay replaced by a later `explain` is never half written
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _hwc(image: torch.Tensor) -> np.ndarray:
    a = image.detach().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
