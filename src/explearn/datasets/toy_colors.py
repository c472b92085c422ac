"""Toy Colors (Ross, Hughes and Doshi-Velez 2017, "Right for the Right Reasons"): 5x5 RGB images whose class
follows two rules at once, so a model may learn either.

Built as in the authors' code (dtak/rrr, ``rrr/toy_colors.py``): every pixel gets one of four colours uniformly at
random; class 0 then satisfies both rules, class 1 neither, by the same resampling procedure:

* rule 1: the four corners have the same colour. Class 0: the other three corners are set to the bottom-right
  one's colour. Class 1: with probability 1/2 the top-right corner is redrawn until it differs from the bottom-left
  one, else the top-left corner until it differs from the bottom-right one.
* rule 2: the three top-middle pixels (0, 1), (0, 2), (0, 3) have three different colours. Class 0: while two of
  them are equal, a randomly chosen one of the three is redrawn. Class 1: while they are all different, a randomly
  chosen one is redrawn.

Labels are fair coin flips. Values are the uint8 colours / 255, shape (3, 5, 5). The option ``rule`` says which
rule is the right reason: its pixels form the right-reason mask, the other rule's pixels the wrong-reason mask
(one channel, shared by the three). The extra splits ``test_rule1`` and ``test_rule2`` make the rules disagree:
in ``test_rule1`` the label follows rule 1 while rule 2 holds as for the other class (and vice versa), so accuracy
there tells which rule a model uses (1 for the rule it uses, 0 for the other).

Generation is vectorised over images (the resampling loops run over rounds, not pixels), each split in blocks of
``BLOCK`` images drawn from their own random stream keyed by (data seed, split, block): a smaller split is a prefix
of a larger one, and 20000 images take a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from explearn.config import check, from_dict, setting, to_dict
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.datasets.masks import SHARED_OPTIONS

SIZE = 5
#: the four colours of the original (red, green, blue, violet), uint8 RGB; images hold indices into this table
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 128, 255], [128, 0, 255]], dtype=np.uint8)
CORNERS = ((0, 0), (0, SIZE - 1), (SIZE - 1, 0), (SIZE - 1, SIZE - 1))  # rule 1
TOP_MIDDLE = ((0, 1), (0, 2), (0, 3))  # rule 2
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "test_rule1": 3, "test_rule2": 4}
BLOCK = 1024


@dataclass(frozen=True)
class ToyColorsOptions:
    """Options of Toy Colors (the data seed is passed separately)."""

    n_train: int = setting(2000, "training images (the original used 20000)")
    n_val: int = setting(500, "validation images, drawn like the training data (both rules agree)")
    n_test: int = setting(2000, "test images, and images in each of test_rule1 and test_rule2")
    rule: Literal[1, 2] = setting(
        1, "the right reason: 1 = the four equal corners, 2 = the distinct top-middle pixels; the other rule's "
           "pixels form the wrong-reason mask"
    )
    mask_fraction: float = setting(1.0, "share of training images that have explanation masks")

    def __post_init__(self) -> None:
        where = "dataset 'toy_colors'"
        for key in ("n_train", "n_val", "n_test"):
            check(getattr(self, key) >= 1, where, f"{key} must be at least 1, got {getattr(self, key)}")
        check(0.0 <= self.mask_fraction <= 1.0, where, f"mask_fraction must lie in [0, 1], got {self.mask_fraction}")


def toy_colors(n_train: int = 2000, seed: int = 0, **options) -> Splits:
    """Toy Colors as train / val / test splits plus ``test_rule1`` and ``test_rule2``, where the rules disagree.

    Args:
        n_train: training images.
        seed: the data seed; the same seed and options give bit-identical tensors.
        **options: fields of ``ToyColorsOptions``.

    Returns:
        Splits with x (N, 3, 5, 5) in [0, 1], y (N,) in {0, 1}, mask and wrong_mask (N, 1, 5, 5) binary, the same
        pixels for every image. Only the training split follows ``mask_fraction``.
    """
    opts = from_dict(ToyColorsOptions, {"n_train": n_train, **options}, "dataset 'toy_colors'", SHARED_OPTIONS)
    right, wrong = rule_mask(opts.rule), rule_mask(3 - opts.rule)
    sizes = {"train": opts.n_train, "val": opts.n_val}
    splits = {}
    for split in SPLIT_CODES:
        colours, y = render_split(seed, split, sizes.get(split, opts.n_test))
        n = len(y)
        has = None
        if split == "train":  # the images are i.i.d., so the first ones are a random subset
            has = torch.zeros(n, dtype=torch.bool)
            has[: round(opts.mask_fraction * n)] = True
        splits[split] = ExplanationDataset(
            torch.from_numpy(to_rgb(colours)), torch.from_numpy(y),
            torch.from_numpy(np.repeat(right[None, None], n, 0)), has, 2, ("both rules", "neither rule"),
            f"toy_colors/{split}", torch.from_numpy(np.repeat(wrong[None, None], n, 0)), has,
        )
    extra = {k: v for k, v in splits.items() if k not in ("train", "val", "test")}
    info = {"dataset": "toy_colors", "data_seed": seed, "options": to_dict(opts)}
    return Splits(splits["train"], splits["val"], splits["test"], extra, info)


def rule_mask(rule: int) -> np.ndarray:
    """The pixels rule 1 (corners) or rule 2 (top middle) looks at. Shape: (5, 5) float32."""
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    for r, c in CORNERS if rule == 1 else TOP_MIDDLE:
        mask[r, c] = 1.0
    return mask


def to_rgb(colours: np.ndarray) -> np.ndarray:
    """Colour indices (N, 5, 5) -> images (N, 3, 5, 5) float32 in [0, 1]."""
    return (PALETTE[colours].astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()


def render_split(seed: int, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` images of ``split``: colour indices (n, 5, 5) int64 into ``PALETTE`` and labels (n,) int64."""
    blocks = [_block(np.random.default_rng([seed, SPLIT_CODES[split], b]), split) for b in range(-(-n // BLOCK))]
    colours = np.concatenate([c for c, _ in blocks])[:n]
    labels = np.concatenate([y for _, y in blocks])[:n]
    return colours, labels


def rule1_holds(colours: np.ndarray) -> np.ndarray:
    """Whether the four corners share one colour. Shape: (N, 5, 5) -> (N,) bool."""
    c = colours[:, [r for r, _ in CORNERS], [c for _, c in CORNERS]]
    return (c == c[:, :1]).all(1)


def rule2_holds(colours: np.ndarray) -> np.ndarray:
    """Whether the three top-middle pixels have three different colours. Shape: (N, 5, 5) -> (N,) bool."""
    a, b, c = colours[:, 0, 1], colours[:, 0, 2], colours[:, 0, 3]
    return (a != b) & (b != c) & (a != c)


def _block(rng: np.random.Generator, split: str) -> tuple[np.ndarray, np.ndarray]:
    colours = rng.integers(len(PALETTE), size=(BLOCK, SIZE, SIZE))
    y = (rng.random(BLOCK) < 0.5).astype(np.int64)
    # which rule holds for each image: both for class 0 and neither for class 1, except where the rules disagree
    rule1 = y == 0 if split != "test_rule2" else y == 1
    rule2 = y == 0 if split != "test_rule1" else y == 1
    _impose_rule1(colours, rule1, rng)
    _impose_rule2(colours, rule2, rng)
    return colours, y


def _impose_rule1(colours: np.ndarray, holds: np.ndarray, rng: np.random.Generator) -> None:
    """Make rule 1 hold where ``holds`` and fail elsewhere, in place, by the original's procedure."""
    for r, c in CORNERS[:3]:
        colours[holds, r, c] = colours[holds, SIZE - 1, SIZE - 1]
    # fail: redraw top-right until it differs from bottom-left, or top-left until it differs from bottom-right
    top_right = rng.random(len(holds)) < 0.5
    last = SIZE - 1
    for pick, (r, c), (r2, c2) in ((top_right, (0, last), (last, 0)), (~top_right, (0, 0), (last, last))):
        while True:
            todo = np.flatnonzero(~holds & pick & (colours[:, r, c] == colours[:, r2, c2]))
            if not len(todo):
                break
            colours[todo, r, c] = rng.integers(len(PALETTE), size=len(todo))


def _impose_rule2(colours: np.ndarray, holds: np.ndarray, rng: np.random.Generator) -> None:
    """Make rule 2 hold where ``holds`` and fail elsewhere, in place: while an image breaks its target, one of its
    three top-middle pixels, chosen at random, is redrawn."""
    while True:
        todo = np.flatnonzero(rule2_holds(colours) != holds)
        if not len(todo):
            break
        cols = 1 + rng.integers(3, size=len(todo))
        colours[todo, 0, cols] = rng.integers(len(PALETTE), size=len(todo))
