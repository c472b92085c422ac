"""Using a trained checkpoint on image files: predicted labels and probabilities, and attribution overlays that show
what the model looks at (with the explanation mask drawn on top when there is one)."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
import torch.nn.functional as F

from explearn.checkpoint import Checkpoint
from explearn.datasets.images import IMAGE_EXTENSIONS, list_images, open_image
from explearn.errors import DataError

Attribution = Literal["input_gradient", "gradcam"]


@dataclass
class Prediction:
    """One image's prediction: the file, the predicted class and every class's probability."""

    image: Path
    label: str
    probabilities: dict[str, float]


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The image files named by ``paths``: folders expanded to their images, subfolders included, as the folder
    dataset reads them (sorted; hidden files and folders skipped; symbolic links followed), except the ``masks``
    folder of a dataset layout (a folder holding both ``images/`` and ``masks/``). Each path keeps the folder as
    given (``photos/a/x.jpg``), so names are unambiguous. Other paths are kept as given (a missing or unreadable
    file is reported, with every other one, when the images are read).

    Raises:
        DataError: a folder without images, or an empty list.
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            layout = (p / "images").is_dir() and (p / "masks").is_dir()
            found = [p / f for f in list_images(p) if not (layout and f.startswith("masks/"))]
            if not found:
                raise DataError(f"{p}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)}), in it or its "
                                "subfolders")
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


def find_masks(files: Sequence[Path], masks_dir: Path | None) -> list[Path | None]:
    """The mask of each image, None where there is none, by the folder layout's rule (``load_folder``): the mask
    of ``images/sub/x.jpg`` is ``masks/sub/x.png``.

    Without ``masks_dir``: for the nearest folder A above the image whose parent holds a ``masks`` folder,
    ``A/../masks/<the image's path below A>.png`` (``data/images/x.jpg`` -> ``data/masks/x.png``,
    ``data/images/sub/x.jpg`` -> ``data/masks/sub/x.png``). With ``masks_dir``: ``masks_dir/<the image's path
    below the deepest folder holding every image>.png``, as the overlays are named (``overlay_names``), so images
    of the same name in two folders never share a mask.
    """
    if masks_dir is not None:
        return [_file_or_none(masks_dir / r.with_suffix(".png")) for r in _relative_to_common(files)]
    return [_layout_mask(Path(os.path.abspath(f))) for f in files]


def _layout_mask(image: Path) -> Path | None:
    for folder in image.parents:
        if folder.parent == folder:
            break
        if (folder.parent / "masks").is_dir():
            return _file_or_none(folder.parent / "masks" / image.relative_to(folder).with_suffix(".png"))
    return None


def _file_or_none(path: Path) -> Path | None:
    return path if path.is_file() else None


def _relative_to_common(files: Sequence[Path]) -> list[Path]:
    """Each file's path below the deepest folder holding every file (``..`` resolved by name, links kept)."""
    absolute = [Path(os.path.abspath(f)) for f in files]
    common = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    return [a.relative_to(common) for a in absolute]


#: the table ``explain_images`` writes beside the overlays, and its columns
EXPLANATIONS_CSV = "explanations.csv"
EXPLANATION_FIELDS = ("image", "label", "probability", "overlay", "mask", "mass_in_mask")


def explain_images(ckpt: Checkpoint, files: Sequence[Path], out_dir: str | Path, masks_dir: str | Path | None = None,
                   kind: Attribution = "input_gradient", option: str = "out_dir") -> list[dict]:
    """Write one overlay PNG per image into ``out_dir`` (named by ``overlay_names``): the image, and the attribution
    of the predicted class over it, with the mask outlined when one is found; and ``out_dir/explanations.csv`` with
    one row per image.

    Before any image is read, the destination is checked (``outputs.check_output_folder``): ``out_dir`` must not be,
    nor hold, a folder of the images or masks; an existing file may only be replaced when it is an overlay listed
    in the ``explanations.csv`` of an earlier run there (or that table itself).

    Args:
        option: how the caller names ``out_dir`` in messages (the CLI: ``--out``).

    Returns:
        One record per image (the CSV's rows): the image as given, predicted label and probability, the overlay's
        path relative to ``out_dir``, the mask's path ("" without one) and the share of attribution mass inside the
        mask (NaN without a mask).

    Raises:
        ConfigError: a destination that cannot be written or would replace an input or a file explain did not write.
        DataError: a ``masks_dir`` that is not a folder; unreadable images.
    """
    from explearn.explain.attribution import mask_mass_share
    from explearn.outputs import check_output_folder
    from explearn.report.overlay import save_overlay

    pre = _preprocess(ckpt)
    out, masks = Path(out_dir), Path(masks_dir) if masks_dir else None
    if masks is not None and not masks.is_dir():
        raise DataError(f"masks folder {masks}: {'is a file, not a folder' if masks.exists() else 'not found'}")
    mask_paths = find_masks(files, masks)
    names = overlay_names(files)
    owned = _earlier_outputs(out)
    check_output_folder(out, option, input_folders=[*(f.parent for f in files), *(m.parent for m in mask_paths if m),
                                                    *([masks] if masks else [])],
                        targets=[out / n for n in dict.fromkeys([*names, Path(EXPLANATIONS_CSV)])],
                        ours=lambda t: t.resolve() in owned, what="overlays of an earlier `explain` run there",
                        inputs=[*files, *(m for m in mask_paths if m)])
    x = load_inputs(ckpt, files)
    probs = probabilities(ckpt, x)
    attributions = torch.cat([attribution_maps(ckpt, x[i:i + 64], kind) for i in range(0, len(x), 64)])
    records = []
    for f, name, mask_path, xi, p, attribution in zip(files, names, mask_paths, x, probs, attributions):
        k = int(p.argmax())
        mask = pre.mask(mask_path, _file_size(f))[0] if mask_path is not None else None
        share = float(mask_mass_share(attribution[None, None], mask[None, None])[0]) if mask is not None else float("nan")
        title = f"{f.name}: {ckpt.class_names[k]} ({float(p[k]):.2f})"
        if mask is not None:
            title += f", attribution in mask {share:.2f}"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        save_overlay(out / name, pre.denormalize(xi).clamp(0, 1), attribution, mask, title, kind)
        records.append({"image": str(f), "label": ckpt.class_names[k], "probability": float(p[k]),
                        "overlay": name.as_posix(), "mask": str(mask_path) if mask_path else "", "mass_in_mask": share})
    with open(out / EXPLANATIONS_CSV, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=EXPLANATION_FIELDS)
        writer.writeheader()
        writer.writerows(records)
    return records


def overlay_names(files: Sequence[Path]) -> list[Path]:
    """Each image's overlay file, relative to the output folder: the image's path relative to the deepest folder
    holding every image, its extension replaced by ``.png`` (``photos/a/x.jpg``, ``photos/b/x.jpg`` -> ``a/x.png``,
    ``b/x.png``; a single image ``photos/x.jpg`` -> ``x.png``). Images of one folder that differ only by their
    extension keep it (``x.jpg``, ``x.png`` -> ``x.jpg.png``, ``x.png.png``). Distinct files always get distinct
    names; the same file given twice gets the same name."""
    if not files:
        return []
    relative = _relative_to_common(files)
    distinct = set(relative)
    plain = {r: r.with_suffix(".png") for r in distinct}
    uses = Counter(plain.values())
    names = {r: r.with_name(r.name + ".png") if uses[plain[r]] > 1 else plain[r] for r in distinct}
    if len(set(names.values())) < len(distinct):  # a clash the rule above made (x.jpg, x.png, x.jpg.png)
        names = {r: r.with_name(r.name + ".png") for r in distinct}  # injective: every name keeps its extension
    return [names[r] for r in relative]


def _earlier_outputs(out: Path) -> set[Path]:
    """The files an earlier ``explain_images`` run wrote into ``out`` (resolved): its ``explanations.csv``, when
    that has explain's header, and the overlays it lists (relative to ``out``; earlier versions wrote the path from
    the working folder, also accepted)."""
    table = out / EXPLANATIONS_CSV
    try:
        with open(table, newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != EXPLANATION_FIELDS:
                return set()
            listed = [row["overlay"] for row in reader if row.get("overlay")]
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()
    return {table.resolve(), *((out / o).resolve() for o in listed), *(Path(o).resolve() for o in listed)}


def _preprocess(ckpt: Checkpoint):
    from explearn.datasets.images import Preprocess

    if ckpt.preprocess is None:
        raise DataError("this checkpoint was not trained on image files (no preprocessing stored), so it cannot "
                        "read images; train it with `explearn fit DATA_DIR` or on a folder dataset")
    return Preprocess.from_dict(ckpt.preprocess)


def _file_size(path: Path) -> tuple[int, int]:
    """(W, H) of the image upright, as ``Preprocess.image`` reads it (EXIF orientation applied)."""
    return open_image(path).size
