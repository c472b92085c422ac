"""Transforms of explanation masks: other shapes, coarser granularity and worse quality than the true masks.

The ablation studies ask how much the method needs exact masks. A transform is a function registered in
``MASK_TRANSFORMS`` that takes masks (N, 1|C, H, W) with values in [0, 1], one numeric parameter and a random
generator, and returns masks of the same shape with values in [0, 1]. Registering one makes it available to every
dataset through the data options ``mask_transform`` and ``mask_param`` (``explearn list`` shows them), and so to
every experiment spec.

Transforms change the masks of the **training** split only, right- and wrong-reason masks alike (each kind with the
same random draws): the methods learn from the transformed masks, while validation and test keep the true masks,
so that explanation alignment is always measured against the truth. ``wrong`` (masks shuffled across images) and
``random_place`` (each mask at a random position, its area kept) are the placebo masks: they keep the amount of
annotation and remove its information.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from explearn.config import check, setting
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.registry import Registry

#: name -> MaskTransform
MASK_TRANSFORMS: Registry = Registry("mask transform")


@dataclass(frozen=True)
class MaskTransform:
    """A registered transform: ``fn(mask, param, generator) -> mask`` and the meaning of its parameter."""

    fn: Callable[[torch.Tensor, float, np.random.Generator], torch.Tensor]
    default: float
    param: str
    description: str


def register(name: str, default: float, param: str, description: str):
    """Decorator: register ``fn(mask, param, rng)`` as the mask transform ``name``."""

    def wrap(fn):
        MASK_TRANSFORMS.register(name)(MaskTransform(fn, default, param, description))
        return fn

    return wrap


@dataclass(frozen=True)
class MaskOptions:
    """Data options shared by every dataset: how the training masks are transformed, and how the training split
    is resampled."""

    mask_transform: str = setting("none", "transform of the training masks (explearn list: masks)")
    mask_param: float | None = setting(None, "the transform's parameter (default: the transform's own)")
    resample: Literal["none", "oversample"] = setting(
        "none", "oversample: every class of the training split repeated up to the largest class's count (random "
                "oversampling, the known remedy for class imbalance)"
    )

    def __post_init__(self) -> None:
        spec = MASK_TRANSFORMS.get(self.mask_transform)  # unknown names fail here, with suggestions
        check(self.mask_param is None or spec.param != "unused", "data option mask_param",
              f"mask transform {self.mask_transform!r} takes no parameter, got {self.mask_param}")
        if self.mask_param is not None:
            check(math.isfinite(self.mask_param), "data option mask_param",
                  f"must be a finite number, got {self.mask_param}")
        # a bad parameter fails now, when a spec is read, not in the middle of a sweep
        transform_masks(torch.ones(1, 1, 4, 4), self.mask_transform, self.param())

    def param(self) -> float:
        return MASK_TRANSFORMS.get(self.mask_transform).default if self.mask_param is None else self.mask_param


def transform_masks(mask: torch.Tensor, name: str, param: float | None = None, seed: int = 0) -> torch.Tensor:
    """Apply the registered transform ``name`` to masks (N, 1|C, H, W); the result is checked for shape and range."""
    spec = MASK_TRANSFORMS.get(name)
    out = spec.fn(mask.float(), spec.default if param is None else float(param), np.random.default_rng(seed))
    check(out.shape == mask.shape, f"mask transform {name!r}", f"changed the shape {tuple(mask.shape)} to "
          f"{tuple(out.shape)}")
    check(bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1,
          f"mask transform {name!r}", "produced values outside [0, 1]")
    return out.to(mask.dtype if mask.is_floating_point() else torch.float32)


def apply_to_training(splits: Splits, options: MaskOptions, seed: int) -> Splits:
    """The splits with the training masks transformed (samples without a mask keep none), then the training split
    resampled (``oversample``); the other splits unchanged."""
    splits = _transform_training_masks(splits, options, seed)
    if options.resample == "oversample":
        train = oversample(splits.train, seed)
        splits = dataclasses.replace(splits, train=train, info={**splits.info, "resample": "oversample",
                                                                "drawn_class_counts": splits.train.class_counts()})
    return splits


#: random stream of the data seed that picks the images an oversampled class repeats once more
_OVERSAMPLE_KEY = 5000


def oversample(train: ExplanationDataset, seed: int) -> ExplanationDataset:
    """Random oversampling (Buda, Maki and Mazurowski 2018, "A systematic study of the class imbalance problem in
    convolutional neural networks", the remedy they found best): every class grows to the largest class's count
    n_max. A class of n_c images repeats each of them floor(n_max / n_c) times in all, and n_max mod n_c of them
    (drawn with the data seed) once more; masks repeat with their images.

    Shape: (N, ...) -> (C * n_max, ...) for C classes present; the first N samples are the original ones, in
    their order. Classes without a training image stay empty.
    """
    y = train.y.cpu().numpy()
    counts = np.bincount(y, minlength=train.n_classes)
    n_max = int(counts.max())
    rng = np.random.default_rng([seed, _OVERSAMPLE_KEY])
    extra = []
    for c in range(train.n_classes):
        members = np.flatnonzero(y == c)
        if not len(members):
            continue
        repeats, rest = divmod(n_max, len(members))
        extra += [np.tile(members, repeats - 1), rng.permutation(members)[:rest]]
    index = np.concatenate([np.arange(len(y)), *extra])
    return train.subset(index, train.name)


#: the options of ``MaskOptions``, which every dataset takes when loaded by name, said to whoever passes one to a
#: dataset's own function (``datasets.triangles``, ``load_folder``), which builds the data as drawn
SHARED_OPTIONS = {name: "an option of every dataset loaded by name: datasets.load(NAME, ...), a spec's data, "
                        "--data of explearn train and fit; the dataset's own function draws the data as they are"
                  for name in ("mask_transform", "mask_param", "resample")}


def _transform_training_masks(splits: Splits, options: MaskOptions, seed: int) -> Splits:
    if options.mask_transform == "none":
        return splits
    train = splits.train
    mask = transform_masks(train.mask, options.mask_transform, options.param(), seed)
    mask = torch.where(train.has_mask[:, None, None, None], mask, train.mask)
    changed = {"mask": mask}
    if bool(train.has_wrong_mask.any()):  # wrong-reason masks get the same transform, with the same draws
        wrong = transform_masks(train.wrong_mask, options.mask_transform, options.param(), seed)
        changed["wrong_mask"] = torch.where(train.has_wrong_mask[:, None, None, None], wrong, train.wrong_mask)
    info = {**splits.info, "mask_transform": options.mask_transform, "mask_param": options.param()}
    return dataclasses.replace(splits, train=dataclasses.replace(train, **changed), info=info)


# --- the transforms -----------------------------------------------------------------------------------------------


@register("none", 0.0, "unused", "the true masks")
def _identity(mask: torch.Tensor, param: float, rng: np.random.Generator) -> torch.Tensor:
    return mask.clone()


@register("soft", 1.5, "standard deviation of the Gaussian blur, in pixels",
          "Gaussian-blurred masks, rescaled so that each mask's maximum stays 1 (soft edges)")
def _soft(mask: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    check(sigma > 0, "mask transform 'soft'", f"the blur's standard deviation must be positive, got {sigma}")
    radius = max(1, min(math.ceil(3 * sigma), max(mask.shape[2:])))  # a wider kernel only meets zero padding
    t = torch.arange(-radius, radius + 1, dtype=mask.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = mask.shape
    flat = mask.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), kernel.reshape(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), kernel.reshape(1, 1, -1, 1))
    peak = flat.amax((2, 3), keepdim=True)
    out = torch.where(peak > 0, flat / peak.clamp_min(1e-12), flat)
    return out.reshape(n, c, h, w).clamp(0, 1)


@register("bbox", 0.0, "unused", "the bounding box of each mask (the pixels where the mask is above 0.5)")
def _bbox(mask: torch.Tensor, param: float, rng: np.random.Generator) -> torch.Tensor:
    out = torch.zeros_like(mask)
    for index in np.ndindex(*mask.shape[:2]):
        rows, cols = torch.nonzero(mask[index] > 0.5, as_tuple=True)
        if len(rows):
            out[index][rows.min():rows.max() + 1, cols.min():cols.max() + 1] = 1
    return out


@register("ellipse", 0.0, "unused",
          "the ellipse with each mask's centroid and second moments (the region a uniform ellipse of the same "
          "covariance fills: (p - mu)^T Sigma^-1 (p - mu) <= 4)")
def _ellipse(mask: torch.Tensor, param: float, rng: np.random.Generator) -> torch.Tensor:
    out = torch.zeros_like(mask)
    h, w = mask.shape[2:]
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2).astype(float)
    for index in np.ndindex(*mask.shape[:2]):
        pts = torch.nonzero(mask[index] > 0.5).numpy().astype(float)
        if len(pts) < 3:
            out[index] = (mask[index] > 0.5).to(mask.dtype)
            continue
        mu = pts.mean(0)
        cov = np.cov(pts.T) + np.eye(2) / 12  # + the variance of a pixel's own extent
        d = grid - mu
        inside = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) <= 4
        out[index] = torch.from_numpy(inside.reshape(h, w)).to(mask.dtype)
    return out


@register("hull", 0.0, "unused", "the convex hull of each mask (the pixels whose centres lie in the hull of the "
                                 "corners of the masked pixels)")
def _hull(mask: torch.Tensor, param: float, rng: np.random.Generator) -> torch.Tensor:
    from scipy.spatial import Delaunay, QhullError

    out = (mask > 0.5).to(mask.dtype)
    h, w = mask.shape[2:]
    centres = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2) + 0.5
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    for index in np.ndindex(*mask.shape[:2]):
        pts = torch.nonzero(mask[index] > 0.5).numpy()
        if len(pts) == 0:
            continue
        try:
            hull = Delaunay((pts[:, None, :] + corners[None]).reshape(-1, 2))
        except QhullError:  # too few or collinear points: the hull adds nothing
            continue
        inside = hull.find_simplex(centres) >= 0
        out[index] = torch.from_numpy(inside.reshape(h, w)).to(mask.dtype)
    return out


@register("pool", 4.0, "block size k in pixels",
          "coarser granularity: the image cut into k x k blocks, a block marked wholly where any of its pixels is "
          "(the mask's maximum over the block)")
def _pool(mask: torch.Tensor, k: float, rng: np.random.Generator) -> torch.Tensor:
    k = _whole(k, "pool", "block size")
    check(k >= 1, "mask transform 'pool'", "the block size must be at least 1 pixel")
    h, w = mask.shape[2:]
    k = min(k, max(h, w))  # a block larger than the image is the whole image
    pooled = F.max_pool2d(mask, k, k, ceil_mode=True)
    return pooled.repeat_interleave(k, 2).repeat_interleave(k, 3)[:, :, :h, :w]


@register("dilate", 2.0, "radius r in pixels", "masks grown by r pixels (maximum over a (2r+1) x (2r+1) square)")
def _dilate(mask: torch.Tensor, r: float, rng: np.random.Generator) -> torch.Tensor:
    r = min(_whole(r, "dilate", "radius"), max(mask.shape[2:]))  # a larger radius reaches every pixel all the same
    return F.max_pool2d(mask, 2 * r + 1, 1, r)


@register("erode", 1.0, "radius r in pixels", "masks shrunk by r pixels (minimum over a (2r+1) x (2r+1) square; "
                                             "the image border does not erode)")
def _erode(mask: torch.Tensor, r: float, rng: np.random.Generator) -> torch.Tensor:
    r = min(_whole(r, "erode", "radius"), max(mask.shape[2:]))  # a larger radius reaches every pixel all the same
    return 1 - F.max_pool2d(F.pad(1 - mask, (r, r, r, r), value=0.0), 2 * r + 1, 1)


@register("shift", 3.0, "distance d in pixels",
          "masks moved by d pixels in a random direction per sample (rounded to whole pixels; what leaves the "
          "image is lost)")
def _shift(mask: torch.Tensor, d: float, rng: np.random.Generator) -> torch.Tensor:
    check(d >= 0, "mask transform 'shift'", f"the distance must be >= 0, got {d}")
    out = torch.zeros_like(mask)
    h, w = mask.shape[2:]
    for i in range(mask.shape[0]):
        angle = rng.uniform(0, 2 * math.pi)
        dy, dx = round(d * math.sin(angle)), round(d * math.cos(angle))
        src = mask[i, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        out[i, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


@register("partial", 0.5, "share p of the masked pixels removed",
          "part of each mask missing: the share p of its pixels that lie farthest along a random direction")
def _partial(mask: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    check(0 <= p <= 1, "mask transform 'partial'", f"the share must lie in [0, 1], got {p}")
    out = mask.clone()
    h, w = mask.shape[2:]
    coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2)
    for i in range(mask.shape[0]):
        angle = rng.uniform(0, 2 * math.pi)
        along = coords @ np.array([math.sin(angle), math.cos(angle)])
        on = (mask[i] > 0).any(0).reshape(-1).numpy()
        count = round(p * on.sum())
        if count:
            drop = np.flatnonzero(on)[np.argsort(-along[on], kind="stable")[:count]]
            out[i].reshape(mask.shape[1], -1)[:, torch.from_numpy(drop)] = 0
    return out


@register("wrong", 0.0, "unused", "every sample gets the mask of another sample (a random derangement): masks "
                                  "of the right kind on the wrong place; the shuffled placebo")
def _wrong(mask: torch.Tensor, param: float, rng: np.random.Generator) -> torch.Tensor:
    n = mask.shape[0]
    if n < 2:
        return torch.zeros_like(mask)
    shift = rng.permutation(n)
    order = np.empty(n, dtype=int)
    order[shift] = np.roll(shift, 1)  # a cycle through a random order: nobody keeps their own mask
    return mask[torch.from_numpy(order)].clone()


def _whole(value: float, name: str, what: str) -> int:
    check(value >= 0 and float(value).is_integer(), f"mask transform {name!r}",
          f"the {what} must be a whole number of pixels >= 0, got {value}")
    return int(value)


@register("random_place", 0.0, "unused",
          "each mask moved, shape and area kept, to a uniformly random position where it fits in the image: the "
          "random placebo of the same area")
def _random_place(mask: torch.Tensor, param: float, rng: np.random.Generator) -> torch.Tensor:
    out = torch.zeros_like(mask)
    h, w = mask.shape[2:]
    for i in range(mask.shape[0]):
        rows, cols = torch.nonzero((mask[i] > 0).any(0), as_tuple=True)
        top, left = rng.integers(0, 1 << 30, size=2)  # always two draws, so every sample's draws are fixed
        if not len(rows):
            continue
        r0, c0 = int(rows.min()), int(cols.min())
        bh, bw = int(rows.max()) + 1 - r0, int(cols.max()) + 1 - c0
        top, left = int(top % (h - bh + 1)), int(left % (w - bw + 1))
        out[i, :, top:top + bh, left:left + bw] = mask[i, :, r0:r0 + bh, c0:c0 + bw]
    return out
