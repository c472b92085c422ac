"""Tiny folder datasets for the field tests of issue 12 (items 1-3): six 16x16 images, three per class, one per
split, each with a bright 8x8 square at rows and columns 4..11 that its mask marks."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

SIZE = 16
SQUARE = (slice(4, 12), slice(4, 12))


def square() -> np.ndarray:
    """The reason region as 0/1. Shape: (16, 16) uint8."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[SQUARE] = 1
    return m


def image(k: int) -> np.ndarray:
    """Image k: dark noise with the bright square. Shape: (16, 16, 3) uint8."""
    img = (np.random.default_rng(k).random((SIZE, SIZE, 3)) * 80).astype(np.uint8)
    img[SQUARE] = 220
    return img


def write_csv(root: Path, rows: list[dict]) -> None:
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_folder(root: Path, mask_writer: Callable[[Path, np.ndarray], None] | None = None, n: int = 6,
                split: bool = True) -> Path:
    """n images img<k>.png labelled a/b alternately; with a split column train, train, val, val, test, test (n=6).
    ``mask_writer(path_without_suffix, square())`` writes each mask (default: 0/255 greyscale PNG)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    writer = mask_writer or (lambda p, m: Image.fromarray(m * 255).save(f"{p}.png"))
    rows = []
    for k in range(n):
        Image.fromarray(image(k)).save(root / "images" / f"img{k}.png")
        writer(root / "masks" / f"img{k}", square())
        row = {"image": f"img{k}", "label": "ab"[k % 2]}
        if split:
            row["split"] = ("train", "train", "val", "val", "test", "test")[k % 6]
        rows.append(row)
    write_csv(root, rows)
    return root


def palette_image(index: np.ndarray, palette: list[int]) -> Image.Image:
    """A palette ("P") image whose pixel values are ``index`` (no colour conversion). Shape: index (H, W)."""
    img = Image.frombytes("P", (index.shape[1], index.shape[0]), np.ascontiguousarray(index, np.uint8).tobytes())
    img.putpalette(palette)
    return img


def all_masks(splits) -> dict[str, np.ndarray]:
    """Image file -> its loaded mask (H, W), over every split."""
    out = {}
    for split, files in splits.info["files"].items():
        ds = splits.eval_splits()[split]
        out.update({f: ds.mask[i, 0].numpy() for i, f in enumerate(files)})
    return out
