"""ColorMNIST (Rieger, Singh, Murdoch and Yu 2020, "Interpretations are useful", the CDEP benchmark): MNIST
digits coloured by class in training and by a different class at test time.

Each image is x = (gray / 255) * colour[k] per RGB channel, so the stroke carries the colour and the background
stays black; shape (3, 28, 28). The ten colours run from red to purple (``COLOURS``, index = class, the values of
CDEP's code). Training uses colour[y], the test split colour[9 - y], so a model that reads the colour scores near 0.

The right-reason mask is the digit's pixels above ``digit_threshold`` (one channel, shared by the three). There
is no wrong-reason mask: the confounder is the colour of the very pixels that form the digit, not a region of the
image, so no mask can mark it apart from the reason.

Splits: ``train`` (colour[y]), ``val`` (other MNIST training images, drawn like the training split: colour[y]; what
a practitioner has, read by the ``train_like`` selection protocol), ``val_oracle`` (the same validation images with
colour[9 - y], drawn like the test split: the ``oracle`` protocol's split, an upper bound no practitioner has;
CDEP validated on this distribution), ``test`` (MNIST test, colour[9 - y]) and ``test_train_colours`` (the same
test images with colour[y], which shows how much a model leans on the shortcut).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from explearn.config import from_dict, to_dict
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.datasets.masks import SHARED_OPTIONS
from explearn.datasets.mnist import (
    MNIST, MNISTSplitOptions, digit_mask, first_masked, load_mnist, scaled, split_indices,
)

#: RGB in [0, 1] of class k's colour (evenly spaced hues from red to purple, as in CDEP)
COLOURS = np.array([
    [1.0, 0.0, 0.0],
    [0.9447, 0.5248, 0.0],
    [0.7905, 0.8893, 0.0],
    [0.2780, 0.8340, 0.0],
    [0.0, 0.7786, 0.1730],
    [0.0, 0.7233, 0.5626],
    [0.0, 0.4453, 0.6680],
    [0.0, 0.0681, 0.6126],
    [0.2477, 0.0, 0.5573],
    [0.5020, 0.0, 0.5020],
], dtype=np.float32)
SPLITS = ("train", "val", "val_oracle", "test", "test_train_colours")
#: the splits coloured like the test split (colour[9 - y]); the others wear their class's colour
TEST_COLOURS = ("val_oracle", "test")
CLASS_NAMES = tuple(str(k) for k in range(10))


@dataclass(frozen=True)
class ColorMNISTOptions(MNISTSplitOptions):
    """Options of ColorMNIST (the data seed is passed separately). ``n_train`` defaults to the full training set:
    the 60000 MNIST training images minus the ``n_val`` held out for validation."""

    name: ClassVar[str] = "color_mnist"


def color_mnist(n_train: int | None = None, seed: int = 0, **options) -> Splits:
    """ColorMNIST as train / val / test splits plus ``val_oracle`` and ``test_train_colours``.

    Args:
        n_train: training images (default: all MNIST training images not in validation, 60000 - n_val).
        seed: the data seed: which images go to train and val.
        **options: fields of ``ColorMNISTOptions``.

    Returns:
        Splits with x (N, 3, 28, 28) in [0, 1], y (N,), mask (N, 1, 28, 28) binary, no wrong-reason masks. Only the
        training split follows ``mask_fraction``.

    Raises:
        DataError: the MNIST files are missing or corrupt (see ``load_mnist``).
    """
    opts = from_dict(ColorMNISTOptions, {"n_train": n_train, **options}, "dataset 'color_mnist'", SHARED_OPTIONS)
    mnist = load_mnist(opts.data_dir)
    splits = {}
    for split in SPLITS:
        a = render_split(opts, seed, split, mnist)
        has = torch.from_numpy(first_masked(len(a["y"]), opts.mask_fraction)) if split == "train" else None
        splits[split] = ExplanationDataset(
            torch.from_numpy(a["x"]), torch.from_numpy(a["y"]), torch.from_numpy(a["mask"]), has,
            10, CLASS_NAMES, f"color_mnist/{split}",
        )
    info = {"dataset": "color_mnist", "data_seed": seed, "options": to_dict(opts)}
    extra = {k: v for k, v in splits.items() if k not in ("train", "val", "test")}
    return Splits(splits["train"], splits["val"], splits["test"], extra, info)


def render_split(opts: ColorMNISTOptions, seed: int, split: str, mnist: MNIST | None = None) -> dict[str, np.ndarray]:
    """Build one split. Returns x (N, 3, 28, 28) float32, y (N,) int64, mask (N, 1, 28, 28) float32, and for tests
    ``index`` (N,) the MNIST image of each sample and ``colour`` (N,) the class whose colour it wears."""
    mnist = load_mnist(opts.data_dir) if mnist is None else mnist
    from_train = split in ("train", "val", "val_oracle")
    images, labels = (mnist.train_x, mnist.train_y) if from_train else (mnist.test_x, mnist.test_y)
    index = split_indices(opts, seed)["test" if split.startswith("test") else split.removesuffix("_oracle")]
    raw, y = images[index], labels[index].astype(np.int64)
    colour = 9 - y if split in TEST_COLOURS else y
    gray = scaled(raw)
    x = gray[:, None] * COLOURS[colour][:, :, None, None]  # (N, 1, 28, 28) * (N, 3, 1, 1)
    return {
        "x": x,
        "y": y,
        "mask": digit_mask(raw, opts.digit_threshold)[:, None].astype(np.float32),
        "index": index,
        "colour": colour.astype(np.int64),
    }
