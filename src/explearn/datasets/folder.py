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
is trained and reported in one ``DataError``; ``check_folder`` returns the same list without raising. What looks
wrong but can be read by a documented rule (an empty mask, images resized to the most common size, ...) is a
warning: loading goes on, with one ``FolderWarning`` listing them (docs/user-guide.md: "How masks and images are read").
"""

from __future__ import annotations

import posixpath
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image

from explearn.config import check, check_seed, from_dict, setting, to_dict
from explearn.datasets.base import Splits, check_memory
from explearn.datasets.images import (IMAGE_EXTENSIONS, MAX_STRETCH, Preprocess, aspect_off, mask_format_problem,
                                      open_image, orientation_note, read_mask, walk_images)
from explearn.datasets.labels_csv import (case_twin, class_order, clean_label, label_key, label_variants,
                                          names_list, nfc, option_hint, read_labels_csv)
from explearn.datasets.masks import SHARED_OPTIONS
from explearn.datasets.parts import (
    SPLITS, FolderData, keep_masks, make_info, normalized, split_indices, split_problems, split_warnings, subset,
    to_splits,
)
from explearn.errors import DataError

IMAGE_SIZE_HOW = "--image-size HxW with fit, --data image_size=H,W with train, image_size=(H, W) in Python"


class FolderWarning(UserWarning):
    """Something in a folder dataset looks wrong but is read by a documented rule; loading goes on."""


@dataclass(frozen=True)
class FolderOptions:
    """Options of a folder dataset (the data seed is passed separately); see the module docstring for the layout."""

    root: str = setting("", "the dataset folder (required), holding labels.csv, images/ and masks/")
    labels: str = setting("labels.csv", "the CSV of labels, relative to root")
    images: str = setting("images", "the folder of images, relative to root")
    masks: str = setting("masks", "the folder of masks (<image stem>.png, white = reason), relative to root")
    reason_values: tuple[int, ...] | None = setting(
        None, "mask values that mark a reason, e.g. 1 or 1,2 (palette indices or grey levels); default: by the "
              "file's encoding (palette: index > 0; grey: value / full scale, two levels 0 and v: v)")
    image_column: str = setting("image", "CSV column with the image file, relative to the images folder")
    label_column: str = setting("label", "CSV column with the class label")
    split_column: str = setting("split", "CSV column with train/val/test, used when the CSV has it")
    classes: tuple[str, ...] | None = setting(None, "class order, e.g. nevus,melanoma; default: the sorted labels "
                                                    "(by value when all are integers: 2 before 10)")
    image_size: tuple[int, int] | None = setting(None, "(H, W) to resize to; default: the files' own size, or "
                                                       "the most common one when they differ")
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
            check(self.image_size[0] * self.image_size[1] <= Image.MAX_IMAGE_PIXELS, where,
                  f"image_size {self.image_size[0]}x{self.image_size[1]} is more than Pillow's limit of "
                  f"{Image.MAX_IMAGE_PIXELS:,} pixels per image")
        if self.classes is not None:
            names = [clean_label(c) for c in self.classes]  # as labels are compared (spaces, Unicode form)
            twice = sorted({c for c in names if names.count(c) > 1})
            check(not twice, where, f"classes names {', '.join(map(repr, twice))} more than once (classes="
                  f"{','.join(self.classes)}): name each class once, in the order of the class indices")
            check(len(names) >= 2, where, f"classes must name at least two classes, got {','.join(self.classes)}")
        for key in ("val_fraction", "test_fraction", "mask_fraction"):
            check(0.0 <= getattr(self, key) <= 1.0, where, f"{key} must lie in [0, 1], got {getattr(self, key)}")
        check(self.val_fraction + self.test_fraction < 1, where, "val_fraction + test_fraction must be below 1")
        if self.reason_values is not None:
            check(len(self.reason_values) >= 1 and min(self.reason_values) >= 0, where,
                  f"reason_values must be one or more values >= 0, got {self.reason_values}")

    def preprocess(self) -> Preprocess:
        """How each file is read, without normalisation (its statistics come after the split)."""
        return Preprocess(self.image_size, self.fit, self.channels, mask_resample=self.mask_resample,
                          reason_values=self.reason_values)


class _Row(NamedTuple):
    line: int
    file: str  # relative to the images folder, as on disk
    label: int
    split: str | None


@dataclass
class _Notes:
    """What a scan found that does not stop loading: warning lines, warnings shared by files (text -> files), and
    the rule that read each mask (file -> rule)."""

    lines: list[str] = field(default_factory=list)
    by_text: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rules: dict[str, str] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        return self.lines + [f"{names_list(files)}: {text}" for text, files in self.by_text.items()]


class _Scan(NamedTuple):
    data: FolderData | None  # None when there was a problem
    rows: list[_Row]  # the rows without a problem
    class_names: tuple[str, ...]
    problems: list[str]
    notes: _Notes
    preprocess: Preprocess  # how the files were read: opts.preprocess(), with the common size when resized
    resized: dict[str, Any] | None  # {"size": [H, W], "from": {"WxH": [files]}} when sizes differed


@dataclass(frozen=True)
class FolderReport:
    """Everything ``load_folder`` would say about a folder.

    Args:
        problems: what stops loading (``load_folder`` raises them in one DataError).
        warnings: what looks wrong but is read by a documented rule (``load_folder`` warns and goes on).
        mask_rules: mask file (as messages name it) -> the rule that read it (``images.read_mask``).
    """

    problems: list[str]
    warnings: list[str]
    mask_rules: dict[str, str]


def load_folder(root: str | Path, seed: int = 0, **options: Any) -> Splits:
    """A folder dataset as train / val / test splits.

    Args:
        root: the dataset folder.
        seed: the data seed: the stratified split (without a split column) and the masked subset.
        **options: the other fields of ``FolderOptions``.

    Returns:
        Splits with x (N, C, H, W) normalised as ``normalize`` says, y (N,), mask (N, 1, H, W) in [0, 1].
        ``info`` holds the options, class names, the ``Preprocess`` (with the statistics used and the size the
        images were resized to), the files of each split, ``mask_rules`` (rule -> number of masks it read),
        ``warnings`` and, when sizes differed without ``image_size``, ``resized``.

    Raises:
        ConfigError: an invalid option. DataError: every problem with the files, in one message.

    Warns:
        FolderWarning: every warning, in one message (``inspect_folder`` lists them).
    """
    opts = from_dict(FolderOptions, {**options, "root": str(root)}, "dataset 'folder'", SHARED_OPTIONS)
    check_seed(seed, "dataset 'folder': seed")
    scan = _scan(opts)
    index, problems, split_notes = _split(scan, seed, opts)
    if problems:
        raise DataError(report(opts.root, problems))
    notes = scan.notes.warnings() + split_notes
    _warn(opts.root, notes)
    data = scan.data
    parts = {s: subset(data, index[s]) for s in SPLITS}
    parts["train"] = keep_masks(parts["train"], opts.mask_fraction, seed)
    parts, pre = normalized(parts, scan.preprocess, opts.normalize)
    info = make_info("folder", seed, to_dict(opts), data.class_names, pre,
                     {s: [data.files[i] for i in index[s]] for s in SPLITS})
    info.update(mask_rules=dict(Counter(scan.notes.rules.values())), warnings=notes)
    if scan.resized:
        info["resized"] = scan.resized
    return to_splits(parts, data.class_names, info)


def check_folder(root: str | Path, seed: int = 0, warnings: bool = False, **options: Any) -> list[str]:
    """The problems ``load_folder`` would report for this folder and options; empty when it loads.

    Args:
        warnings: also list the warnings (loading goes on), each line starting with ``warning: ``.

    Raises:
        ConfigError: an invalid option (checked before the files).
    """
    found = inspect_folder(root, seed, **options)
    return found.problems + ([f"warning: {w}" for w in found.warnings] if warnings else [])


def inspect_folder(root: str | Path, seed: int = 0, **options: Any) -> FolderReport:
    """The problems and warnings ``load_folder`` would report, and the rule that read each mask.

    Raises:
        ConfigError: an invalid option (checked before the files).
    """
    opts = from_dict(FolderOptions, {**options, "root": str(root)}, "dataset 'folder'", SHARED_OPTIONS)
    scan = _scan(opts)
    _, problems, split_notes = _split(scan, seed, opts)
    return FolderReport(problems, scan.notes.warnings() + split_notes, dict(scan.notes.rules))


def read_folder(opts: FolderOptions) -> FolderData:
    """Read and decode every labelled image and mask once.

    Raises:
        DataError: every problem with the files, in one message.

    Warns:
        FolderWarning: what looks wrong but is read by a documented rule, in one message.
    """
    scan = _scan(opts)
    if scan.problems:
        raise DataError(report(opts.root, scan.problems))
    _warn(opts.root, scan.notes.warnings())
    return scan.data


def report(root: str, problems: list[str]) -> str:
    """One message for all problems: a count line naming the folder, then one indented line each."""
    n = len(problems)
    return "\n  ".join([f"{n} problem{'s' if n != 1 else ''} in folder dataset {root}:", *problems])


def _warn(root: str, lines: list[str]) -> None:
    if lines:
        n = len(lines)
        warnings.warn("\n  ".join([f"{n} warning{'s' if n != 1 else ''} for folder dataset {root} (loading goes "
                                    "on; check_folder(..., warnings=True) lists them):", *lines]),
                      FolderWarning, stacklevel=3)


# --- scanning -------------------------------------------------------------------------------------------------


def _scan(opts: FolderOptions) -> _Scan:
    """Check everything and decode every file once; the data only when there was no problem."""
    root = Path(opts.root).expanduser()
    problems: list[str] = []
    notes = _Notes()
    pre = opts.preprocess()
    if not root.is_dir():
        what = "a file, not a folder (give the folder that holds labels.csv)" if root.exists() else "folder not found"
        return _Scan(None, [], (), [f"{root}: {what}"], notes, pre, None)
    records = read_labels_csv(root, opts, problems)
    images_dir = root / opts.images
    if not images_dir.is_dir():
        twin = case_twin(root, opts.images)
        hint = f"; {twin}/ exists, but folder names are case-sensitive: {option_hint('images', twin)}" if twin else ""
        return _Scan(None, [], (), problems + [f"{opts.images}/: folder not found{hint}"], notes, pre, None)
    files, broken = walk_images(images_dir)
    problems += [_broken(opts.images, b, images_dir) for b in broken]
    masks = _list_masks(root, opts, problems, notes)
    problems += _shared_masks(files, masks, opts)
    named, rows, class_names = _resolve(records or [], files, opts, problems, images_dir)
    if records is not None:  # without a usable CSV every image would be "unlabelled": one problem says enough
        labelled = set(named)
        problems += [f"{_in(opts.images, f)}: no row of {opts.labels} names this image (an image without a "
                     "label)" for f in files if f not in labelled]
    stems = {nfc(_stem(f)) for f in files}
    problems += [f"{_in(opts.masks, m)}: no image {_in(opts.images, k)}.* for this mask (an orphan mask)"
                 for k, m in masks.items() if k not in stems]
    # every named file, so all corrupt ones are reported
    decoded, pre, resized = _decode(root, named, masks, opts, problems, notes)
    if problems or not rows:
        return _Scan(None, rows, class_names, problems, notes, pre, resized)
    x = torch.stack([decoded[r.file].image for r in rows])
    empty = torch.zeros(1, *x.shape[2:])
    mask = torch.stack([decoded[r.file].mask if decoded[r.file].mask is not None else empty for r in rows])
    has_mask = torch.tensor([decoded[r.file].mask is not None for r in rows])
    data = FolderData([r.file for r in rows], x, torch.tensor([r.label for r in rows]), mask, has_mask, class_names)
    return _Scan(data, rows, class_names, problems, notes, pre, resized)


def _split(scan: _Scan, seed: int, opts: FolderOptions) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """The split of the rows, every problem (the scan's and the split's) and the split's warnings."""
    labels = np.array([r.label for r in scan.rows], dtype=np.int64)
    csv_split = _csv_split(scan.rows)
    index = split_indices(labels, csv_split, seed, opts.val_fraction, opts.test_fraction)
    source = opts.labels if csv_split is not None else None
    return (index, scan.problems + split_problems(index, labels, scan.class_names, source),
            split_warnings(index, labels, scan.class_names, source))


def _list_masks(root: Path, opts: FolderOptions, problems: list[str], notes: _Notes) -> dict[str, str]:
    """Image stem (Unicode NFC) -> mask file (relative to the masks folder); a missing masks folder means no masks
    (with a warning when a folder named like it in another case exists: ``Masks``)."""
    folder = root / opts.masks
    if not folder.is_dir():
        twin = case_twin(root, opts.masks)
        if twin and (root / twin).is_dir():
            notes.lines.append(f"no folder {opts.masks}/, so no image has a mask; {twin}/ exists, but folder names "
                               f"are case-sensitive: to use it, {option_hint('masks', twin)}")
        return {}
    found, broken = walk_images(folder)
    problems += [_broken(opts.masks, b, folder) for b in broken]
    problems += [f"{_in(opts.masks, f)}: masks must be PNG files (a lossy format would blur the mask)"
                 for f in found if not f.lower().endswith(".png")]
    return {nfc(_stem(f)): f for f in found if f.lower().endswith(".png")}


def _shared_masks(files: list[str], masks: dict[str, str], opts: FolderOptions) -> list[str]:
    """A problem for each mask that would pair with several images: masks are found by the image's path without
    extension, so ``a0.png`` and ``a0.jpg`` would both take ``masks/a0.png``."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_stem[nfc(_stem(f))].append(f)
    return [f"{_in(opts.masks, masks[k])}: would be the mask of {' and '.join(_in(opts.images, f) for f in fs)} "
            "(masks are named by the image's name without extension, so it cannot tell them apart); rename one "
            "of the images (and its mask, if it has one)" for k, fs in by_stem.items() if len(fs) > 1 and k in masks]


def _resolve(records: list, files: list[str], opts: FolderOptions, problems: list[str],
             images_dir: Path) -> tuple[list[str], list[_Row], tuple[str, ...]]:
    """Match CSV rows to image files and labels to classes (``classes``, or the labels sorted: as numbers when
    every label is an integer, so 2 comes before 10; else as text).

    Returns:
        The image files the CSV names, the rows without a problem, and the class names."""
    names = _Names(files, images_dir, opts.images)
    first_line, matched, ambiguous = {}, [], set()
    for line, name, label, split in records:
        where = f"{opts.labels} line {line}"
        found = _match(name, names, where, opts.images, problems)
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
    classes = tuple(map(clean_label, opts.classes)) if opts.classes is not None else class_order(valid_labels)
    if opts.classes is not None:
        close = {label_key(c): c for c in classes}
        problems += [f"{opts.labels} line {line}: label {label!r} is not one of the classes {', '.join(classes)}"
                     + (f" (did you mean {close[label_key(label)]!r}? labels are compared exactly, "
                        f"{'case included' if isinstance(label_key(label), str) else 'as written'})"
                        if label_key(label) in close else "")
                     for line, _, label, _ in matched if label and label not in classes]
    else:
        problems += label_variants(matched, opts.labels)
        if records and len(classes) < 2:
            problems.append(f"{opts.labels}: found {len(classes)} class{'es' if len(classes) != 1 else ''} "
                            f"({', '.join(classes) or 'none'}); a classifier needs at least two")
    code = {c: k for k, c in enumerate(classes)}
    rows = [_Row(line, file, code[label], split) for line, file, label, split in matched
            if file is not None and label in code and (split is None or split in SPLITS)]
    return list(first_line) + sorted(ambiguous - set(first_line)), rows, classes


class _Names:
    """The image files, looked up the way CSV cells name them: by path or by path without extension, after
    Unicode NFC normalisation of both sides (macOS writes file names decomposed, spreadsheets composed); and,
    for messages, the files a name that matches none may have meant."""

    def __init__(self, files: list[str], folder: Path, images: str) -> None:
        self.folder, self.images = folder, PurePosixPath(images).as_posix()
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        self.by_fold: dict[str, list[str]] = defaultdict(list)
        for f in files:
            key = nfc(f)
            self.by_name[key].append(f)
            self.by_stem[_stem(key)].append(f)
            self.by_fold[key.casefold()].append(f)
            self.by_fold[_stem(key).casefold()].append(f)

    def find(self, name: str) -> list[str]:
        return self.by_name.get(name) or self.by_stem.get(name, [])

    def differing_in_case(self, name: str) -> list[str]:
        return sorted(set(self.by_fold.get(name.casefold(), [])))

    def hint(self, name: str) -> str:
        """What a name that matches no image may have meant (``; ...``), or empty: another case, a path given
        relative to the dataset folder, another extension, or a file that exists but is not read (hidden, or
        not an image type)."""
        close = self.differing_in_case(name)
        if close:
            return f"; names are case-sensitive: did you mean {', '.join(close)}?"
        inside = name[len(self.images) + 1:] if name.startswith(self.images + "/") else ""
        if inside and self.find(inside):
            return f"; paths are relative to {self.images}/: write {inside!r}"
        stem = _stem(name)
        if stem != name and self.by_stem.get(stem):
            return f"; {self.images}/ has {', '.join(self.by_stem[stem])} (another extension): did you mean it?"
        on_disk = [name] + [name + ext for ext in IMAGE_EXTENSIONS]
        exists = next((n for n in on_disk if (self.folder / n).is_file()), None)
        if exists is None:
            return ""
        if any(part.startswith(".") for part in PurePosixPath(exists).parts):
            return (f"; {exists} exists, but hidden files and folders (names starting with '.') are skipped: "
                    "rename it")
        suffix = posixpath.splitext(exists)[1]
        return (f"; {exists} exists, but {'files ending ' + suffix if suffix else 'a file without extension'} "
                f"{'are' if suffix else 'is'} not read as images (read: {', '.join(IMAGE_EXTENSIONS)})")


def _match(name: str, names: _Names, where: str, images: str, problems: list[str]) -> list[str]:
    """The image files a CSV cell names, exactly or by its path without extension: one when all is well; none,
    or several (ambiguous), with a problem. Names are case-sensitive, as on Linux file systems: a name that
    differs only in case is not matched, but suggested."""
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
    candidates = names.find(norm)
    if len(candidates) > 1:
        problems.append(f"{where}: image {name!r} matches several files ({', '.join(candidates)}); "
                        "give the extension")
    elif not candidates:
        problems.append(f"{where}: image {name!r} not found in {images}/ (a label without an image)"
                        f"{names.hint(norm)}")
    return candidates


class _Decoded(NamedTuple):
    image: torch.Tensor  # (C, H, W) in [0, 1]
    mask: torch.Tensor | None  # (1, H, W) in [0, 1]; None without a mask file
    size: tuple[int, int]  # (W, H) of the upright file
    mask_name: str | None  # the mask file as messages name it


def _decode(root: Path, files: list[str], masks: dict[str, str], opts: FolderOptions, problems: list[str],
            notes: _Notes) -> tuple[dict[str, _Decoded], Preprocess, dict[str, Any] | None]:
    """Decode each image (upright) and its mask once and check that masks fit their images; without image_size,
    bring images of different sizes to the most common one (``_to_common_size``).

    Returns:
        file -> decoded image and mask, for the files that could be read; the preprocessing that was applied;
        the record of resized files (None when nothing was resized)."""
    pre = opts.preprocess()
    if opts.image_size is not None:  # images and masks at that size, for every file: refuse what cannot fit
        h, w = opts.image_size
        check_memory(len(files) * (pre.n_channels + 1) * h * w, f"folder dataset {opts.root}",
                     f"a smaller image size ({IMAGE_SIZE_HOW})")
    out = {}
    for file in files:
        name = _in(opts.images, file)
        try:
            img = open_image(root / opts.images / file, name)
        except DataError as err:
            problems.append(str(err))
            continue
        try:
            x = pre.raw_image_from(img)
        except DataError as err:  # values outside the encoding's range (a float TIFF holding 0..255)
            problems.append(f"{name}: {err}")
            continue
        rel = masks.get(nfc(_stem(file)))
        mask = None if rel is None else _mask(root, file, rel, img, pre, opts, problems, notes)
        out[file] = _Decoded(x, mask, img.size, None if rel is None else _in(opts.masks, rel))
    if opts.image_size is not None or len({d.size for d in out.values()}) < 2:
        return out, pre, None
    return _to_common_size(out, pre, opts, problems, notes)


def _mask(root: Path, file: str, rel: str, img: Image.Image, pre: Preprocess, opts: FolderOptions,
          problems: list[str], notes: _Notes) -> torch.Tensor | None:
    """The mask file ``rel`` of the image ``file``, read by its encoding's rule (recorded in ``notes``); None with a
    problem, which is recorded. Shape: (1, H, W)."""
    name = _in(opts.masks, rel)
    try:
        m = open_image(root / opts.masks / rel, name)
        if mask_format_problem(m):  # JPEG data in a file named .png: its edges blurred into grey levels
            raise DataError(mask_format_problem(m))
        reading = read_mask(m, opts.reason_values)
    except DataError as err:
        problems.append(str(err) if str(err).startswith(name) else f"{name}: {err}")
        return None
    if m.size != img.size:
        (mw, mh), (w, h) = m.size, img.size
        aspect = "" if mw * h == mh * w else ", a different aspect ratio"
        sideways = ("; it matches the image as stored, before the EXIF rotation: it was drawn on a sideways view "
                    "(turn the mask upright, or remove the orientation tag from the image)"
                    if m.size == img.info.get("stored_size") else "")
        problems.append(f"{name}: mask is {mw}x{mh} pixels (width x height){orientation_note(m)}, its image "
                        f"{_in(opts.images, file)} is {w}x{h}{orientation_note(img)}{aspect}; a mask must have "
                        f"its image's size{sideways}")
        return None
    notes.rules[name] = reading.rule
    for text in reading.concerns:
        notes.by_text[text].append(name)
    out = pre.resize_mask(reading.values, img.size)
    _check_vanished(reading.values.max() > 0, out, name, pre, notes)
    return out


def _check_vanished(had_reason: bool, mask: torch.Tensor, name: str, pre: Preprocess, notes: _Notes) -> None:
    """Warn when resizing wiped out every reason pixel of a mask that had some (thin lines, nearest resizing)."""
    if had_reason and pre.size is not None and float(mask.max()) == 0:
        notes.by_text[f"its reason pixels vanish when resized to {pre.size[1]}x{pre.size[0]} (width x height); "
                      "set --data mask_resample=bilinear (mask_resample=\"bilinear\" in Python) or a larger "
                      "image size"].append(name)


def _to_common_size(decoded: dict[str, _Decoded], pre: Preprocess, opts: FolderOptions, problems: list[str],
                    notes: _Notes) -> tuple[dict[str, _Decoded], Preprocess, dict[str, Any] | None]:
    """Images of different sizes without image_size: resize every image (and its mask) to the most common size
    (ties: the largest), with a warning; but refuse to stretch images whose aspect ratio is more than
    ``MAX_STRETCH`` off the common one (``fit=crop`` centre-crops them instead)."""
    sizes = {f: d.size for f, d in decoded.items()}
    counts = Counter(sizes.values())
    w, h = max(counts, key=lambda s: (counts[s], s[0] * s[1], s[1]))
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for f, s in sizes.items():
        if s != (w, h):
            groups[s].append(_in(opts.images, f))
    by_count = sorted(groups.items(), key=lambda g: -len(g[1]))
    listed = "; ".join(f"{sw}x{sh}: {names_list(fs)}" for (sw, sh), fs in by_count)
    far = [s for s in groups if aspect_off(s, (w, h)) > MAX_STRETCH]
    if opts.fit == "stretch" and far:
        problems.append(f"images differ in size (width x height) and image_size is not set: {counts[(w, h)]} are "
                        f"{w}x{h}; {listed}; the aspect ratio of {len(far)} of these sizes differs by more than "
                        f"{MAX_STRETCH:.0%}, so stretching them to {w}x{h} would distort them: set --data fit=crop "
                        "(fit=\"crop\" in Python) to centre-crop them to it, or choose a size ("
                        f"{IMAGE_SIZE_HOW})")
        return decoded, pre, None
    target = replace(pre, size=(h, w))
    out = dict(decoded)
    for f, d in decoded.items():
        if d.size != (w, h):
            mask = None if d.mask is None else target.resize_mask(d.mask, d.size)
            if mask is not None:
                _check_vanished(bool(d.mask.max() > 0), mask, d.mask_name, target, notes)
            out[f] = _Decoded(target.resize_image(d.image), mask, d.size, d.mask_name)
    n = sum(map(len, groups.values()))
    how = "centre-cropped and resized" if opts.fit == "crop" else "stretched"
    notes.lines.append(f"images differ in size (width x height): {counts[(w, h)]} are {w}x{h}, the most common "
                       f"size; {n} image{'s' if n != 1 else ''} {'were' if n != 1 else 'was'} {how} to it, masks "
                       f"alike: {listed}. To choose the size: {IMAGE_SIZE_HOW}")
    return out, target, {"size": [h, w], "from": {f"{sw}x{sh}": fs for (sw, sh), fs in groups.items()}}


def _broken(folder: str, link: str, path: Path) -> str:
    target = (path / link).readlink()
    return f"{_in(folder, link)}: a symbolic link to {target}, which does not exist"


def _csv_split(rows: list[_Row]) -> list[str] | None:
    return None if not rows or rows[0].split is None else [r.split for r in rows]


def _stem(path: str) -> str:
    return posixpath.splitext(path)[0]


def _in(folder: str, file: str) -> str:
    return posixpath.join(PurePosixPath(folder).as_posix(), file)


