"""Preprocessing of one image file and its mask: decode, convert, crop, resize and normalise, the same geometry for both.

``Preprocess`` is saved with every model trained on a folder dataset (``Splits.info["preprocess"]``), so that new
images are prepared exactly like the training images (``Preprocess.from_dict(info["preprocess"]).image(path)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from explearn.config import check, from_dict, to_dict
from explearn.errors import DataError

#: file endings read as images (lower case); masks are always PNG
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}  # mode -> full scale
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}


def open_image(path: str | Path, name: str | None = None) -> Image.Image:
    """Open and fully decode an image file (a truncated or corrupt file fails here, not later).

    Args:
        path: the file.
        name: how messages name it (default: the path).

    Raises:
        DataError: the file is missing or cannot be decoded, naming the file.
    """
    name = str(path) if name is None else name
    try:
        with Image.open(path) as img:
            img.load()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # Pillow's messages repeat the full path; the caller's name for the file is enough
        raise DataError(f"{name}: cannot be read as an image ({str(err).replace(str(path), name)})") from None
    return img


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (by ``IMAGE_EXTENSIONS``, any case), as sorted POSIX paths relative to it;
    hidden files and folders (.DS_Store, .ipynb_checkpoints) are skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(folder)
        out += [(rel / f).as_posix() for f in filenames
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(out)


def image_array(img: Image.Image, channels: Literal["rgb", "grey"]) -> np.ndarray:
    """Pixels of any Pillow mode as float32 in [0, 1]. Alpha is dropped; 16-bit images keep their precision.

    Shape: (H, W, 3) for rgb, (H, W, 1) for grey.
    """
    if img.mode in _WIDE_MODES:  # Pillow's convert() would clip these to 8 bits
        grey = np.clip(np.asarray(img, dtype=np.float32) / np.float32(_WIDE_MODES[img.mode]), 0, 1)[:, :, None]
        return np.repeat(grey, 3, axis=2) if channels == "rgb" else grey
    if img.mode == "P":  # through RGBA, so palette transparency is dropped without a warning
        img = img.convert("RGBA")
    img = img.convert("RGB" if channels == "rgb" else "L")
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return arr if arr.ndim == 3 else arr[:, :, None]


def mask_array(img: Image.Image) -> np.ndarray:
    """A mask's values as float32 in [0, 1]: 1-bit -> {0, 1}, 8-bit grey -> v / 255 (soft masks keep their grey
    levels), 16-bit -> v / 65535, colour or palette -> its grey level. Shape: (H, W)."""
    if img.mode == "1":
        return np.asarray(img, dtype=np.float32)
    if img.mode in _WIDE_MODES:
        return np.clip(np.asarray(img, dtype=np.float32) / np.float32(_WIDE_MODES[img.mode]), 0, 1)
    if img.mode != "L":
        img = (img.convert("RGBA") if img.mode == "P" else img).convert("L")
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class Preprocess:
    """How one image file (and its mask) becomes a tensor.

    Args:
        size: (H, W) of the output; None keeps each file's own size.
        fit: ``stretch`` resizes the whole image; ``crop`` first centre-crops it to the target aspect ratio.
        channels: ``rgb`` (3 channels) or ``grey`` (1).
        mean, std: per-channel normalisation applied after scaling to [0, 1]; None: none.
        mask_resample: ``nearest`` keeps the mask's values; ``bilinear`` blends them at the edges.
    """

    size: tuple[int, int] | None = None
    fit: Literal["stretch", "crop"] = "stretch"
    channels: Literal["rgb", "grey"] = "rgb"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    mask_resample: Literal["nearest", "bilinear"] = "nearest"

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
            DataError: the file is missing or unreadable.
        """
        return self.raw_image_from(open_image(path))

    def raw_image_from(self, img: Image.Image) -> torch.Tensor:
        """``raw_image`` of an already opened image. Shape: (C, H, W)."""
        arr = self._resize(image_array(img, self.channels), img.size, Image.Resampling.BILINEAR)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def image(self, path: str | Path) -> torch.Tensor:
        """The image at ``path`` ready for a model: ``normalize(raw_image(path))``. Shape: (C, H, W)."""
        return self.normalize(self.raw_image(path))

    def mask(self, path: str | Path, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The mask at ``path`` with the same crop and size as its image.

        Args:
            path: a PNG mask (white = reason).
            image_size: (W, H) of the image file, as Pillow gives it; the crop box is computed for it and scaled
                to the mask, so a mask stored at another resolution still lines up. Default: the mask's own size.

        Returns:
            float32 in [0, 1]. Shape: (1, H, W).
        """
        return self.mask_from(open_image(path), image_size)

    def mask_from(self, img: Image.Image, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """``mask`` of an already opened mask image. Shape: (1, H, W)."""
        arr = self._resize(mask_array(img)[:, :, None], image_size or img.size, _RESAMPLE[self.mask_resample])
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
