"""PH2 dermoscopy (Mendonca et al. 2013): 200 images of melanocytic lesions with dermatologists' lesion masks.

The lesion is the right reason: the diagnosis is in the lesion, not in the surrounding skin, hair, vignetting or
rulers. A thin wrapper over the folder loader (``datasets.folder``): ``$EXPLEARN_DATA/ph2`` holds ``labels.csv``
(image, clinical_diagnosis, label_name, melanoma), ``images/IMDxxx.png`` and ``masks/IMDxxx.png``. The data are
research-only (``SOURCE.txt`` beside them): never copy them into a repository.

Tasks: ``melanoma`` (nevus 160 vs melanoma 40), ``melanoma_vs_common`` (common nevus 80 vs melanoma 40; atypical
nevi left out) and ``diagnosis`` (common nevus 80, atypical nevus 80, melanoma 40). The split is stratified by
class and seeded by the data seed.

The **marker variant** is a spurious-feature benchmark on real images: a solid purple disk, like a surgical-ink
mark, painted in one corner of ``marker_rate`` of the training images of ``marker_class`` (before normalisation).
Those images get the disk as wrong-reason mask, and their lesion mask excludes it. The validation split is painted
by the same rule (drawn like the training data: what a practitioner has, read by the ``train_like`` and
``explanation`` selection protocols); ``val_oracle`` is the same validation images clean, drawn like the test split
(the ``oracle`` protocol's split, an upper bound no practitioner has). The test split stays clean; the extra splits
``test_marker`` (the disk on every test image of ``marker_class``, the shortcut as in training) and
``test_marker_swapped`` (on every test image of the other classes) show how much a model relies on it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from explearn.config import check, from_dict, setting, to_dict
from explearn.datasets.base import Splits
from explearn.datasets.folder import FolderOptions, read_folder
from explearn.datasets.masks import SHARED_OPTIONS
from explearn.datasets.parts import Part, keep_masks, make_info, normalized, split_indices, subset, to_splits
from explearn.datasets.mnist import ENV_VAR
from explearn.errors import DataError

DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma")  # the CSV's label_name, in clinical_diagnosis order
#: task -> (class of each diagnosis, None = left out; class names)
TASKS = {
    "melanoma": ((0, 0, 1), ("nevus", "melanoma")),
    "melanoma_vs_common": ((0, None, 1), ("common_nevus", "melanoma")),
    "diagnosis": ((0, 1, 2), DIAGNOSES),
}
MARKER_COLOUR = (0.45, 0.10, 0.60)  # purple, like a skin marker pen: absent from dermoscopy images
MARKER_MARGIN = 0.05  # gap between the disk and the image border, as a share of the image height
_MARKER_KEY = 4000  # random stream of the data seed for the marker (which images, which corners)
_MARKER_CODES = {"train": 0, "test": 1, "val": 2}


@dataclass(frozen=True)
class PH2Options:
    """Options of PH2 (the data seed is passed separately)."""

    data_dir: str | None = setting(None, "the PH2 folder (labels.csv, images/, masks/); default: $EXPLEARN_DATA/ph2")
    task: Literal["melanoma", "melanoma_vs_common", "diagnosis"] = setting(
        "melanoma", "melanoma vs nevus (40/160), melanoma vs common nevus (40/80), or the 3 diagnoses"
    )
    image_size: tuple[int, int] = setting((72, 96), "(H, W) in pixels; 3:4 keeps the images' aspect")
    fit: Literal["stretch", "crop"] = setting("crop", "centre-crop to the 3:4 aspect first (sizes vary by a row)")
    normalize: Literal["train", "imagenet", "none"] = setting(
        "train", "per-channel mean/std: of the training split (painted, with the marker), ImageNet's, or none"
    )
    val_fraction: float = setting(0.2, "share of each class for validation")
    test_fraction: float = setting(0.3, "share of each class for testing")
    mask_fraction: float = setting(1.0, "share of the training images whose masks are used (seeded)")
    marker: bool = setting(False, "paint a spurious marker disk on training and validation images of marker_class "
                                  "(val_oracle: the validation images clean)")
    marker_class: int = setting(1, "class whose training images get the marker (1 = melanoma in the binary tasks)")
    marker_rate: float = setting(1.0, "share of marker_class's training images that get the marker")
    marker_size: float = setting(0.18, "diameter of the marker disk, as a share of the image height")

    def __post_init__(self) -> None:
        where = "dataset 'ph2'"
        check(min(self.image_size) >= 8, where, f"image_size must be (H, W) >= 8, got {self.image_size}")
        for key in ("val_fraction", "test_fraction", "mask_fraction", "marker_rate"):
            check(0.0 <= getattr(self, key) <= 1.0, where, f"{key} must lie in [0, 1], got {getattr(self, key)}")
        check(0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1,
              where, "val_fraction and test_fraction must be positive and sum to less than 1")
        n_classes = len(TASKS[self.task][1])
        check(0 <= self.marker_class < n_classes, where,
              f"marker_class must be a class of task {self.task!r} (0 to {n_classes - 1}), got {self.marker_class}")
        check(0.0 < self.marker_size <= 0.5, where, f"marker_size must lie in (0, 0.5], got {self.marker_size}")


def ph2_dir(data_dir: str | Path | None = None) -> Path:
    """The PH2 folder: ``data_dir`` if given, else ``$EXPLEARN_DATA/ph2``.

    Raises:
        DataError: neither is set, or the folder does not exist.
    """
    if data_dir is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise DataError(f"no PH2 folder given: pass data_dir (the dataset option data_dir=...) or set "
                            f"${ENV_VAR} to a folder whose ph2/ subfolder holds labels.csv, images/ and masks/")
        data_dir = Path(root) / "ph2"
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"PH2 folder {folder} does not exist; it must hold labels.csv, images/IMDxxx.png and "
                        "masks/IMDxxx.png (pass data_dir or set $EXPLEARN_DATA)")
    return folder


def ph2(seed: int = 0, **options) -> Splits:
    """PH2 as train / val / test splits; with ``marker``, also ``val_oracle``, ``test_marker`` and
    ``test_marker_swapped``.

    Args:
        seed: the data seed: the stratified split, the masked subset and the marker's images and corners. The same
            seed and options give bit-identical tensors.
        **options: fields of ``PH2Options``.

    Returns:
        Splits with x (N, 3, H, W) normalised as ``normalize`` says, y (N,), mask (N, 1, H, W) binary lesion
        masks; with the marker, wrong_mask (N, 1, H, W) the disk where one is painted. ``info`` holds the
        ``Preprocess`` for new images, the files of each split and the painted files.

    Raises:
        DataError: the folder is missing or its files have problems.
    """
    opts = from_dict(PH2Options, options, "dataset 'ph2'", SHARED_OPTIONS)
    folder = FolderOptions(root=str(ph2_dir(opts.data_dir)), label_column="label_name", classes=DIAGNOSES,
                           image_size=opts.image_size, fit=opts.fit, normalize=opts.normalize)
    data = read_folder(folder)
    code, class_names = TASKS[opts.task]
    task_y = np.array([-1 if code[d] is None else code[d] for d in data.y.tolist()])
    kept = np.flatnonzero(task_y >= 0)  # the images of the task, in CSV order
    within = split_indices(task_y[kept], None, seed, opts.val_fraction, opts.test_fraction)
    index = {s: kept[i] for s, i in within.items()}
    parts = {s: subset(data, i, torch.from_numpy(task_y)) for s, i in index.items()}
    parts["train"] = keep_masks(parts["train"], opts.mask_fraction, seed)
    files = {s: [data.files[i] for i in index[s]] for s in index}
    painted = {}
    if opts.marker:
        parts, painted = _add_marker(parts, files, opts, seed)
        files.update({s: files["test"] for s in painted if s.startswith("test_")})
        files["val_oracle"] = files["val"]
    parts, pre = normalized(parts, folder.preprocess(), opts.normalize)
    info = make_info("ph2", seed, to_dict(opts), class_names, pre, files)
    if opts.marker:
        info["marker"] = {"colour": list(MARKER_COLOUR), "files": painted}
        # the marker agrees with every test label in test_marker (disk on the marker class, none elsewhere) and
        # with none in test_marker_swapped: the pair behind shortcut/reliance and worst-group accuracy
        info["shortcut_splits"] = ["test_marker", "test_marker_swapped"]
    return to_splits(parts, class_names, info)


def _add_marker(parts: dict[str, Part], files: dict[str, list[str]], opts: PH2Options,
                seed: int) -> tuple[dict[str, Part], dict[str, list[str]]]:
    """Paint the marker into the training and validation splits (``marker_rate`` of each one's ``marker_class``
    images, each split from its own random stream), keep the clean validation images as ``val_oracle``, and build
    the two marker test splits from the clean test split.

    Returns:
        The splits, and the painted files of each split that has the marker.
    """
    test = parts["test"]
    out = dict(parts)
    out["val_oracle"] = parts["val"]
    painted = {}
    for split in ("train", "val"):
        ds = parts[split]
        rng = np.random.default_rng([seed, _MARKER_KEY, _MARKER_CODES[split]])
        candidates = np.flatnonzero(ds.y.numpy() == opts.marker_class)
        chosen = rng.permutation(candidates)[: int(np.floor(opts.marker_rate * len(candidates) + 0.5))]
        which = np.zeros(len(ds.y), dtype=bool)
        which[chosen] = True
        out[split] = paint_marker(ds, which, opts.marker_size, rng, ds.has_mask if split == "train" else None)
        painted[split] = [files[split][i] for i in np.flatnonzero(which)]
    on_class = test.y.numpy() == opts.marker_class
    for name, where in (("test_marker", on_class), ("test_marker_swapped", ~on_class)):
        # the same corner draws for both test splits: each test image has one corner, painted or not
        test_rng = np.random.default_rng([seed, _MARKER_KEY, _MARKER_CODES["test"]])
        out[name] = paint_marker(test, where, opts.marker_size, test_rng)
    painted.update({name: [files["test"][i] for i in np.flatnonzero(w)]
                    for name, w in (("test_marker", on_class), ("test_marker_swapped", ~on_class))})
    return out, painted


def paint_marker(ds: Part, which: np.ndarray, size: float, rng: np.random.Generator,
                 has_wrong: torch.Tensor | None = None) -> Part:
    """Paint the marker disk on the images ``which`` of an unnormalised dataset.

    Each image gets a corner (drawn for every image, so the draws do not depend on ``which``): among the corners
    whose disk overlaps the lesion mask least, one at random. Painted images get the disk as wrong-reason mask and
    lose it from their right-reason mask.

    Args:
        ds: one split's images in [0, 1] with lesion masks.
        which: the images to paint. Shape: (N,) bool.
        size: the disk's diameter as a share of the image height.
        rng: draws the corners.
        has_wrong: which painted images carry their wrong-reason mask (default: all painted).

    Returns:
        The split with the disks painted and ``wrong_mask`` / ``has_wrong_mask`` set.
    """
    n, _, h, w = ds.x.shape
    disks = corner_disks(h, w, size)  # (4, H, W)
    overlap = torch.einsum("nhw,chw->nc", ds.mask[:, 0].double(), disks.double()).numpy()  # (N, 4) lesion pixels
    scores = rng.random((n, 4))
    scores[overlap > overlap.min(axis=1, keepdims=True) + 1e-9] = np.inf  # only the least-overlapping corners
    corner = torch.from_numpy(scores.argmin(axis=1))
    disk = disks[corner] & torch.from_numpy(which)[:, None, None]  # (N, H, W)
    colour = torch.tensor(MARKER_COLOUR, dtype=ds.x.dtype).view(1, 3, 1, 1)
    x = torch.where(disk[:, None], colour, ds.x)
    wrong = disk[:, None].to(ds.x.dtype)
    has = torch.from_numpy(which.copy())
    if has_wrong is not None:
        has = has & has_wrong
    return dataclasses.replace(ds, x=x, mask=ds.mask * (1 - wrong), wrong_mask=wrong, has_wrong_mask=has)


def corner_disks(h: int, w: int, size: float) -> torch.Tensor:
    """The marker disk in each corner: top-left, top-right, bottom-left, bottom-right.

    A pixel belongs to the disk when its centre lies within the radius; the disk keeps a margin of
    ``MARKER_MARGIN`` times the height from both borders. Shape: (4, H, W) bool.
    """
    r = size * h / 2
    off = MARKER_MARGIN * h + r  # distance of the disk's centre from the borders
    rows, cols = torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5
    out = []
    for cy, cx in ((off, off), (off, w - off), (h - off, off), (h - off, w - off)):
        out.append((rows[:, None] - cy) ** 2 + (cols[None, :] - cx) ** 2 <= r * r)
    return torch.stack(out)
