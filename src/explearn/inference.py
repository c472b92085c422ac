"""Using a trained checkpoint on image files: predicted labels and probabilities, and attribution overlays that show
what the model looks at (with the explanation mask drawn on top when there is one)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
import torch.nn.functional as F

from explearn.checkpoint import Checkpoint
from explearn.datasets.images import IMAGE_EXTENSIONS
from explearn.errors import DataError

Attribution = Literal["input_gradient", "gradcam"]


@dataclass
class Prediction:
    """One image's prediction: the file, the predicted class and every class's probability."""

    image: Path
    label: str
    probabilities: dict[str, float]


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The image files named by ``paths``: folders expanded to their images (sorted, not recursive), other paths
    kept as given (a missing or unreadable file is reported, with every other one, when the images are read).
    Raises DataError for a folder without images or an empty list."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            if not found:
                raise DataError(f"{p}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            out += found
        else:
            out.append(p)
    if not out:
        raise DataError("no images given")
    return out


def load_inputs(ckpt: Checkpoint, files: Sequence[Path]) -> torch.Tensor:
    """Read and preprocess ``files`` exactly as the training data were; every unreadable or wrongly sized file is
    reported at once. Shape: -> (N, C, H, W)."""
    pre = _preprocess(ckpt)
    images, problems = [], []
    for f in files:
        try:
            x = pre.image(f)
        except DataError as err:
            problems.append(str(err))
            continue
        if tuple(x.shape) != tuple(ckpt.input_shape):
            problems.append(f"{f}: preprocessed to shape {tuple(x.shape)}, the model takes {tuple(ckpt.input_shape)} "
                            "(the model was trained without resizing; resize the image to the training size)")
            continue
        images.append(x)
    if problems:
        raise DataError(f"{len(problems)} image(s) cannot be used:\n  " + "\n  ".join(problems))
    return torch.stack(images)


@torch.no_grad()
def probabilities(ckpt: Checkpoint, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Class probabilities of preprocessed inputs. Shape: (N, C, H, W) -> (N, K)."""
    return torch.cat([F.softmax(ckpt.model(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)])


def predict_images(ckpt: Checkpoint, files: Sequence[Path]) -> list[Prediction]:
    """Class probabilities of each image under the checkpoint's model."""
    probs = probabilities(ckpt, load_inputs(ckpt, files))
    names = ckpt.class_names
    return [Prediction(f, names[int(p.argmax())], {n: float(v) for n, v in zip(names, p)}) for f, p in zip(files, probs)]


def predictions_csv(predictions: Sequence[Prediction], class_names: Sequence[str]) -> str:
    """CSV text: ``image,label,prob_<class>...`` with one row per image."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "label", *[f"prob_{c}" for c in class_names]])
    for p in predictions:
        writer.writerow([str(p.image), p.label, *[f"{p.probabilities[c]:.6f}" for c in class_names]])
    return buf.getvalue()


def attribution_maps(ckpt: Checkpoint, x: torch.Tensor, kind: Attribution = "input_gradient") -> torch.Tensor:
    """Non-negative attribution of the predicted class per pixel: |input gradient of log p_predicted| summed over
    channels (the attribution behind the ``align`` metric), or Grad-CAM on m(f(x)) upsampled to the image.
    Shape: (N, C, H, W) -> (N, H, W)."""
    from explearn.explain.gradcam import grad_cam, upsample_map
    from explearn.explain.gradients import input_gradients

    if kind == "input_gradient":
        return input_gradients(ckpt.model, x, target="predicted").abs().sum(1)
    if kind == "gradcam":
        with torch.no_grad():
            predicted = ckpt.model(x).argmax(1)
        return upsample_map(grad_cam(ckpt.model, x, predicted), tuple(x.shape[2:]))
    raise DataError(f"unknown attribution {kind!r}; known: input_gradient, gradcam")


def find_mask(image: Path, masks_dir: Path | None) -> Path | None:
    """The mask of ``image``: ``masks_dir/<stem>.png`` if a folder is given, else the folder layout's
    ``<image folder>/../masks/<stem>.png``; None when there is none."""
    candidates = [masks_dir / f"{image.stem}.png"] if masks_dir else [image.parent.parent / "masks" / f"{image.stem}.png"]
    return next((c for c in candidates if c.is_file()), None)


def explain_images(ckpt: Checkpoint, files: Sequence[Path], out_dir: str | Path, masks_dir: str | Path | None = None,
                   kind: Attribution = "input_gradient") -> list[dict]:
    """Write one overlay PNG per image into ``out_dir`` (``<stem>.png``): the image, and the attribution of the
    predicted class over it, with the mask outlined when one is found. Returns one record per image: file,
    predicted label and probability, the overlay's path, the mask's path and the share of attribution mass inside
    the mask (NaN without a mask)."""
    from explearn.explain.attribution import mask_mass_share
    from explearn.report.overlay import save_overlay

    pre = _preprocess(ckpt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = load_inputs(ckpt, files)
    probs = probabilities(ckpt, x)
    attributions = torch.cat([attribution_maps(ckpt, x[i:i + 64], kind) for i in range(0, len(x), 64)])
    records = []
    for f, xi, p, attribution in zip(files, x, probs, attributions):
        k = int(p.argmax())
        mask_path = find_mask(f, Path(masks_dir) if masks_dir else None)
        mask = pre.mask(mask_path, _file_size(f))[0] if mask_path is not None else None
        share = float(mask_mass_share(attribution[None, None], mask[None, None])[0]) if mask is not None else float("nan")
        title = f"{f.name}: {ckpt.class_names[k]} ({float(p[k]):.2f})"
        if mask is not None:
            title += f", attribution in mask {share:.2f}"
        target = out / f"{f.stem}.png"
        save_overlay(target, pre.denormalize(xi).clamp(0, 1), attribution, mask, title, kind)
        records.append({"image": str(f), "label": ckpt.class_names[k], "probability": float(p[k]),
                        "overlay": str(target), "mask": str(mask_path) if mask_path else "", "mass_in_mask": share})
    return records


def _preprocess(ckpt: Checkpoint):
    from explearn.datasets.images import Preprocess

    if ckpt.preprocess is None:
        raise DataError("this checkpoint was not trained on image files (no preprocessing stored), so it cannot "
                        "read images; train it with `explearn fit DATA_DIR` or on a folder dataset")
    return Preprocess.from_dict(ckpt.preprocess)


def _file_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size
