"""Benchmarks with explanation masks. Each dataset is a pure function of (size, data seed, options) -> Splits.

Besides its own options, every dataset takes the options of ``masks.MaskOptions``: ``mask_transform`` and
``mask_param`` (a registered transform of the training masks: other shapes, coarser, worse, placebos) and
``resample`` (``oversample``: the training split's classes repeated up to the largest one's count).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

from explearn.config import check_seed, from_dict, to_dict
from explearn.errors import ConfigError
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.datasets.color_mnist import ColorMNISTOptions, color_mnist
from explearn.datasets.decoy_mnist import DecoyMNISTOptions, decoy_mnist
from explearn.datasets.folder import (
    FolderOptions, FolderReport, FolderWarning, check_folder, inspect_folder, load_folder,
)
from explearn.datasets.images import MaskReading, Preprocess, read_mask
from explearn.datasets.masks import MASK_TRANSFORMS, MaskOptions, apply_to_training, transform_masks
from explearn.datasets.mnist import download_mnist, load_mnist
from explearn.datasets.ph2 import PH2Options, ph2
from explearn.datasets.toy_colors import ToyColorsOptions, toy_colors
from explearn.datasets.triangles import TriangleOptions, triangles
from explearn.registry import Registry


def folder(seed: int = 0, root: str = "", **options: Any) -> Splits:
    """The ``folder`` dataset: ``load_folder(root, seed, **options)`` (``--data root=DIR``)."""
    return load_folder(root, seed=seed, **options)


#: name -> (builder(seed=..., **options) -> Splits, options dataclass)
DATASETS: Registry = Registry("dataset")
DATASETS.register("triangles")((triangles, TriangleOptions))
DATASETS.register("decoy_mnist")((decoy_mnist, DecoyMNISTOptions))
DATASETS.register("color_mnist")((color_mnist, ColorMNISTOptions))
DATASETS.register("toy_colors")((toy_colors, ToyColorsOptions))
DATASETS.register("folder")((folder, FolderOptions))
DATASETS.register("ph2")((ph2, PH2Options))
MASK_KEYS = ("mask_transform", "mask_param", "resample")


def split_options(name: str, options: Mapping[str, Any]) -> tuple[dict[str, Any], MaskOptions]:
    """The dataset's own options and the mask options, each checked (unknown keys fail with suggestions)."""
    known = [f.name for f in dataclasses.fields(DATASETS.get(name)[1])] + list(MASK_KEYS)
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r}{hint} for dataset {name!r}; known settings: {', '.join(known)}")
    own = {k: v for k, v in options.items() if k not in MASK_KEYS}
    mask = from_dict(MaskOptions, {k: v for k, v in options.items() if k in MASK_KEYS}, f"dataset {name!r}")
    return own, mask


def normalize_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of dataset ``name`` with its defaults filled in; the mask options only when they transform
    the masks, ``resample`` only when it resamples (so that runs on the true masks and the drawn training split
    keep the identifiers they had before these options existed)."""
    own, mask = split_options(name, options)
    out = to_dict(from_dict(DATASETS.get(name)[1], own, f"dataset {name!r}"))
    shared = to_dict(mask)
    if mask.mask_transform != "none":
        out.update({k: shared[k] for k in ("mask_transform", "mask_param")})
    if mask.resample != "none":
        out["resample"] = mask.resample
    return out


def load(name: str, seed: int = 0, **options) -> Splits:
    """Build the registered dataset ``name`` with the data seed and options (its own and the mask options)."""
    check_seed(seed, f"dataset {name!r}: data seed")
    builder, _ = DATASETS.get(name)
    own, mask = split_options(name, options)
    return apply_to_training(builder(seed=seed, **own), mask, seed)


__all__ = ["DATASETS", "MASK_TRANSFORMS", "ColorMNISTOptions", "DecoyMNISTOptions", "ExplanationDataset", "FolderOptions",
           "FolderReport", "FolderWarning", "MaskOptions", "MaskReading", "PH2Options", "Preprocess", "Splits",
           "ToyColorsOptions", "TriangleOptions", "check_folder", "color_mnist", "decoy_mnist", "download_mnist",
           "inspect_folder", "load", "load_folder", "load_mnist", "normalize_options", "ph2", "read_mask", "toy_colors",
           "transform_masks", "triangles"]
