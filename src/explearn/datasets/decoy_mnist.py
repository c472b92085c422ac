"""Decoy-MNIST (Ross, Hughes and Doshi-Velez 2017, "Right for the Right Reasons"): MNIST with a grey corner patch
whose shade gives the label away in training and is random at test time.

Built as in the authors' code (dtak/rrr, ``rrr/decoy_mnist.py``): a 4x4 patch flush in one of the four corners,
chosen by two fair coin flips per image, painted over the digit with grey level (255 - 25 y) / 255 in training and
(255 - 25 r) / 255 at test time, where r is uniform in 0..9 and independent of the label. Images are x / 255,
shape (1, 28, 28). The wrong-reason mask is exactly the 16 patch pixels; the right-reason mask is the digit's own
pixels above ``digit_threshold``, never on the patch.

Splits: ``train`` (MNIST train, patch shade tied to the label), ``val`` (other MNIST training images, drawn like
the training split: the shade tied to the label, with the patch as wrong-reason mask; what a practitioner has, and
what the ``train_like`` and ``explanation`` selection protocols read), ``val_oracle`` (the same validation images
and corners with random shades, drawn like the test split: the ``oracle`` protocol's split, an upper bound no
practitioner has; never the test set), ``test`` (MNIST test, random shades), and for evaluation ``test_decoy`` (the same test images and corners, the
shade tied to the label as in training), ``test_swapped`` (the same images and corners, the shade of another
class, uniform over the nine others) and ``test_clean`` (the same test images without a patch). Accuracy on
``test_decoy`` minus on ``test_swapped`` is the reliance on the shortcut (``shortcut/reliance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from explearn.config import from_dict, setting, to_dict
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.datasets.masks import SHARED_OPTIONS
from explearn.datasets.mnist import (
    MNIST, N_TEST_FILE, N_TRAIN_FILE, MNISTSplitOptions, digit_mask, first_masked, load_mnist, scaled,
    split_indices,
)

PATCH = 4  # side of the decoy patch, in pixels
SHADE_STEP = 25  # grey level 255 - 25 k for class k (255 for 0 down to 30 for 9)
#: random stream of each split's decoys; val_oracle reuses the validation split's draws (the same images and
#: corners), test_decoy, test_clean and test_swapped the test split's
SPLIT_CODES = {"train": 0, "val": 1, "val_oracle": 1, "test": 2, "test_decoy": 2, "test_clean": 2, "test_swapped": 2}
#: which shade each split paints: the label's, a random class's, another class's, or no patch at all
SHADE_MODES = {"train": "label", "val": "label", "val_oracle": "random", "test": "random", "test_decoy": "label",
               "test_clean": "none", "test_swapped": "swapped"}
#: the splits drawn like the training data: without their patch when decoy_train = "absent"
TRAIN_LIKE = ("train", "val")
CLASS_NAMES = tuple(str(k) for k in range(10))


@dataclass(frozen=True)
class DecoyMNISTOptions(MNISTSplitOptions):
    """Options of Decoy-MNIST (the data seed is passed separately). ``n_train`` defaults to the full training set:
    the 60000 MNIST training images minus the ``n_val`` held out for validation."""

    masks: Literal["both", "right", "wrong"] = setting(
        "both", "which masks the training split carries: right-reason (digit), wrong-reason (patch) or both"
    )
    decoy_train: Literal["label", "absent"] = setting(
        "label", "absent: the training and validation images without their patch (the same images otherwise): "
                 "the shortcut-free upper-bound control"
    )

    name: ClassVar[str] = "decoy_mnist"


def decoy_mnist(n_train: int | None = None, seed: int = 0, **options) -> Splits:
    """Decoy-MNIST as train / val / test splits plus ``val_oracle``, ``test_decoy``, ``test_swapped`` and
    ``test_clean``.

    Args:
        n_train: training images (default: all MNIST training images not in validation, 60000 - n_val).
        seed: the data seed: which images go to train and val, and every patch's corner and random shade.
            The same seed and options give bit-identical tensors.
        **options: fields of ``DecoyMNISTOptions``.

    Returns:
        Splits with x (N, 1, 28, 28) in [0, 1], y (N,), mask and wrong_mask (N, 1, 28, 28) binary. Only the
        training split follows ``mask_fraction`` and ``masks``; the other splits carry both kinds for every
        image (``test_clean``, and ``val`` with ``decoy_train="absent"``, have no patch, so no wrong-reason mask),
        so that alignment is always measurable.

    Raises:
        DataError: the MNIST files are missing or corrupt (see ``load_mnist``).
    """
    opts = from_dict(DecoyMNISTOptions, {"n_train": n_train, **options}, "dataset 'decoy_mnist'", SHARED_OPTIONS)
    mnist = load_mnist(opts.data_dir)
    splits = {}
    for split in SPLIT_CODES:
        a = render_split(opts, seed, split, mnist)
        painted = SHADE_MODES[split] != "none" and not (split in TRAIN_LIKE and opts.decoy_train == "absent")
        right, wrong = a["mask"], (a["wrong_mask"] if painted else None)
        has = None
        if split == "train":
            has = torch.from_numpy(first_masked(len(a["y"]), opts.mask_fraction))
            right = None if opts.masks == "wrong" else right
            wrong = None if opts.masks == "right" else wrong
        splits[split] = ExplanationDataset(
            torch.from_numpy(a["x"]), torch.from_numpy(a["y"]),
            None if right is None else torch.from_numpy(right), None if right is None else has,
            10, CLASS_NAMES, f"decoy_mnist/{split}",
            None if wrong is None else torch.from_numpy(wrong), None if wrong is None else has,
        )
    extra = {k: v for k, v in splits.items() if k not in ("train", "val", "test")}
    info = {"dataset": "decoy_mnist", "data_seed": seed, "options": to_dict(opts),
            "shortcut_splits": ["test_decoy", "test_swapped"]}
    return Splits(splits["train"], splits["val"], splits["test"], extra, info)


def render_split(opts: DecoyMNISTOptions, seed: int, split: str, mnist: MNIST | None = None) -> dict[str, np.ndarray]:
    """Build one split. Returns x (N, 1, 28, 28) float32, y (N,) int64, mask and wrong_mask (N, 1, 28, 28)
    float32, and for tests: ``index`` (N,) the MNIST image of each sample (in MNIST train for train, val and val_oracle,
    MNIST test otherwise), ``corner`` (N,) 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, and ``shade``
    (N,) the class k whose grey level (255 - 25 k) / 255 the patch has; both -1 where there is no patch."""
    mnist = load_mnist(opts.data_dir) if mnist is None else mnist
    from_train = split in ("train", "val", "val_oracle")
    images, labels = (mnist.train_x, mnist.train_y) if from_train else (mnist.test_x, mnist.test_y)
    index = split_indices(opts, seed)["test" if split.startswith("test") else split.removesuffix("_oracle")]

    # decoys are drawn for every image of the MNIST file and then indexed, so each image keeps its decoy whatever
    # the split sizes (smaller training sets are prefixes of larger ones, decoys included)
    rng = np.random.default_rng([seed, SPLIT_CODES[split]])
    n_file = N_TRAIN_FILE if from_train else N_TEST_FILE
    corner = rng.integers(4, size=n_file)[index]  # two fair coin flips: bit 1 = bottom, bit 0 = right
    random_class = rng.integers(10, size=n_file)[index]

    raw, y = images[index], labels[index].astype(np.int64)
    mode = "none" if split in TRAIN_LIKE and opts.decoy_train == "absent" else SHADE_MODES[split]
    patch = _patch(corner) if mode != "none" else np.zeros(raw.shape, dtype=bool)
    if mode == "swapped":  # another class's shade, uniform over the other nine, from its own stream
        offset = np.random.default_rng([seed, SPLIT_CODES[split], 1]).integers(1, 10, size=n_file)[index]
        shade = (y + offset) % 10
    else:
        shade = {"label": y, "random": random_class, "none": np.full_like(y, -1)}[mode]
    x = scaled(raw)
    right = digit_mask(raw, opts.digit_threshold)
    if mode != "none":
        # every image has exactly PATCH**2 patch pixels, visited image by image, row-major
        x[patch] = np.repeat(((255 - SHADE_STEP * shade) / 255.0).astype(np.float32), PATCH * PATCH)
        right[patch] = False
    return {
        "x": x[:, None],
        "y": y,
        "mask": right[:, None].astype(np.float32),
        "wrong_mask": patch[:, None].astype(np.float32),
        "index": index,
        "corner": np.where(mode == "none", -1, corner),
        "shade": shade,
    }


def _patch(corner: np.ndarray) -> np.ndarray:
    """The patch pixels of each image: a PATCH x PATCH square flush in its corner. Shape: (N,) -> (N, 28, 28) bool."""
    pos = np.arange(28)
    first, last = pos < PATCH, pos >= 28 - PATCH
    rows = np.where((corner >= 2)[:, None], last, first)  # (N, 28)
    cols = np.where((corner % 2 == 1)[:, None], last, first)
    return rows[:, :, None] & cols[:, None, :]
