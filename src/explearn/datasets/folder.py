"""Your own images as a dataset: a folder with a CSV of labels, the images and optional explanation masks.

Layout::

    ROOT/labels.csv          columns: image, label, and optionally split (train / val / test)
    ROOT/images/<file>       png, jpg / jpeg, bmp, tif / tiff or webp; subfolders allowed
    ROOT/masks/<stem>.png    optional, per image: the mask of images/<stem>.<ext> (white = reason; grey = soft)

The ``image`` column names a file relative to ``images/``, with or without its extension (``IMD003`` finds
``IMD003.png``), possibly in a subfolder (``lesions/a.jpg``, whose mask is ``masks/lesions/a.png``). Images
without a mask file are simply unexplained (``has_mask`` False). Without a split column the images are split
stratified by class, seeded by the data seed. Every problem with the files (a label without an image, an image
without a label, a mask of the wrong size, a corrupt file, an unknown label, ...) is collected before anything
is trained and reported in one ``DataError``; ``check_folder`` returns the same list without raising.
"""

from __future__ import annotations

import csv
import posixpath
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from explearn.config import check, from_dict, setting, to_dict
from explearn.datasets.base import Splits
from explearn.datasets.images import Preprocess, list_images, open_image
from explearn.datasets.parts import (
    SPLITS, FolderData, keep_masks, make_info, normalized, split_indices, split_problems, subset, to_splits,
)
from explearn.errors import DataError

_LISTED = 10  # files named per message before "and N more"


@dataclass(frozen=True)
class FolderOptions:
    """Options of a folder dataset (the data seed is passed separately); see the module docstring for the layout."""

    root: str = setting("", "the dataset folder (required), holding labels.csv, images/ and masks/")
    labels: str = setting("labels.csv", "the CSV of labels, relative to root")
    images: str = setting("images", "the folder of images, relative to root")
    masks: str = setting("masks", "the folder of masks (<image stem>.png, white = reason), relative to root")
    image_column: str = setting("image", "CSV column with the image file, relative to the images folder")
    label_column: str = setting("label", "CSV column with the class label")
    split_column: str = setting("split", "CSV column with train/val/test, used when the CSV has it")
    classes: tuple[str, ...] | None = setting(None, "class order, e.g. nevus,melanoma; default: the sorted labels")
    image_size: tuple[int, int] | None = setting(None, "(H, W) to resize to; default: the files' own (equal) size")
    fit: Literal["stretch", "crop"] = setting("stretch", "stretch to image_size, or centre-crop to its aspect first")
    channels: Literal["rgb", "grey"] = setting("rgb", "colour channels of the tensors")
    mask_resample: Literal["nearest", "bilinear"] = setting("nearest", "how masks are resized")
    normalize: Literal["train", "imagenet", "none"] = setting(
        "train", "per-channel mean/std: of the training split (masked pixels, set to 0, become the mean colour), "
                 "ImageNet's (for pretrained backbones), or none"
    )
    val_fraction: float = setting(0.2, "share of each class for validation, without a split column")
    test_fraction: float = setting(0.2, "share of each class for testing, without a split column")
    mask_fraction: float = setting(1.0, "share of the training images with a mask file whose mask is used")

    def __post_init__(self) -> None:
        where = "dataset 'folder'"
        check(bool(str(self.root).strip()), where, "root is required: the folder with labels.csv and images/")
        if self.image_size is not None:
            check(min(self.image_size) >= 1, where, f"image_size must be (H, W) >= 1, got {self.image_size}")
        if self.classes is not None:
            check(len(set(self.classes)) == len(self.classes) >= 2, where,
                  f"classes must name at least two distinct classes, got {self.classes}")
        for key in ("val_fraction", "test_fraction", "mask_fraction"):
            check(0.0 <= getattr(self, key) <= 1.0, where, f"{key} must lie in [0, 1], got {getattr(self, key)}")
        check(self.val_fraction + self.test_fraction < 1, where, "val_fraction + test_fraction must be below 1")

    def preprocess(self) -> Preprocess:
        """How each file is read, without normalisation (its statistics come after the split)."""
        return Preprocess(self.image_size, self.fit, self.channels, mask_resample=self.mask_resample)


class _Row(NamedTuple):
    line: int
    file: str  # relative to the images folder
    label: int
    split: str | None


class _Scan(NamedTuple):
    data: FolderData | None  # None when there was a problem
    rows: list[_Row]  # the rows without a problem
    class_names: tuple[str, ...]
    problems: list[str]


def load_folder(root: str | Path, seed: int = 0, **options: Any) -> Splits:
    """A folder dataset as train / val / test splits.

    Args:
        root: the dataset folder.
        seed: the data seed: the stratified split (without a split column) and the masked subset.
        **options: the other fields of ``FolderOptions``.

    Returns:
        Splits with x (N, C, H, W) normalised as ``normalize`` says, y (N,), mask (N, 1, H, W) in [0, 1].
        ``info`` holds the options, class names, the ``Preprocess`` (with the statistics used) and the files of
        each split.

    Raises:
        ConfigError: an invalid option. DataError: every problem with the files, in one message.
    """
    opts = from_dict(FolderOptions, {**options, "root": str(root)}, "dataset 'folder'")
    scan = _scan(opts)
    index, problems = _split(scan, seed, opts)
    if problems:
        raise DataError(report(opts.root, problems))
    data = scan.data
    parts = {s: subset(data, index[s]) for s in SPLITS}
    parts["train"] = keep_masks(parts["train"], opts.mask_fraction, seed)
    parts, pre = normalized(parts, opts.preprocess(), opts.normalize)
    info = make_info("folder", seed, to_dict(opts), data.class_names, pre,
                     {s: [data.files[i] for i in index[s]] for s in SPLITS})
    return to_splits(parts, data.class_names, info)


def check_folder(root: str | Path, seed: int = 0, **options: Any) -> list[str]:
    """The problems ``load_folder`` would report for this folder and options; empty when it loads.

    Raises:
        ConfigError: an invalid option (checked before the files).
    """
    opts = from_dict(FolderOptions, {**options, "root": str(root)}, "dataset 'folder'")
    return _split(_scan(opts), seed, opts)[1]


def read_folder(opts: FolderOptions) -> FolderData:
    """Read and decode every labelled image and mask once.

    Raises:
        DataError: every problem with the files, in one message.
    """
    scan = _scan(opts)
    if scan.problems:
        raise DataError(report(opts.root, scan.problems))
    return scan.data


def report(root: str, problems: list[str]) -> str:
    """One message for all problems: a count line naming the folder, then one indented line each."""
    n = len(problems)
    return "\n  ".join([f"{n} problem{'s' if n != 1 else ''} in folder dataset {root}:", *problems])


# --- scanning -------------------------------------------------------------------------------------------------


def _scan(opts: FolderOptions) -> _Scan:
    """Check everything and decode every file once; the data only when there was no problem."""
    root = Path(opts.root).expanduser()
    problems: list[str] = []
    if not root.is_dir():
        return _Scan(None, [], (), [f"{root}: folder not found"])
    records = _read_csv(root, opts, problems)
    images_dir = root / opts.images
    if not images_dir.is_dir():
        return _Scan(None, [], (), problems + [f"{opts.images}/: folder not found"])
    files = list_images(images_dir)
    masks = _list_masks(root, opts, problems)
    named, rows, class_names = _resolve(records or [], files, opts, problems)
    if records is not None:  # without a usable CSV every image would be "unlabelled": one problem says enough
        labelled = set(named)
        problems += [f"{_in(opts.images, f)}: no row of {opts.labels} names this image (an image without a "
                     "label)" for f in files if f not in labelled]
    stems = {_stem(f) for f in files}
    problems += [f"{_in(opts.masks, m)}: no image {_in(opts.images, k)}.* for this mask (an orphan mask)"
                 for k, m in masks.items() if k not in stems]
    decoded = _decode(root, named, masks, opts, problems)  # every named file, so all corrupt ones are reported
    if problems or not rows:
        return _Scan(None, rows, class_names, problems)
    x = torch.stack([decoded[r.file][0] for r in rows])
    empty = torch.zeros(1, *x.shape[2:])
    mask = torch.stack([decoded[r.file][1] if decoded[r.file][1] is not None else empty for r in rows])
    has_mask = torch.tensor([decoded[r.file][1] is not None for r in rows])
    data = FolderData([r.file for r in rows], x, torch.tensor([r.label for r in rows]), mask, has_mask, class_names)
    return _Scan(data, rows, class_names, problems)


def _split(scan: _Scan, seed: int, opts: FolderOptions) -> tuple[dict[str, np.ndarray], list[str]]:
    """The split of the rows, and every problem: the scan's and the split's."""
    labels = np.array([r.label for r in scan.rows], dtype=np.int64)
    csv_split = _csv_split(scan.rows)
    index = split_indices(labels, csv_split, seed, opts.val_fraction, opts.test_fraction)
    source = opts.labels if csv_split is not None else None
    return index, scan.problems + split_problems(index, labels, scan.class_names, source)


def _read_csv(root: Path, opts: FolderOptions, problems: list[str]) -> list[tuple[int, str, str, str | None]] | None:
    """(line, image, label, split) of every CSV row, the cells stripped; None, with a problem, when the CSV is
    missing, unreadable or lacks a column."""
    path = root / opts.labels
    if not path.is_file():
        problems.append(f"{opts.labels}: not found (expected a CSV with columns "
                        f"{opts.image_column}, {opts.label_column} and optionally {opts.split_column})")
        return None
    out = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: spreadsheet exports start with a BOM
            reader = csv.DictReader(fh)
            found = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = found
            missing = [c for c in (opts.image_column, opts.label_column) if c not in found]
            if missing:
                problems.append(f"{opts.labels}: no column {', '.join(map(repr, missing))} "
                                f"(columns found: {', '.join(found) or 'none'})")
                return None
            split_col = opts.split_column if opts.split_column in found else None
            for rec in reader:
                cell = lambda c: (rec.get(c) or "").strip()  # noqa: E731 (short rows give None)
                out.append((reader.line_num, cell(opts.image_column), cell(opts.label_column),
                            cell(split_col).lower() if split_col else None))
    except (UnicodeDecodeError, csv.Error) as err:
        problems.append(f"{opts.labels}: cannot be read as a UTF-8 CSV file ({err})")
        return None
    if not out:
        problems.append(f"{opts.labels}: no rows")
    return out


def _list_masks(root: Path, opts: FolderOptions, problems: list[str]) -> dict[str, str]:
    """Image stem -> mask file (relative to the masks folder); a missing masks folder means no masks."""
    folder = root / opts.masks
    if not folder.is_dir():
        return {}
    found = list_images(folder)
    problems += [f"{_in(opts.masks, f)}: masks must be PNG files (a lossy format would blur the mask)"
                 for f in found if not f.lower().endswith(".png")]
    return {_stem(f): f for f in found if f.lower().endswith(".png")}


def _resolve(records: list, files: list[str], opts: FolderOptions,
             problems: list[str]) -> tuple[list[str], list[_Row], tuple[str, ...]]:
    """Match CSV rows to image files and labels to classes.

    Returns:
        The image files the CSV names, the rows without a problem, and the class names."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_stem[_stem(f)].append(f)
    present, first_line, matched, ambiguous = set(files), {}, [], set()
    for line, name, label, split in records:
        where = f"{opts.labels} line {line}"
        found = _match(name, present, by_stem, where, opts.images, problems)
        file = found[0] if len(found) == 1 else None
        ambiguous.update(found if len(found) > 1 else [])  # named, if ambiguously: not "without a label"
        if label == "":
            problems.append(f"{where}: empty label for image {name!r}")
        if split is not None and split not in SPLITS:
            problems.append(f"{where}: split {split!r} is not one of train, val, test")
        if file is not None and file in first_line:
            problems.append(f"{where}: image {_in(opts.images, file)} is listed again (first on line "
                            f"{first_line[file]})")
            continue
        if file is not None:
            first_line[file] = line
        matched.append((line, file, label, split))
    valid_labels = [label for _, _, label, _ in matched if label]
    classes = tuple(opts.classes) if opts.classes is not None else tuple(sorted(set(valid_labels)))
    if opts.classes is not None:
        problems += [f"{opts.labels} line {line}: label {label!r} is not one of the classes {', '.join(classes)}"
                     for line, _, label, _ in matched if label and label not in classes]
    elif records and len(classes) < 2:
        problems.append(f"{opts.labels}: found {len(classes)} class{'es' if len(classes) != 1 else ''} "
                        f"({', '.join(classes) or 'none'}); a classifier needs at least two")
    code = {c: k for k, c in enumerate(classes)}
    rows = [_Row(line, file, code[label], split) for line, file, label, split in matched
            if file is not None and label in code and (split is None or split in SPLITS)]
    return list(first_line) + sorted(ambiguous - set(first_line)), rows, classes


def _match(name: str, present: set[str], by_stem: dict[str, list[str]], where: str, images: str,
           problems: list[str]) -> list[str]:
    """The image files a CSV cell names, exactly or by its path without extension: one when all is well; none,
    or several (ambiguous), with a problem."""
    posix = name.replace("\\", "/")
    if not name:
        problems.append(f"{where}: empty image name")
        return []
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(name).drive:
        problems.append(f"{where}: image path {name!r} is absolute; give it relative to {images}/")
        return []
    norm = posixpath.normpath(posix)
    if norm == ".." or norm.startswith("../"):
        problems.append(f"{where}: image path {name!r} points outside {images}/")
        return []
    candidates = [norm] if norm in present else by_stem.get(norm, [])
    if len(candidates) > 1:
        problems.append(f"{where}: image {name!r} matches several files ({', '.join(candidates)}); "
                        "give the extension")
    elif not candidates:
        problems.append(f"{where}: image {name!r} not found in {images}/ (a label without an image)")
    return candidates


def _decode(root: Path, files: list[str], masks: dict[str, str], opts: FolderOptions,
            problems: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Decode each image and its mask once; check that masks fit their images and, without image_size, that all
    images have one size.

    Returns:
        file -> (image (C, H, W) in [0, 1], mask (1, H, W) or None), for the files that could be read."""
    pre = opts.preprocess()
    out, sizes = {}, {}
    for file in files:
        name = _in(opts.images, file)
        try:
            img = open_image(root / opts.images / file, name)
        except DataError as err:
            problems.append(str(err))
            continue
        sizes[name] = img.size
        out[file] = (pre.raw_image_from(img), _mask(root, file, masks, img.size, pre, opts, problems))
    if opts.image_size is None:
        _check_sizes(sizes, problems)
    return out


def _mask(root: Path, file: str, masks: dict[str, str], image_size: tuple[int, int], pre: Preprocess,
          opts: FolderOptions, problems: list[str]) -> torch.Tensor | None:
    """The mask of one image, None without a mask file (or with a problem, which is recorded)."""
    rel = masks.get(_stem(file))
    if rel is None:
        return None
    name = _in(opts.masks, rel)
    try:
        img = open_image(root / opts.masks / rel, name)
    except DataError as err:
        problems.append(str(err))
        return None
    if img.size != image_size:
        (mw, mh), (w, h) = img.size, image_size
        aspect = "" if mw * h == mh * w else ", a different aspect ratio"
        problems.append(f"{name}: mask is {mw}x{mh} pixels (width x height), its image "
                        f"{_in(opts.images, file)} is {w}x{h}{aspect}; a mask must have its image's size")
        return None
    return pre.mask_from(img, image_size)


def _check_sizes(sizes: dict[str, tuple[int, int]], problems: list[str]) -> None:
    """Without image_size every image must have one size: name the images of the less common sizes."""
    counts = Counter(sizes.values())
    if len(counts) < 2:
        return
    (w, h), n = counts.most_common(1)[0]
    others = "; ".join(f"{ow}x{oh}: {_names([k for k, s in sizes.items() if s == (ow, oh)])}"
                       for (ow, oh), _ in counts.most_common()[1:])
    problems.append(f"images differ in size (width x height) and image_size is not set: {n} are {w}x{h}; "
                    f"{others} (set image_size=H,W to resize them all)")


def _csv_split(rows: list[_Row]) -> list[str] | None:
    return None if not rows or rows[0].split is None else [r.split for r in rows]


def _stem(path: str) -> str:
    return posixpath.splitext(path)[0]


def _in(folder: str, file: str) -> str:
    return posixpath.join(PurePosixPath(folder).as_posix(), file)


def _names(files: list[str]) -> str:
    more = f" and {len(files) - _LISTED} more" if len(files) > _LISTED else ""
    return ", ".join(files[:_LISTED]) + more
