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
    stratified by class (per class, round(fraction * count) to test, then to val, seeded by ``seed``).

    Shape: y (N,) class indices -> three index arrays."""
    if csv_split is not None:
        values = np.array(csv_split, dtype=object)
        return {s: np.flatnonzero(values == s) for s in SPLITS}
    rng = np.random.default_rng([seed, _SPLIT_KEY])
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test, n_val = _share(test_fraction, len(members)), _share(val_fraction, len(members))
        out["test"] += members[:n_test].tolist()
        out["val"] += members[n_test:n_test + n_val].tolist()
        out["train"] += members[n_test + n_val:].tolist()
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in out.items()}


def split_problems(index: dict[str, np.ndarray], y: np.ndarray, class_names: tuple[str, ...],
                   csv_name: str | None = None) -> list[str]:
    """An empty split, or a class without training images, as problem lines (empty when the splits are fine).
    ``csv_name``: the CSV whose split column made the split; None for a stratified split."""
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
    hint = "give it rows with split=train" if csv_name else "add images of it, or lower val_fraction/test_fraction"
    problems += [f"class {name!r} has no image in the training split ({int((y == k).sum())} in all); {hint}"
                 for k, name in enumerate(class_names) if counts[k] == 0 and len(index["train"])]
    return problems


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


def _share(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))  # round half up: predictable, unlike Python's round-half-even
