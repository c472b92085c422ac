"""Preprocessing of one image file and its mask: decode upright, convert, crop, resize and normalise, the same
geometry for both; how each mask encoding becomes values in [0, 1] (``read_mask``).

``Preprocess`` is saved with every model trained on a folder dataset (``Splits.info["preprocess"]``), so that new
images are prepared exactly like the training images (``Preprocess.from_dict(info["preprocess"]).image(path)``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from explearn.config import check, from_dict, to_dict
from explearn.errors import DataError

#: file endings read as images (lower case); masks are always PNG
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0,
               "F": 1.0}  # mode -> full scale
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}
_ORIENTATION = ExifTags.Base.Orientation  # 0x0112
_SIDEWAYS = (5, 6, 7, 8)  # orientations that swap width and height
FAINT = 0.1  # a mask none of whose values reaches this share of full scale is reported as faint
FEW_LEVELS = 8  # a grey mask with at most this many levels may hold class indices (0, 1, 255) rather than greys
#: a mask whose mean value is above this is reported as mostly reason (inverted?); the largest PH2 lesion mask
#: covers 98.3 % of its image (docs/user-guide.md: "How masks and images are read")
MOSTLY_REASON = 0.99
MAX_STRETCH = 0.10  # images whose aspect ratio is this much off the target's are not stretched to it


def aspect_off(size: tuple[int, int], common: tuple[int, int]) -> float:
    """How far the aspect ratio of ``size`` is off that of ``common``, both (W, H): 0.1 = 10 % wider or taller."""
    ratio = (size[0] / size[1]) / (common[0] / common[1])
    return max(ratio, 1 / ratio) - 1


def open_image(path: str | Path, name: str | None = None) -> Image.Image:
    """Open and fully decode an image file (a truncated or corrupt file fails here, not later), upright.

    A file with an EXIF orientation tag (phone photos are often stored sideways, with a tag that tells viewers how
    to turn them) is turned the way viewers and annotation tools show it (``ImageOps.exif_transpose``), so an image
    lines up with a mask drawn on what the tool showed. The tag and the stored size are kept in
    ``img.info["exif_orientation"]`` and ``img.info["stored_size"]`` for messages (``orientation_note``).

    Args:
        path: the file.
        name: how messages name it (default: the path).

    Raises:
        DataError: the file is missing (or a broken symbolic link) or cannot be decoded, naming the file.
    """
    name = str(path) if name is None else name
    try:
        with Image.open(path) as img:
            img.load()
            return _upright(img)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataError(f"{name}: a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise DataError(f"{name}: file not found") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # Pillow's messages repeat the full path; the caller's name for the file is enough
        raise DataError(f"{name}: cannot be read as an image ({str(err).replace(str(path), name)})") from None


def _upright(img: Image.Image) -> Image.Image:
    """The decoded image turned as its EXIF orientation says (2..8); the image itself without one."""
    orientation = img.getexif().get(_ORIENTATION)
    if orientation not in range(2, 9):  # absent, 1 (already upright) or an invalid value, which viewers ignore
        return img
    stored = img.size
    upright = ImageOps.exif_transpose(img)
    upright.info.update(exif_orientation=int(orientation), stored_size=stored)
    upright.format = img.format  # a turned copy forgets the file format; masks are checked for PNG data by it
    return upright


def orientation_note(img: Image.Image) -> str:
    """`` after its EXIF orientation 6 (stored 16x24)`` for an image that ``open_image`` turned upright, else
    empty: for messages about sizes, which are always the upright (width x height)."""
    if "exif_orientation" not in img.info:
        return ""
    w, h = img.info["stored_size"]
    return f" after its EXIF orientation {img.info['exif_orientation']} (stored {w}x{h})"


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (by ``IMAGE_EXTENSIONS``, any case), as sorted POSIX paths relative to it;
    hidden files and folders (.DS_Store, .ipynb_checkpoints) are skipped. Symbolic links are followed, to files
    and folders alike and wherever they point; a link back to a folder it is in is not followed again."""
    return walk_images(folder)[0]


def walk_images(folder: Path) -> tuple[list[str], list[str]]:
    """``list_images``, and the broken symbolic links that are not named like images (a link to a folder that
    no longer exists): both sorted, relative to ``folder``. A broken link named like an image is listed with the
    images; ``open_image`` reports it when it is read."""
    images, broken = [], []
    ancestors = {str(folder): {os.path.realpath(folder)}}  # folder -> real paths of it and the folders above it
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        above = ancestors.pop(dirpath)
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if not d.startswith(".") and real not in above:  # a link back up would loop forever
                keep.append(d)
                ancestors[os.path.join(dirpath, d)] = above | {real}
        dirnames[:] = keep
        rel = Path(dirpath).relative_to(folder)
        for f in filenames:
            if f.startswith("."):
                continue
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                images.append((rel / f).as_posix())
            elif os.path.islink(os.path.join(dirpath, f)) and not os.path.exists(os.path.join(dirpath, f)):
                broken.append((rel / f).as_posix())
    return sorted(images), sorted(broken)


def mask_format_problem(img: Image.Image) -> str:
    """Why an opened mask file is not PNG data (JPEG data in a file named ``.png``: lossy, its edges blurred into
    grey levels); empty for PNG data. The message starts with the problem; callers add the file name."""
    if img.format in (None, "PNG"):  # None: made in memory, not read from a file
        return ""
    why = "JPEG is lossy: it blurs a mask's edges into grey levels" if img.format == "JPEG" else "masks are PNG files"
    return f"holds {img.format} data, not PNG, whatever its name says ({why}); save the mask as a PNG file"


def image_array(img: Image.Image, channels: Literal["rgb", "grey"]) -> np.ndarray:
    """Pixels of any Pillow mode as float32 in [0, 1]. Alpha is dropped; 16-bit images keep their precision.

    Shape: (H, W, 3) for rgb, (H, W, 1) for grey.

    Raises:
        DataError: a 32-bit integer (``I``) image with values outside [0, 65535] or a float (``F``) image outside
            [0, 1] (a float TIFF holding 0..255): clipping would turn it white. The message starts with the
            problem; callers add the file name.
    """
    if img.mode in _WIDE_MODES:  # Pillow's convert() would clip these to 8 bits
        values = np.asarray(img, dtype=np.float32)
        outside = range_problem(values, img.mode, "image")
        if outside:
            raise DataError(f"{outside}; clipping would change them: scale the values to "
                            f"[0, {_number(_WIDE_MODES[img.mode])}], or save the image as 8- or 16-bit")
        grey = (values / np.float32(_WIDE_MODES[img.mode]))[:, :, None]
        return np.repeat(grey, 3, axis=2) if channels == "rgb" else grey
    if img.mode == "P":  # through RGBA, so palette transparency is dropped without a warning
        img = img.convert("RGBA")
    img = img.convert("RGB" if channels == "rgb" else "L")
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return arr if arr.ndim == 3 else arr[:, :, None]


@dataclass(frozen=True)
class MaskReading:
    """A mask file's values and the rule that read them (docs/user-guide.md: "How masks and images are read").

    Args:
        values: in [0, 1], at the file's own (upright) size. Shape: (H, W), float32.
        rule: the encoding rule applied, in words (``palette: index > 0 = reason``).
        concerns: why the values look unlike a mask (empty, full, the same everywhere, faint, grey levels that
            look like class indices, mostly reason); empty when fine.
    """

    values: np.ndarray
    rule: str
    concerns: tuple[str, ...] = ()


def read_mask(img: Image.Image, reason_values: Sequence[int] | None = None) -> MaskReading:
    """A mask's values in [0, 1], by one rule per encoding, applied to the file's own values before any resizing.

    - ``reason_values`` given: a pixel whose palette index or grey level (1-bit: 0/1) is one of them is a reason
      (1), every other pixel is not (0).
    - With an alpha channel that is not the same everywhere (RGBA, LA, a palette with transparency): when every
      pixel with alpha > 0 has the same colour, the shape is in the opacity alone and alpha is the mask (a black
      or red annotation on a transparent background, antialiased by alpha); otherwise the colour rule reads the
      image composited over black, max(R, G, B) x alpha / 255 (transparent pixels are not reasons). A constant
      alpha is ignored.
    - 1-bit: 1 = reason. Greyscale (8- and 16-bit, 32-bit ``I``, float ``F``): value / full scale (255, 65535;
      1 for ``F``), so soft masks keep their levels.
    - Palette: a palette whose used colours are all greys is a grey image stored indexed: its grey levels. Else a
      label map, recognised by index 0's colour being the darkest of the colours in use (VOC: index 0 black), is
      read by index, index > 0 = reason (the colours are for display); any other palette (an optimiser's, which
      may put the annotation's red at index 0) by its colours, as a colour file.
    - Colour: the brightest channel, max(R, G, B) / 255 (a red annotation on black is 1).

    In each case but ``reason_values``, values that take exactly two levels, 0 and v > 0, are a binary mask: v is
    the reason (a 0/1 file from numpy, 0/255, 0/65535, an annotation in dark red or half opacity). One level
    alone is read by the scale (a constant 128 stays 128 / 255).

    Args:
        img: an opened mask (``open_image``).
        reason_values: palette indices or grey levels that mark a reason; None: by the encoding.

    Returns:
        The values, the rule and any concerns. Shape: values (H, W).

    Raises:
        DataError: values outside the encoding's range (an ``I`` file beyond 16 bits, an ``F`` file outside
            [0, 1]), or ``reason_values`` for a colour mask; the message starts with the problem, the caller adds
            the file name.
    """
    if reason_values is not None:
        return _selected(img, tuple(reason_values))
    layer = _alpha_layer(img)
    if layer is not None:
        return layer
    img = _drop_alpha(img)
    if img.mode in _GREY_SCALES:
        values, scale = _grey(img)
        return _levels(values, scale, _GREY_NAMES.get(img.mode, "greyscale 16-bit"), indices=img.mode != "F")
    if img.mode == "P":
        return _palette(img)
    rgb = np.asarray(img.convert("RGB"))
    return _levels(rgb.max(axis=2), 255.0, "colour, brightest channel")


def mask_array(img: Image.Image, reason_values: Sequence[int] | None = None) -> np.ndarray:
    """``read_mask(img, reason_values).values``: a mask's values as float32 in [0, 1]. Shape: (H, W)."""
    return read_mask(img, reason_values).values


_GREY_SCALES = {"1": 1.0, "L": 255.0, **_WIDE_MODES}
_GREY_NAMES = {"1": "1-bit", "L": "greyscale 8-bit", "I": "greyscale 32-bit", "F": "greyscale float"}
_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "PA": "P", "RGBa": "RGB", "La": "L"}  # mode -> the mode without alpha


def _rgba(img: Image.Image) -> np.ndarray | None:
    """The colour and alpha (0..255) of an image with an alpha channel or a transparent index or colour (tRNS);
    None without one. Shape: (H, W, 4) uint8."""
    if img.mode in ("RGBa", "La"):  # premultiplied: back to straight colour, the same alpha
        img = img.convert(img.mode.upper())
    if img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"))
    return None


def _alpha_layer(img: Image.Image) -> MaskReading | None:
    """A mask whose alpha varies: alpha when the shape is in the opacity alone (one colour wherever alpha > 0);
    else the colour rule on the image composited over black. None without alpha or with a constant one."""
    rgba = _rgba(img)
    if rgba is None:
        return None
    colour, alpha = rgba[..., :3], rgba[..., 3]
    if alpha.min() == alpha.max():  # an opaque (or uniformly faded) layer: the colour decides
        return None
    drawn = colour[alpha > 0]
    if (drawn == drawn[0]).all():
        return _levels(alpha, 255.0, "alpha (opacity)")
    # colour and opacity both vary (an opaque black-and-white mask with a transparent frame or a stray pixel):
    # what a viewer shows over black, so transparent pixels are not reasons
    over_black = colour.max(axis=2).astype(np.float64) * alpha / 255.0
    return _levels(over_black, 255.0, "colour over black, brightest channel x alpha")


def _drop_alpha(img: Image.Image) -> Image.Image:
    """The image without its alpha channel (PA -> P keeps the indices)."""
    return img.convert(_ALPHA_MODES[img.mode]) if img.mode in _ALPHA_MODES else img


def _grey(img: Image.Image) -> tuple[np.ndarray, float]:
    """A greyscale file's values and their full scale, checked against the encoding's range."""
    scale = _GREY_SCALES[img.mode]
    values = np.asarray(img)
    if img.mode == "1":
        return values.astype(np.uint8), scale
    outside = range_problem(values, img.mode, "mask")
    if outside:
        raise DataError(f"{outside}; save it as 8-bit (0..255) or 16-bit (0..65535) PNG")
    return values, scale


def range_problem(values: np.ndarray, mode: str, what: str) -> str:
    """Why the values of a 32-bit integer (``I``) or float (``F``) ``what`` (image, mask) are outside its
    encoding's range ([0, 65535], [0, 1]); empty when they are inside or the mode has no such range."""
    if mode not in ("I", "F"):
        return ""
    scale, name = _WIDE_MODES[mode], _GREY_NAMES[mode]
    if not np.isfinite(values).all():
        return f"NaN or infinite values, outside the range [0, {scale:g}] of a {name} {what}"
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > scale:
        return f"values from {lo:g} to {hi:g}, outside the range [0, {scale:g}] of a {name} {what}"
    return ""


def _palette(img: Image.Image) -> MaskReading:
    """Palette rule: grey levels when every used colour is a grey; indices (index > 0 = reason) for a label map,
    whose index 0 is its darkest colour in use, or whose indices have no colours (a numpy array saved as "P");
    else the colours, by the colour rule."""
    index = np.asarray(img)
    colours = np.array(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    used = np.unique(index)
    if len(used) and int(used.max()) < len(colours):
        c = colours[used]
        if bool(((c[:, 0] == c[:, 1]) & (c[:, 1] == c[:, 2])).all()):
            return _levels(colours[index, 0], 255.0, "palette of greys, grey level")
        if colours[0].max() > c.max(axis=1).min():  # not a label map: an optimiser's order (red at index 0)
            return _levels(colours[index].max(axis=2), 255.0, "palette colours, brightest channel")
    values = (index > 0).astype(np.float32)
    return MaskReading(values, "palette: index > 0 = reason", _concerns(values, 1.0, 1.0))


def _selected(img: Image.Image, reason_values: tuple[int, ...]) -> MaskReading:
    """The ``reason_values`` rule: those indices or grey levels are reasons, all others not."""
    mode = img.mode
    img = _drop_alpha(img)
    if img.mode not in _GREY_SCALES and img.mode != "P":
        raise DataError(f"reason_values names palette indices or grey levels, but this is {_a(mode)} {mode} "
                        "(colour) mask; save the masks as palette or greyscale PNGs, or leave reason_values unset")
    values = np.isin(np.asarray(img).astype(np.int64), reason_values).astype(np.float32)
    rule = f"reason_values {', '.join(map(str, reason_values))} = reason"
    return MaskReading(values, rule, _concerns(values, 1.0, 1.0))


def _levels(values: np.ndarray, scale: float, what: str, indices: bool = False) -> MaskReading:
    """Values / scale; two levels 0 and v > 0: a binary mask, v = reason. ``indices``: the values are integer
    grey levels that ``reason_values`` can select, so a few faint levels may be class indices."""
    levels = np.unique(values)
    if len(levels) == 2 and levels[0] == 0:
        v = _number(levels[1])
        out = (values == levels[1]).astype(np.float32)
        return MaskReading(out, f"{what}, two levels 0 and {v}: {v} = reason", _concerns(out, 1.0, 1.0))
    out = np.clip(values.astype(np.float32) / np.float32(scale), 0.0, 1.0)
    return MaskReading(out, f"{what} / {_number(scale)}",
                       _concerns(out, float(levels[-1]), scale, levels if indices else None))


def _concerns(values: np.ndarray, brightest: float, scale: float,
              levels: np.ndarray | None = None) -> tuple[str, ...]:
    """Why decoded values look unlike a mask. ``brightest``: the largest file value; ``scale``: full scale;
    ``levels``: the file's distinct values when they could be class indices (integer grey levels)."""
    lo, hi = float(values.min()), float(values.max())
    if hi == 0:
        return ("no reason pixel: every value is 0 (an empty mask)",)
    if lo == 1:
        return ("every pixel is a reason (a full mask)",)
    if lo == hi:
        return (f"every pixel has the same value, {_number(brightest)} of {_number(scale)}: the mask marks no "
                "region",)
    out = []
    faint = [] if levels is None or len(levels) > FEW_LEVELS else [v for v in levels if 0 < v < FAINT * scale]
    if faint:  # 0, 1, 255: class indices with a void border, read as greys (generalises "faint" below)
        each = ", ".join(_number(v) for v in faint)
        s = "s" if len(faint) > 1 else ""
        python = f"({each})" if len(faint) > 1 else f"({each},)"
        out.append(f"levels {', '.join(_number(v) for v in levels)}: level{s} {each} read{'' if s else 's'} as "
                   f"{', '.join(_share(v / scale) for v in faint)} (almost no reason); if these are class indices, "
                   f"name the reason values (--data reason_values={each.replace(', ', ',')}, or "
                   f"reason_values={python} in Python)")
    elif hi < FAINT:
        out.append(f"no value reaches {FAINT:.0%} of full scale (brightest {_number(brightest)} of "
                   f"{_number(scale)}): a faint soft mask; if its values are class indices, name those that mark a "
                   "reason (--data reason_values=1,2, or reason_values=(1, 2) in Python)")
    mean = float(values.mean())
    if mean > MOSTLY_REASON:
        shown = math.floor(mean * 1e4) / 1e4  # floored: never rounded up to a full 1
        out.append(f"mostly reason: the mask's mean value is {shown:g} (above {MOSTLY_REASON:g}): an inverted mask? "
                   "Masks mark the reason in white (or > 0) on a black (0) background; invert it if its object is "
                   "black")
    return tuple(out)


def _share(v: float) -> str:
    """A small share with one significant digit, never in scientific notation: 1/255 -> 0.004."""
    return np.format_float_positional(v, precision=1, unique=False, fractional=False, trim="-")


def _a(word: str) -> str:
    """The article for a mode spelt letter by letter: "an RGBA", "a CMYK"."""
    return "an" if word[:1].upper() in "AEFHILMNORSX" else "a"


def _number(v: Any) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


@dataclass(frozen=True)
class Preprocess:
    """How one image file (and its mask) becomes a tensor.

    Args:
        size: (H, W) of the output; None keeps each file's own size.
        fit: ``stretch`` resizes the whole image; ``crop`` first centre-crops it to the target aspect ratio.
        channels: ``rgb`` (3 channels) or ``grey`` (1).
        mean, std: per-channel normalisation applied after scaling to [0, 1]; None: none.
        mask_resample: ``nearest`` keeps the mask's values; ``bilinear`` blends them at the edges.
        reason_values: palette indices or grey levels of a mask that mark a reason (``read_mask``); None: by
            each file's encoding.
    """

    size: tuple[int, int] | None = None
    fit: Literal["stretch", "crop"] = "stretch"
    channels: Literal["rgb", "grey"] = "rgb"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    mask_resample: Literal["nearest", "bilinear"] = "nearest"
    reason_values: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        where = "preprocess"
        if self.size is not None:
            check(len(self.size) == 2 and min(self.size) >= 1, where, f"size must be (H, W) >= 1, got {self.size}")
        check((self.mean is None) == (self.std is None), where, "give both mean and std, or neither")
        if self.mean is not None:
            n = self.n_channels
            check(len(self.mean) == n and len(self.std) == n, where,
                  f"mean and std need {n} values for channels={self.channels!r}, got {self.mean} and {self.std}")
            check(min(self.std) > 0, where, f"std must be positive, got {self.std}")
        if self.reason_values is not None:
            check(len(self.reason_values) >= 1 and min(self.reason_values) >= 0, where,
                  f"reason_values must be one or more values >= 0, got {self.reason_values}")

    @property
    def n_channels(self) -> int:
        return 3 if self.channels == "rgb" else 1

    # --- geometry ------------------------------------------------------------------------------------------------

    def crop_box(self, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The region of a file of size (W, H) that is resized: all of it, or its centre at the target aspect ratio.

        Returns:
            (left, top, right, bottom) in the file's pixels, possibly fractional (Pillow resamples exactly there).
        """
        w, h = image_size
        if self.size is None or self.fit == "stretch":
            return (0.0, 0.0, float(w), float(h))
        aspect = self.size[1] / self.size[0]  # W / H of the target
        if w / h > aspect:  # too wide: keep the full height
            cw = h * aspect
            return ((w - cw) / 2, 0.0, (w + cw) / 2, float(h))
        ch = w / aspect
        return (0.0, (h - ch) / 2, float(w), (h + ch) / 2)

    def _resize(self, arr: np.ndarray, image_size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
        """Crop and resize each channel of ``arr`` (H, W, C) as if it had the image's size (W, H)."""
        h, w = arr.shape[:2]
        if self.size is None and (w, h) == tuple(image_size):
            return arr
        box = self.crop_box(image_size)
        sx, sy = w / image_size[0], h / image_size[1]  # a mask stored at another resolution: same region
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        out_wh = tuple(image_size) if self.size is None else (self.size[1], self.size[0])
        # one float32 ("F") image per channel: one code path for 8- and 16-bit files; bilinear in Pillow widens
        # its kernel when shrinking, so downsizing is antialiased
        chans = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, c])).resize(out_wh, resample, box))
                 for c in range(arr.shape[2])]
        return np.clip(np.stack(chans, axis=2), 0.0, 1.0)

    # --- files -> tensors ----------------------------------------------------------------------------------------

    def raw_image(self, path: str | Path) -> torch.Tensor:
        """The image at ``path``, converted, cropped and resized but not normalised.

        Returns:
            float32 in [0, 1]. Shape: (C, H, W).

        Raises:
            DataError: the file is missing or unreadable, or its values are outside its encoding's range (a float
                TIFF holding 0..255); the message names the file.
        """
        name = str(path)
        img = open_image(path, name)
        try:
            return self.raw_image_from(img)
        except DataError as err:
            raise DataError(f"{name}: {err}") from None

    def raw_image_from(self, img: Image.Image) -> torch.Tensor:
        """``raw_image`` of an already opened image. Shape: (C, H, W).

        Raises:
            DataError: values outside the encoding's range (``image_array``), without the file name.
        """
        arr = self._resize(image_array(img, self.channels), img.size, Image.Resampling.BILINEAR)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def resize_image(self, x: torch.Tensor) -> torch.Tensor:
        """Crop and resize an image read at its own size (``Preprocess(size=None).raw_image``) as this
        preprocessing would have: equal to ``raw_image`` of the file. Shape: (C, h, w) -> (C, H, W)."""
        size = (x.shape[2], x.shape[1])
        arr = self._resize(x.permute(1, 2, 0).numpy(), size, Image.Resampling.BILINEAR)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def image(self, path: str | Path) -> torch.Tensor:
        """The image at ``path`` ready for a model: ``normalize(raw_image(path))``. Shape: (C, H, W)."""
        return self.normalize(self.raw_image(path))

    def mask(self, path: str | Path, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The mask at ``path`` with the same crop and size as its image.

        Args:
            path: a PNG mask, read by ``read_mask`` (white = reason, or as its encoding says).
            image_size: (W, H) of the image file, as Pillow gives it; the crop box is computed for it and scaled
                to the mask, so a mask stored at another resolution still lines up. Default: the mask's own size.

        Returns:
            float32 in [0, 1]. Shape: (1, H, W).

        Raises:
            DataError: the file is missing or unreadable, or its values are outside its encoding's range.
        """
        name = str(path)
        try:
            return self.mask_from(open_image(path, name), image_size)
        except DataError as err:
            raise DataError(str(err) if str(err).startswith(name) else f"{name}: {err}") from None

    def mask_from(self, img: Image.Image, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """``mask`` of an already opened mask image. Shape: (1, H, W)."""
        return self.resize_mask(read_mask(img, self.reason_values).values, image_size)

    def resize_mask(self, values: np.ndarray | torch.Tensor, image_size: tuple[int, int] | None = None
                    ) -> torch.Tensor:
        """Crop and resize decoded mask values (``read_mask``) with the geometry of an image of size
        ``image_size`` (W, H; default: the mask's own). Shape: (h, w) or (1, h, w) -> (1, H, W)."""
        arr = np.asarray(values, dtype=np.float32).reshape(values.shape[-2:])
        arr = self._resize(arr[:, :, None], image_size or (arr.shape[1], arr.shape[0]), _RESAMPLE[self.mask_resample])
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    # --- normalisation -------------------------------------------------------------------------------------------

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std per channel; x unchanged without statistics. Shape: (C, H, W) or (N, C, H, W)."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of ``normalize``: back to [0, 1] pixel values. Shape: (C, H, W) or (N, C, H, W)."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return x * std + mean

    def with_statistics(self, normalize: Literal["train", "imagenet", "none"],
                        x: torch.Tensor | None = None) -> "Preprocess":
        """This preprocessing with the mean and std that ``normalize`` names.

        Args:
            normalize: ``train``: per-channel mean and std of ``x`` (so the fill value 0 of masked pixels means
                the average colour); ``imagenet``: ImageNet's (for pretrained backbones; grey: their average);
                ``none``: no normalisation.
            x: the training images in [0, 1], for ``train``. Shape: (N, C, H, W).
        """
        if normalize == "none":
            return replace(self, mean=None, std=None)
        if normalize == "imagenet":
            grey = self.channels == "grey"
            mean = (sum(IMAGENET_MEAN) / 3,) if grey else IMAGENET_MEAN
            std = (sum(IMAGENET_STD) / 3,) if grey else IMAGENET_STD
            return replace(self, mean=tuple(mean), std=tuple(std))
        x = x.double()
        mean = tuple(float(v) for v in x.mean(dim=(0, 2, 3)))
        std = tuple(float(v) if v > 1e-6 else 1.0 for v in x.std(dim=(0, 2, 3), unbiased=False))  # 1: flat channel
        return replace(self, mean=mean, std=std)

    # --- saving --------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists) that ``from_dict`` turns back into an equal ``Preprocess``."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocess":
        """Rebuild from ``to_dict``'s output.

        Raises:
            ConfigError: an unknown key, a wrong type or an invalid value.
        """
        return from_dict(cls, d, "preprocess")
