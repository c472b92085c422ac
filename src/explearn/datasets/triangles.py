"""The triangle-orientation benchmark: find the orientation of one triangle among clutter and noise.

The paper's main dataset (Tao and Shokri 2025) is not published; this is explearn's own construction,
documented in docs/user-guide.md ("The triangle benchmark"). Each image holds one filled triangle whose orientation
(apex up or down; or up/right/down/left with ``n_classes=4``) is the label, drawn over distractor shapes (disks,
squares, line segments), then Gaussian noise. The explanation mask is exactly the triangle's pixels.

An optional spurious feature, a small bright square in the image corner that belongs to a class, agrees with the
label at a chosen rate in the training and validation splits; the test split has no such square ("absent") or one
in a corner drawn independently of the label ("independent"), and the extra ``test_spurious`` split has it at the
training rate. ``test_aligned`` and ``test_swapped`` are the test images themselves with the square added in the
label's corner or in another class's corner: they differ from ``test`` only in the square's pixels, so that
reliance on the shortcut (aligned minus swapped accuracy) is measured without attributions. The square's pixels are
the wrong-reason mask (``masks``), and ``spurious_train="absent"`` draws the training and validation images
pixel-identically but for the square: the shortcut-free control arm, paired image by image.

``n_val_oracle`` adds ``val_oracle``, a validation split drawn like the test split (balanced classes, the test's
square mode) from its own streams, so disjoint from test: the oracle selection protocol's data.

Every sample is drawn from its own random stream keyed by (data seed, split, class, index), so the data are a pure
function of the options: a 100-sample training set is the first 100 per class of a 1000-sample one, and the test
set does not depend on the training-set size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from explearn.config import check, setting
from explearn.datasets.base import ExplanationDataset, Splits, check_memory
from explearn.datasets.masks import SHARED_OPTIONS

#: the random stream of each split; test_aligned and test_swapped redraw the test images (code 2) with a square
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "test_spurious": 3, "val_oracle": 4, "test_aligned": 2,
               "test_swapped": 2}
#: Difficulty of the default benchmark, calibrated so that label-only training scores 0.70-0.80 at 500
#: balanced samples (docs/design.md, "Calibration").
DEFAULT_DIFFICULTY = 0.75


@dataclass(frozen=True)
class TriangleOptions:
    """Options of the triangle benchmark (the data seed is passed separately)."""

    n_train: int = setting(500, "training samples, split evenly over the classes (ignored if train_per_class is set)")
    train_per_class: tuple[int, ...] | None = setting(
        None, "training samples per class, e.g. (450, 50) for a 9:1 imbalance; validation follows the same ratio"
    )
    n_val: int = setting(500, "validation samples, drawn like the training data (same class ratio, same spurious rate)")
    n_test: int = setting(2000, "test samples, balanced over the classes")
    n_classes: Literal[2, 4] = setting(2, "2: apex up/down; 4: apex up/right/down/left")
    image_size: int = setting(32, "height and width in pixels (shapes scale with it)")
    difficulty: float = setting(
        DEFAULT_DIFFICULTY, "0 = a lone clean triangle; higher = more noise, more and brighter distractors"
    )
    spurious_rate: float | None = setting(
        None, "if set, a corner square marks a class, agreeing with the label at this rate in train and val"
    )
    spurious_test: Literal["absent", "independent"] = setting(
        "absent", "the spurious square in the test split: absent, or in a corner independent of the label"
    )
    mask_fraction: float = setting(1.0, "share of training samples that have an explanation mask")
    masks: Literal["right", "wrong", "both"] = setting(
        "right", "which masks the training split carries: right-reason (the triangle), wrong-reason (the spurious "
                 "square; needs spurious_rate) or both"
    )
    spurious_train: Literal["label", "absent"] = setting(
        "label", "absent: training and validation images drawn pixel-identically but without the square (the "
                 "shortcut-free control arm)"
    )
    n_val_oracle: int = setting(0, "samples of val_oracle, a validation split drawn like the test split (0: none)")

    def __post_init__(self) -> None:
        where = "dataset 'triangles'"
        check(self.n_train >= self.n_classes, where, f"n_train must be at least n_classes, got {self.n_train}")
        if self.train_per_class is not None:
            check(len(self.train_per_class) == self.n_classes, where,
                  f"train_per_class needs {self.n_classes} counts, got {len(self.train_per_class)}")
            check(all(k >= 1 for k in self.train_per_class), where, "every class needs at least one training sample")
        check(self.n_val >= self.n_classes, where, f"n_val must be at least n_classes, got {self.n_val}")
        check(self.n_test >= self.n_classes, where, f"n_test must be at least n_classes, got {self.n_test}")
        check(self.image_size >= 16, where, f"image_size must be at least 16, got {self.image_size}")
        check(0.0 <= self.difficulty <= 2.0, where, f"difficulty must lie in [0, 2], got {self.difficulty}")
        if self.spurious_rate is not None:
            check(0.0 <= self.spurious_rate <= 1.0, where, f"spurious_rate must lie in [0, 1], got {self.spurious_rate}")
        check(0.0 <= self.mask_fraction <= 1.0, where, f"mask_fraction must lie in [0, 1], got {self.mask_fraction}")
        check(self.masks == "right" or self.spurious_rate is not None, where,
              f"masks={self.masks!r} needs the spurious square (spurious_rate), the only wrong reason drawn")
        check(self.spurious_train == "label" or self.spurious_rate is not None, where,
              "spurious_train='absent' needs spurious_rate (without it there is no square to leave out)")
        check(self.spurious_train == "label" or self.masks == "right", where,
              f"masks={self.masks!r} marks the square in training images, but spurious_train='absent' draws them "
              "without it; use masks='right'")
        check(self.n_val_oracle == 0 or self.n_val_oracle >= self.n_classes, where,
              f"n_val_oracle must be 0 or at least n_classes, got {self.n_val_oracle}")

    @staticmethod
    def ignored_options(values: dict) -> dict[str, str]:
        """Options that the others make void -> why (a setting label must not state them)."""
        return {"n_train": "train_per_class is set"} if values.get("train_per_class") else {}

    def class_counts(self, split: str) -> list[int]:
        """Samples per class in ``split``."""
        k = self.n_classes
        if split == "train":
            return list(self.train_per_class) if self.train_per_class else _even(self.n_train, k)
        if split == "val":
            train = np.asarray(self.class_counts("train"), dtype=float)
            counts = np.maximum(1, np.round(self.n_val * train / train.sum())).astype(int)
            return counts.tolist()
        if split == "val_oracle":
            return _even(self.n_val_oracle, k)
        return _even(self.n_test, k)


def triangles(n_train: int = 500, seed: int = 0, **options) -> Splits:
    """The triangle benchmark as train / val / test splits, plus ``test_spurious``, ``test_aligned`` and
    ``test_swapped`` with a spurious feature, and ``val_oracle`` when ``n_val_oracle`` > 0.

    Args:
        n_train: training samples, balanced (see ``TriangleOptions`` for imbalance and everything else).
        seed: the data seed; the same seed and options give bit-identical tensors.
        **options: fields of ``TriangleOptions``.

    Returns:
        Splits with x (N, 1, S, S) in [0, 1], y (N,), mask (N, 1, S, S) binary (the triangle). Every split whose
        images have the square carries its pixels as ``wrong_mask``; the training split carries the masks that
        ``masks`` names, for the samples that ``mask_fraction`` keeps.
    """
    from explearn.config import from_dict, to_dict

    opts = from_dict(TriangleOptions, {"n_train": n_train, **options}, "dataset 'triangles'", SHARED_OPTIONS)
    names = split_names(opts)
    n = sum(sum(opts.class_counts(s)) for s in names)
    # images, masks (right and wrong) and the rendering's working copies
    check_memory(4 * n * opts.image_size ** 2, "dataset 'triangles'", "a smaller image_size or fewer samples")
    splits = {}
    for split in names:
        arrays = render_split(opts, seed, split)
        square = torch.from_numpy(arrays["spurious"] >= 0)
        right, has_right = torch.from_numpy(arrays["mask"]), None
        wrong, has_wrong = (torch.from_numpy(arrays["wrong_mask"]), square) if bool(square.any()) else (None, None)
        if split == "train":
            keep = (_mask_subset(len(arrays["y"]), opts.mask_fraction, seed) if opts.mask_fraction < 1.0
                    else torch.ones(len(arrays["y"]), dtype=torch.bool))
            has_right = None if opts.mask_fraction == 1.0 else keep
            if opts.masks == "wrong":
                right, has_right = None, None
            if opts.masks == "right":
                wrong, has_wrong = None, None
            elif has_wrong is not None:
                has_wrong = has_wrong & keep
        labels = ("up", "down") if opts.n_classes == 2 else ("up", "right", "down", "left")
        splits[split] = ExplanationDataset(
            torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]), right, has_right, opts.n_classes, labels,
            f"triangles/{split}", wrong, has_wrong,
        )
    extra = {k: v for k, v in splits.items() if k not in ("train", "val", "test")}
    info = {"dataset": "triangles", "data_seed": seed, "options": to_dict(opts)}
    if opts.spurious_rate is not None:
        info["shortcut_splits"] = ["test_aligned", "test_swapped"]
    return Splits(splits["train"], splits["val"], splits["test"], extra, info)


def split_names(opts: TriangleOptions) -> tuple[str, ...]:
    """The splits these options draw, in order."""
    names = ("train", "val", "test") + (("val_oracle",) if opts.n_val_oracle else ())
    return names + (("test_spurious", "test_aligned", "test_swapped") if opts.spurious_rate is not None else ())


def render_split(opts: TriangleOptions, seed: int, split: str) -> dict[str, np.ndarray]:
    """Draw one split. Returns x (N,1,S,S) float32, y (N,) int64, mask (N,1,S,S) float32 (the triangle),
    wrong_mask (N,1,S,S) float32 (the square, zeros where there is none), the spurious corner of each sample (N,)
    int64 (-1 where there is none) and the noise-free image (N,1,S,S), for tests."""
    mode = {"train": opts.spurious_train, "val": opts.spurious_train, "test": opts.spurious_test,
            "val_oracle": opts.spurious_test, "test_spurious": "label", "test_aligned": "aligned",
            "test_swapped": "swapped"}[split]
    if opts.spurious_rate is None:
        mode = "absent"
    xs, masks, wrongs, ys, corners, cleans = [], [], [], [], [], []
    for label, count in enumerate(opts.class_counts(split)):
        for index in range(count):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], label, index])
            corner = _spurious_corner(rng, label, mode, opts)
            clean, mask, wrong = _draw(rng, label, corner, opts)
            noisy = np.clip(clean + rng.normal(0.0, _noise_std(opts), clean.shape), 0.0, 1.0)
            xs.append(noisy)
            masks.append(mask)
            wrongs.append(wrong)
            ys.append(label)
            corners.append(corner)
            cleans.append(clean)
    return {
        "x": np.stack(xs)[:, None].astype(np.float32),
        "y": np.asarray(ys, dtype=np.int64),
        "mask": np.stack(masks)[:, None].astype(np.float32),
        "wrong_mask": np.stack(wrongs)[:, None].astype(np.float32),
        "spurious": np.asarray(corners, dtype=np.int64),
        "clean": np.stack(cleans)[:, None].astype(np.float32),
    }


# --- drawing ----------------------------------------------------------------------------------------------------


def _noise_std(opts: TriangleOptions) -> float:
    return 0.3 * opts.difficulty


def _spurious_corner(rng: np.random.Generator, label: int, mode: str, opts: TriangleOptions) -> int:
    """Corner index of the spurious square (class k's corner is k), or -1 for none. Modes: ``absent``;
    ``independent`` of the label; ``label``: the label's corner at the spurious rate, else another class's;
    ``aligned``: always the label's; ``swapped``: always another class's (the same one ``label`` would take)."""
    k = opts.n_classes
    draw = rng.random()  # always drawn, so the rest of the sample does not depend on the mode
    other = int(rng.integers(k - 1))
    if mode == "absent":
        return -1
    if mode == "independent":
        return int(draw * k)
    if mode == "aligned":
        return label
    if mode == "swapped":
        return other if other < label else other + 1
    assert opts.spurious_rate is not None
    return label if draw < opts.spurious_rate else (other if other < label else other + 1)


def _draw(rng: np.random.Generator, label: int, corner: int,
          opts: TriangleOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free image, triangle mask and square mask for one sample. Order: distractors, spurious square,
    triangle on top (kept away from the corners, so it never covers the square)."""
    s = opts.image_size
    scale = s / 32.0
    yy, xx = np.mgrid[0:s, 0:s] + 0.5  # pixel centres
    img = np.zeros((s, s))
    d = opts.difficulty
    n_distractors = int(rng.integers(round(4 * d), round(10 * d) + 1))
    for _ in range(n_distractors):
        shape = _distractor(rng, xx, yy, s, scale)
        img[shape] = rng.uniform(0.3 + 0.2 * min(d, 1.0), 1.0)
    patch = max(2, round(3 * scale))
    margin = patch + 2
    square = np.zeros((s, s), dtype=bool)
    if corner >= 0:
        r0 = 1 if corner in (0, 1) else s - 1 - patch
        c0 = 1 if corner in (0, 2) else s - 1 - patch
        square[r0:r0 + patch, c0:c0 + patch] = True
        img[square] = 1.0
    mask = _triangle(rng, label, xx, yy, s, scale, margin, opts.n_classes)
    img[mask] = rng.uniform(0.5, 1.0)
    return img, mask, square


def _triangle(rng, label, xx, yy, s, scale, margin, n_classes) -> np.ndarray:
    """Filled isosceles triangle with its apex pointing in the label's direction, jittered by up to 20 degrees;
    kept ``margin`` pixels away from the border so that it never touches a spurious corner square.

    The base is 0.55-0.8 times the height: a near-equilateral triangle turned by 30 degrees would look the same
    pointing up or down, so the label would no longer be a function of the image."""
    theta = label * 2 * math.pi / n_classes + math.radians(rng.uniform(-20, 20))
    height = rng.uniform(7, 12) * scale
    base = height * rng.uniform(0.55, 0.8)
    apex_dir = np.array([math.sin(theta), -math.cos(theta)])  # (x, y), y grows downward; theta=0 points up
    perp = np.array([math.cos(theta), math.sin(theta)])
    rel = [apex_dir * (2 * height / 3), -apex_dir * (height / 3) + perp * base / 2, -apex_dir * (height / 3) - perp * base / 2]
    lo = margin - np.min(rel, axis=0)
    hi = s - margin - np.max(rel, axis=0)
    centre = rng.uniform(lo, hi)
    pts = [centre + r for r in rel]
    return _inside(xx, yy, pts)


def _distractor(rng, xx, yy, s, scale) -> np.ndarray:
    kind = rng.integers(3)
    cx, cy = rng.uniform(0, s, size=2)
    if kind == 0:  # disk
        r = rng.uniform(1.5, 3.5) * scale
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == 1:  # axis-aligned square
        h = rng.uniform(1.5, 3.0) * scale
        return (np.abs(xx - cx) <= h) & (np.abs(yy - cy) <= h)
    # line segment, about one pixel thick, any angle
    angle = rng.uniform(0, math.pi)
    half = rng.uniform(3, 7) * scale
    ux, uy = math.cos(angle), math.sin(angle)
    along = (xx - cx) * ux + (yy - cy) * uy
    across = -(xx - cx) * uy + (yy - cy) * ux
    return (np.abs(along) <= half) & (np.abs(across) <= 0.6 * scale)


def _inside(xx: np.ndarray, yy: np.ndarray, pts: list[np.ndarray]) -> np.ndarray:
    """Pixels whose centre lies inside the triangle ``pts`` (either winding)."""
    def edge(a, b):
        return (b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0])

    e = [edge(pts[0], pts[1]), edge(pts[1], pts[2]), edge(pts[2], pts[0])]
    return ((e[0] >= 0) & (e[1] >= 0) & (e[2] >= 0)) | ((e[0] <= 0) & (e[1] <= 0) & (e[2] <= 0))


def _even(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _mask_subset(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Exactly round(fraction * n) samples keep their mask, chosen by the data seed."""
    rng = np.random.default_rng([seed, 99])
    keep = np.zeros(n, dtype=bool)
    keep[rng.permutation(n)[: round(fraction * n)]] = True
    return torch.from_numpy(keep)
