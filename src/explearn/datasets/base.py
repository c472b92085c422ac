"""The data type every method trains on: images, labels and explanation masks, validated on construction."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from explearn.errors import ConfigError, DataError


@dataclass(frozen=True)
class ExplanationDataset:
    """Images with labels and, for some or all of them, a mask of the features that are the reason for the label.

    A mask value of 1 marks a right reason (a pixel of the object that decides the class), 0 everything else;
    values in between are soft masks. Samples whose ``has_mask`` is False have no explanation: methods skip their
    explanation terms, and the content of their ``mask`` row is ignored.

    A dataset may also, or instead, carry **wrong-reason** masks (1 on a confounder the model must not use, such as
    the decoy patch of Decoy-MNIST) in ``wrong_mask`` / ``has_wrong_mask``. Methods take the kind they need and
    convert the other by its complement where only that one exists (``methods.base.reasons``).

    Args:
        x: images, float32 or float64.
        y: integer class labels in ``[0, n_classes)``.
        mask: explanation masks in [0, 1], bool or float; one channel (shared by all image channels) or one per
            image channel. ``None`` means no sample has a mask.
        has_mask: which samples have a mask; default: all of them when ``mask`` is given, none otherwise.
        wrong_mask, has_wrong_mask: wrong-reason masks, the same rules as ``mask`` / ``has_mask``.
        n_classes: number of classes; default ``max(y) + 1``.
        class_names: optional names, one per class.
        name: what this dataset is, for messages ("triangles/train").

    Shape:
        x: (N, C, H, W); y: (N,); mask, wrong_mask: (N, 1, H, W) or (N, C, H, W); has_mask, has_wrong_mask: (N,).

    Raises:
        DataError: with the dataset name and the offending field, on any wrong shape, dtype, range or NaN.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None
    has_mask: torch.Tensor | None = None
    n_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    name: str = "dataset"
    wrong_mask: torch.Tensor | None = None
    has_wrong_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise fields once, here
        x = _as_tensor(self.x, "x", self.name)
        if x.dim() != 4:
            raise DataError(f"{self.name}: x must have shape (N, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise DataError(
                f"{self.name}: x must be float32 or float64, got {x.dtype} "
                "(scale integer images to [0, 1] first, e.g. x / 255)"
            )
        _check_finite(x, "x", self.name)
        n, c, h, w = x.shape
        if n == 0:
            raise DataError(f"{self.name}: the dataset is empty")

        y = _as_tensor(self.y, "y", self.name)
        if y.dim() != 1 or y.shape[0] != n:
            raise DataError(f"{self.name}: y must have shape ({n},) to match x, got {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(f"{self.name}: y must hold integer class labels, got {y.dtype}")
        y = y.long()
        n_classes = int(y.max()) + 1 if self.n_classes is None else int(self.n_classes)
        if n_classes < 2:
            inferred = ("" if self.n_classes is not None else f" (its labels are all {int(y.max())}, so the number of "
                        "classes read from them, max(y) + 1, is 1; pass n_classes=K, the task's number of classes, "
                        "for a split that lacks the higher classes)")
            raise DataError(f"{self.name}: need at least 2 classes, got n_classes={n_classes}{inferred}")
        bad = ((y < 0) | (y >= n_classes)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{self.name}: label {int(y[i])} at sample {i} is outside [0, {n_classes}) "
                f"({len(bad)} labels out of range)"
            )

        mask, has_mask = _masks(self.mask, self.has_mask, x, "mask", self.name)
        wrong_mask, has_wrong_mask = _masks(self.wrong_mask, self.has_wrong_mask, x, "wrong_mask", self.name)

        if self.class_names is not None and len(self.class_names) != n_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names given for {n_classes} classes"
            )
        set_(self, "x", x)
        set_(self, "y", y)
        set_(self, "mask", mask)
        set_(self, "has_mask", has_mask)
        set_(self, "wrong_mask", wrong_mask)
        set_(self, "has_wrong_mask", has_wrong_mask)
        set_(self, "_inferred_classes", self.n_classes is None)  # for Splits: labels 1..K make a phantom class 0
        set_(self, "n_classes", n_classes)
        if self.class_names is not None:
            set_(self, "class_names", tuple(str(s) for s in self.class_names))

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.n_classes).tolist()

    def subset(self, index: torch.Tensor | np.ndarray | list[int], name: str | None = None) -> "ExplanationDataset":
        """The samples at ``index`` (a new dataset; tensors are indexed, not shared)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ExplanationDataset(
            self.x[index], self.y[index], self.mask[index], self.has_mask[index],
            self.n_classes, self.class_names, name or self.name, self.wrong_mask[index], self.has_wrong_mask[index],
        )

    def to(self, device: torch.device | str, channels_last: bool = False,
           dtype: torch.dtype | None = None) -> "ExplanationDataset":
        """A copy on ``device``, optionally with images and masks in channels-last memory layout (same values;
        much faster convolutions on CPU) and in another floating dtype (a model's: float64 images for a float32
        model). Validation is repeated, which is cheap next to training."""
        layout = torch.channels_last if channels_last else torch.contiguous_format
        x, mask, wrong = (t.to(device, dtype=dtype).contiguous(memory_format=layout)
                          for t in (self.x, self.mask, self.wrong_mask))
        return ExplanationDataset(
            x, self.y.to(device), mask, self.has_mask.to(device), self.n_classes, self.class_names, self.name,
            wrong, self.has_wrong_mask.to(device),
        )


@dataclass(frozen=True)
class Splits:
    """A benchmark instance: training data, a validation split from the training distribution, a test split,
    and optional further evaluation splits (e.g. ``test_spurious``).

    ``info`` records how the data were made (dataset name, options, data seed), for results files.
    """

    train: ExplanationDataset
    val: ExplanationDataset
    test: ExplanationDataset
    extra: Mapping[str, ExplanationDataset] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape, k = self.train.input_shape, self.train.n_classes
        for split, ds in self.eval_splits().items():
            if ds.input_shape != shape:
                raise DataError(f"split {split!r} has images of shape {ds.input_shape}, train has {shape}")
            if ds.n_classes != k:
                raise DataError(f"split {split!r} has {ds.n_classes} classes, train has {k}")
        _check_training_classes(self.train)

    def eval_splits(self) -> dict[str, ExplanationDataset]:
        """Every split that is evaluated after each epoch, by name: train, val, test and the extra ones."""
        return {"train": self.train, "val": self.val, "test": self.test, **self.extra}

    @property
    def n_classes(self) -> int:
        return self.train.n_classes  # type: ignore[return-value]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.input_shape

    def drawn_class_counts(self) -> list[int]:
        """Training samples per class as drawn, before any resampling (the data option ``resample`` records them in
        ``info["drawn_class_counts"]``): what makes a class the minority class of ``minority_acc``."""
        return list(self.info.get("drawn_class_counts") or self.train.class_counts())


def _check_training_classes(train: ExplanationDataset) -> None:
    """Every class in [0, n_classes) needs a training sample. When n_classes was inferred as max(y) + 1, a missing
    class is almost always a labelling slip (labels 1, 2 instead of 0, 1): refused. When n_classes was given, the
    class is missing on purpose or by an unlucky split: a warning, since the model can never learn to predict it.

    Raises:
        DataError: n_classes was inferred and a class below max(y) has no training sample.
    """
    counts = train.class_counts()
    missing = [k for k, c in enumerate(counts) if c == 0]
    if not missing:
        return
    labels = ", ".join(str(k) for k, c in enumerate(counts) if c)
    which = ", ".join(map(str, missing))
    s = "es" if len(missing) > 1 else ""
    if getattr(train, "_inferred_classes", False):
        raise DataError(f"{train.name}: labels are {labels}: class{s} {which} {'have' if s else 'has'} no training "
                        f"sample; labels must be 0..K-1 (renumber them, e.g. y - 1), or give n_classes=K explicitly "
                        f"if a class has no training sample on purpose")
    warnings.warn(f"{train.name}: class{s} {which} of n_classes={train.n_classes} {'have' if s else 'has'} no "
                  "training sample; the model cannot learn to predict it", stacklevel=4)


def check_memory(n_values: int, what: str, how: str) -> None:
    """Refuse to build tensors of ``n_values`` float32 values when they would not fit in the memory free now (a
    mistyped size would otherwise hang the machine while it swaps, or end in an allocator's traceback).

    Args:
        n_values: how many float32 values will be held at once.
        what: what is being built, for the message ("dataset 'triangles'").
        how: what to change, for the message ("a smaller image_size or fewer samples").

    Raises:
        ConfigError: the values need more than the free memory (where the system reports it; else no check).
    """
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not reported here (e.g. macOS, Windows): no check
        return
    need = 4 * n_values
    if need > free:
        raise ConfigError(f"{what}: would need {need / 2**30:.1f} GiB of memory for its tensors, {free / 2**30:.1f} "
                          f"GiB are free; choose {how}")


def _masks(mask: Any, has: Any, x: torch.Tensor, field_name: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one kind of mask and its ``has_*`` flags against the images; None becomes zeros, no sample."""
    n, c, h, w = x.shape
    flags = f"has_{field_name}" if field_name == "wrong_mask" else "has_mask"
    if mask is None:
        if has is not None and bool(torch.as_tensor(has).any()):
            raise DataError(f"{name}: {flags} marks samples with masks but {field_name} is None")
        return torch.zeros(n, 1, h, w, dtype=x.dtype), torch.zeros(n, dtype=torch.bool)
    mask = _as_tensor(mask, field_name, name)
    if mask.dtype == torch.bool:
        mask = mask.to(x.dtype)
    if not mask.is_floating_point():
        raise DataError(f"{name}: {field_name} must be bool or float with values in [0, 1], got {mask.dtype}")
    if mask.dim() != 4 or mask.shape[0] != n or mask.shape[2:] != (h, w) or mask.shape[1] not in (1, c):
        shapes = f"({n}, 1, {h}, {w})" + (f" or ({n}, {c}, {h}, {w})" if c != 1 else "")
        raise DataError(f"{name}: {field_name} must have shape {shapes} to match x, got {tuple(mask.shape)}")
    _check_finite(mask, field_name, name)
    lo, hi = float(mask.min()), float(mask.max())
    if lo < 0 or hi > 1:
        i = int(((mask < 0) | (mask > 1)).flatten(1).any(1).nonzero()[0])
        raise DataError(
            f"{name}: {field_name} values must lie in [0, 1], found range [{lo:g}, {hi:g}] "
            f"(first offending sample: {i})"
        )
    mask = mask.to(x.dtype)
    has = torch.ones(n, dtype=torch.bool) if has is None else _as_tensor(has, flags, name)
    if has.shape != (n,):
        raise DataError(f"{name}: {flags} must have shape ({n},), got {tuple(has.shape)}")
    if has.dtype != torch.bool:
        raise DataError(f"{name}: {flags} must be bool, got {has.dtype}")
    return mask, has


def _as_tensor(value: Any, field_name: str, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: {field_name} cannot be read as an array ({err})") from None


def _check_finite(t: torch.Tensor, field_name: str, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bad.any():
        i = int(bad.flatten(1).any(1).nonzero()[0])
        raise DataError(
            f"{name}: {field_name} contains {int(bad.sum())} NaN or infinite values (first at sample {i})"
        )
