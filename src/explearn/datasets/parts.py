"""The steps shared by datasets read from image files (``folder``, ``ph2``) after decoding: the train / val / test
split, the share of masks in use, normalisation, and validation into ``Splits``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from explearn.datasets.base import ExplanationDataset, Splits
from explearn.datasets.images import Preprocess

SPLITS = ("train", "val", "test")
_SPLIT_KEY, _MASK_KEY = 3000, 3001  # random streams of the data seed: the stratified split, the masked subset
MIN_PER_CLASS = 3  # images a class needs for a stratified split: one each for train, val and test


@dataclass(frozen=True)
class FolderData:
    """Every labelled image of a folder, decoded and resized, in CSV order; not yet split or normalised.

    Shape: x (N, C, H, W) in [0, 1]; y (N,); mask (N, 1, H, W); has_mask (N,). ``files`` are the image paths
    relative to the images folder.
    """

    files: list[str]
    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    has_mask: torch.Tensor
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Part:
    """One split's tensors while it is being built; ``to_splits`` validates them once, as ExplanationDatasets.

    Shape: x (N, C, H, W); y (N,); mask, wrong_mask (N, 1, H, W); has_mask, has_wrong_mask (N,).
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    has_mask: torch.Tensor
    wrong_mask: torch.Tensor | None = None
    has_wrong_mask: torch.Tensor | None = None


def split_indices(y: np.ndarray, csv_split: list[str] | None, seed: int, val_fraction: float,
                  test_fraction: float) -> dict[str, np.ndarray]:
    """Sample indices of train / val / test, each sorted: the CSV's split column where given, else a split
    stratified by class (per class, round(fraction * count) to test, then to val, seeded by ``seed``). A class
    with at least 3 images gets at least one in each split whose fraction is positive, and keeps at least one for
    training (``class_shares``).

    Shape: y (N,) class indices -> three index arrays."""
    if csv_split is not None:
        values = np.array(csv_split, dtype=object)
        return {s: np.flatnonzero(values == s) for s in SPLITS}
    rng = np.random.default_rng([seed, _SPLIT_KEY])
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test, n_val = class_shares(len(members), test_fraction, val_fraction)
        out["test"] += members[:n_test].tolist()
        out["val"] += members[n_test:n_test + n_val].tolist()
        out["train"] += members[n_test + n_val:].tolist()
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in out.items()}


def class_shares(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    """How many of a class's ``n`` images go to test and to val: round(fraction * n), half up; with ``n >= 3``
    at least 1 for each positive fraction (a class with 3 images is in every split), and at most ``n - 1`` in
    all (one stays for training; the larger share gives way, val on a tie)."""
    n_test, n_val = _share(test_fraction, n), _share(val_fraction, n)
    if n >= MIN_PER_CLASS:
        n_test, n_val = max(n_test, int(test_fraction > 0)), max(n_val, int(val_fraction > 0))
    while n_test + n_val > n - 1 and n_test + n_val > 0:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_test, n_val


def split_problems(index: dict[str, np.ndarray], y: np.ndarray, class_names: tuple[str, ...],
                   csv_name: str | None = None) -> list[str]:
    """An empty split, a class without training images or, for a stratified split, a class with too few images
    to be in every split, as problem lines (empty when the splits are fine). ``csv_name``: the CSV whose split
    column made the split; None for a stratified split."""
    if not len(y):
        return []
    problems = []
    for s in SPLITS:
        if len(index[s]):
            continue
        if csv_name:
            problems.append(f"the {s} split is empty: no row of {csv_name} has split={s}")
        else:
            fraction = {"train": "val_fraction + test_fraction", "val": "val_fraction", "test": "test_fraction"}[s]
            problems.append(f"the {s} split is empty: {fraction} is too {'large' if s == 'train' else 'small'} "
                            f"for {len(y)} images")
    counts = np.bincount(y[index["train"]], minlength=len(class_names))
    totals = np.bincount(y, minlength=len(class_names))
    few = [k for k in range(len(class_names)) if 0 < totals[k] < MIN_PER_CLASS] if not csv_name else []
    problems += [f"class {class_names[k]!r} has {totals[k]} image{'s' if totals[k] != 1 else ''}: a split "
                 f"stratified by class needs at least {MIN_PER_CLASS} of each class (one each for train, val and "
                 f"test); add images of it, or give the CSV a split column" for k in few]
    # a class named in the classes option that no row carries: no split fraction can help it
    problems += [f"class {name!r} has no image at all: no row has the label {name!r}; add images of it, or leave it "
                 "out of the classes option (--data classes=..., classes=(...) in Python)"
                 for k, name in enumerate(class_names) if totals[k] == 0]
    hint = ("give it rows with split=train" if csv_name else
            "add images of it, or lower val_fraction / test_fraction (--data val_fraction=0.1, or val_fraction=0.1 "
            "in Python)")
    problems += [f"class {name!r} has no image in the training split ({int(totals[k])} in all); {hint}"
                 for k, name in enumerate(class_names)
                 if counts[k] == 0 and totals[k] > 0 and len(index["train"]) and k not in few]
    return problems


def split_warnings(index: dict[str, np.ndarray], y: np.ndarray, class_names: tuple[str, ...],
                   csv_name: str | None = None) -> list[str]:
    """A class missing from the val or test split of a CSV split column, as warning lines: the split is the
    user's, but that split's balanced accuracy then averages over the other classes and the class's recall there
    is NaN. A stratified split never misses a class (``split_problems`` refuses classes too small for it)."""
    if not len(y) or not csv_name:
        return []
    out = []
    for s in ("val", "test"):
        present = set(y[index[s]].tolist())
        missing = [name for k, name in enumerate(class_names) if k not in present and (y == k).any()]
        if missing and len(index[s]):
            out.append(f"the {s} split of {csv_name} has no image of class{'es' if len(missing) > 1 else ''} "
                       f"{', '.join(map(repr, missing))}: its balanced accuracy there averages over the other "
                       f"classes and its recall is NaN; give {'them' if len(missing) > 1 else 'it'} rows with "
                       f"split={s}")
    return out


def keep_masks(train: Part, fraction: float, seed: int) -> Part:
    """The training split with only a seeded share ``fraction`` of its masks in use (of those it has)."""
    if fraction >= 1.0:
        return train
    has = train.has_mask.clone()
    masked = np.flatnonzero(has.numpy())
    chosen = np.random.default_rng([seed, _MASK_KEY]).permutation(masked)[: _share(fraction, len(masked))]
    has[:] = False
    has[torch.from_numpy(chosen)] = True
    return dataclasses.replace(train, has_mask=has)


def normalized(parts: dict[str, Part], base: Preprocess, normalize: str) -> tuple[dict[str, Part], Preprocess]:
    """Normalise every split with one set of statistics (``Preprocess.with_statistics``: the training split's,
    ImageNet's or none); also returns the ``Preprocess`` with them, to prepare new images the same way."""
    pre = base.with_statistics(normalize, parts["train"].x)
    return {k: dataclasses.replace(p, x=pre.normalize(p.x)) for k, p in parts.items()}, pre


def subset(data: FolderData, index: np.ndarray, y: torch.Tensor | None = None) -> Part:
    """The images at ``index``, unnormalised, with their labels (or those of ``y``, indexed like the data)."""
    i = torch.from_numpy(index)
    return Part(data.x[i], (data.y if y is None else y)[i], data.mask[i], data.has_mask[i])


def to_splits(parts: dict[str, Part], class_names: tuple[str, ...], info: dict[str, Any]) -> Splits:
    """Validate each part as an ExplanationDataset named ``<dataset>/<split>``; train, val, test and the rest
    as extra evaluation splits."""
    ds = {s: ExplanationDataset(p.x, p.y, p.mask, p.has_mask, len(class_names), class_names,
                                f"{info['dataset']}/{s}", p.wrong_mask, p.has_wrong_mask) for s, p in parts.items()}
    extra = {s: d for s, d in ds.items() if s not in SPLITS}
    return Splits(ds["train"], ds["val"], ds["test"], extra, info)


def make_info(dataset: str, seed: int, options: dict, class_names: tuple[str, ...], pre: Preprocess,
              files: dict[str, list[str]]) -> dict[str, Any]:
    """``Splits.info`` of a folder-based dataset: enough to reproduce it and to prepare new images alike."""
    return {"dataset": dataset, "seed": seed, "data_seed": seed, "options": options,
            "class_names": list(class_names), "preprocess": pre.to_dict(), "files": files}


def _share(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))  # round half up: predictable, unlike Python's round-half-even
