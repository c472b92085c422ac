"""Using a trained checkpoint on image files: predicted labels and probabilities, and attribution overlays that show
what the model looks at (with the explanation mask drawn on top when there is one)."""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from explearn.checkpoint import Checkpoint
from explearn.datasets.images import (IMAGE_EXTENSIONS, MAX_STRETCH, aspect_off, list_images, mask_format_problem,
                                      open_image, orientation_note)
from explearn.errors import ConfigError, DataError
from explearn.files import atomic_path

#: a name of ``explearn.explain.EVALUATION_ATTRIBUTIONS`` (input_gradient, gradcam, saliency, ...)
Attribution = str


@dataclass
class Prediction:
    """One image's prediction: the file, the predicted class and every class's probability."""

    image: Path
    label: str
    probabilities: dict[str, float]


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The image files named by ``paths``: folders expanded to their images, subfolders included, as the folder
    dataset reads them (sorted; hidden files and folders skipped; symbolic links followed), except the ``masks``
    folder of a dataset layout (a ``masks`` folder beside an ``images`` folder, at any depth). Each path keeps the
    folder as given (``photos/a/x.jpg``), so names are unambiguous. Other paths are kept as given (a missing or
    unreadable file is reported, with every other one, when the images are read).

    Raises:
        DataError: a folder without images, or an empty list.
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / f for f in list_images(p) if not _in_layout_masks(p, f)]
            if not found:
                raise DataError(f"{p}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)}), in it or its "
                                "subfolders")
            out += found
        else:
            out.append(p)
    if not out:
        raise DataError("no images given")
    return out


def _in_layout_masks(folder: Path, rel: str) -> bool:
    """Whether the file ``folder/rel`` lies in a ``masks`` folder that has an ``images`` folder beside it."""
    parts = rel.split("/")
    return any(part == "masks" and folder.joinpath(*parts[:i], "images").is_dir() for i, part in enumerate(parts[:-1]))


def load_inputs(ckpt: Checkpoint, files: Sequence[Path]) -> torch.Tensor:
    """Read and preprocess ``files`` as the training data were; every unreadable or unusable file is reported at
    once.

    A model trained at the files' own size (no ``image_size``) takes other sizes as ``fit`` takes images of mixed
    sizes: stretched to the training size when their aspect ratio is within ``MAX_STRETCH`` of it (crop models:
    centre-cropped), else refused (sizes are upright, after any EXIF orientation).

    Shape: -> (N, C, H, W).
    """
    pre = _preprocess(ckpt)
    h, w = ckpt.input_shape[1:]
    images, problems = [], []
    for f in files:
        try:
            img = open_image(f)
        except DataError as err:
            problems.append(str(err))
            continue
        this = pre
        if pre.size is None and img.size != (w, h):
            if pre.fit == "stretch" and aspect_off(img.size, (w, h)) > MAX_STRETCH:
                problems.append(f"{f}: {img.size[0]}x{img.size[1]} pixels (width x height){orientation_note(img)}, "
                                f"the model was trained on {w}x{h}; stretching it would change its aspect ratio by "
                                f"more than {MAX_STRETCH:.0%}: crop or resize it to the training shape")
                continue
            this = replace(pre, size=(h, w))
        try:
            images.append(pre.normalize(this.raw_image_from(img)))
        except DataError as err:
            problems.append(f"{f}: {err}")
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
    channels (the attribution behind the ``align`` metric), Grad-CAM on m(f(x)) upsampled to the image, or any
    other attribution of ``EVALUATION_ATTRIBUTIONS`` (captum's), its absolute value summed over channels.

    Raises:
        ConfigError: gradcam on a model without a feature map at m(f(x)).
        DataError: an unknown ``kind``.

    Shape: (N, C, H, W) -> (N, H, W)."""
    from explearn.explain.captum_attributions import EVALUATION_ATTRIBUTIONS, pixel_magnitude
    from explearn.explain.gradcam import grad_cam, upsample_map
    from explearn.explain.gradients import input_gradients

    if kind == "input_gradient":
        return input_gradients(ckpt.model, x, target="predicted").abs().sum(1)
    if kind == "gradcam":
        with torch.no_grad():
            predicted = ckpt.model(x).argmax(1)
        try:
            cam = grad_cam(ckpt.model, x, predicted)
        except ConfigError as err:
            if "feature map" not in str(err):
                raise
            raise ConfigError("--attribution gradcam needs a spatial feature map at the classifier's input, and this "
                              f"model's features are vectors of shape {_feature_shape(ckpt, x)}; use --attribution "
                              "input_gradient") from None
        return upsample_map(cam, tuple(x.shape[2:]))
    if kind in EVALUATION_ATTRIBUTIONS:  # captum's: the predicted class explained, in eval mode
        return pixel_magnitude(EVALUATION_ATTRIBUTIONS.get(kind)(ckpt.model, x, None))
    raise DataError(f"unknown attribution {kind!r}; known: {', '.join(EVALUATION_ATTRIBUTIONS.names())}")


def _feature_shape(ckpt: Checkpoint, x: torch.Tensor) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(ckpt.model.mapping(ckpt.model.features(x[:1])).shape[1:])


def find_masks(files: Sequence[Path], masks_dir: Path | None) -> list[Path | None]:
    """The mask of each image, None where there is none, paired as the folder dataset pairs them: by path without
    extension, below the masks folder as the image lies below its images folder (``images/sub/x.jpg`` ->
    ``masks/sub/x.png``), names compared after Unicode NFC normalisation, the ``.png`` in any case.

    Without ``masks_dir``: the ``masks`` folder beside the nearest folder A above the image (A is the images
    folder of a dataset layout, ``dataset_layout``). With ``masks_dir``: the mask whose path below ``masks_dir``
    is the longest tail of the image's path that has one (``photos/x/a0.jpg`` -> ``masks_dir/x/a0.png`` before
    ``masks_dir/a0.png``).

    Raises:
        DataError: two images would take the same mask (``a/x.jpg`` and ``b/x.jpg`` with only ``masks_dir/x.png``,
            or ``x.jpg`` beside ``x.png``), naming them: which one it belongs to cannot be known.
    """
    indexes: dict[Path, dict[str, Path]] = {}

    def index(folder: Path) -> dict[str, Path]:  # NFC path without extension -> mask file, per masks folder
        if folder not in indexes:
            indexes[folder] = {_key(Path(rel).with_suffix("")): folder / rel for rel in list_images(folder)
                               if rel.lower().endswith(".png")}
        return indexes[folder]

    out = []
    for f in map(lambda p: Path(os.path.abspath(p)), files):
        found = None
        if masks_dir is not None:
            tails = [f.relative_to(a) for a in f.parents if a != a.parent]  # shortest first: a0.jpg, x/a0.jpg, ...
            found = next((index(masks_dir)[k] for k in (_key(t.with_suffix("")) for t in reversed(tails))
                          if k in index(masks_dir)), None)
        elif (layout := dataset_layout(f)) is not None:
            images, masks = layout
            found = index(masks).get(_key(f.relative_to(images).with_suffix("")))
        out.append(found)
    claims: dict[Path, set[Path]] = {}
    for f, mask in zip(files, out):
        if mask is not None:
            claims.setdefault(mask, set()).add(Path(os.path.abspath(f)))
    shared = {mask: sorted(images) for mask, images in claims.items() if len(images) > 1}
    if shared:
        lines = [f"{mask}: the mask of {' and '.join(map(str, images))}?" for mask, images in shared.items()]
        raise DataError(f"{len(shared)} mask(s) would serve several images, so which image each belongs to cannot be "
                        "known (masks are found by path without extension); give each image its own mask, in the "
                        "subfolders the images are in, or rename the images:\n  " + "\n  ".join(lines))
    return out


def dataset_layout(image: Path) -> tuple[Path, Path] | None:
    """(images folder, masks folder) of the dataset layout an image lies in: the nearest folder A above it whose
    parent also holds a ``masks`` folder (A is usually ``images/``); None outside a layout."""
    image = Path(os.path.abspath(image))
    for folder in image.parents:
        if folder.parent != folder and (folder.parent / "masks").is_dir() and folder.name != "masks":
            return folder, folder.parent / "masks"
    return None


def _key(path: Path) -> str:
    return unicodedata.normalize("NFC", path.as_posix())


def _relative_to_common(files: Sequence[Path]) -> list[Path]:
    """Each file's path below the deepest folder holding every file (``..`` resolved by name, links kept)."""
    absolute = [Path(os.path.abspath(f)) for f in files]
    common = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    return [a.relative_to(common) for a in absolute]


#: the table ``explain_images`` writes beside the overlays, and its columns
EXPLANATIONS_CSV = "explanations.csv"
EXPLANATION_FIELDS = ("image", "label", "probability", "overlay", "mask", "mass_in_mask", "attribution")
#: the header explain wrote before the attribution column (issue 16); such a table is still explain's own
EARLIER_EXPLANATION_FIELDS = EXPLANATION_FIELDS[:-1]


def explain_images(ckpt: Checkpoint, files: Sequence[Path], out_dir: str | Path, masks_dir: str | Path | None = None,
                   kind: Attribution = "input_gradient", option: str = "out_dir",
                   read_folders: Sequence[str | Path] = ()) -> list[dict]:
    """Write one overlay PNG per image into ``out_dir`` (named by ``overlay_names``): the image, and the attribution
    of the predicted class over it, with the mask outlined when one is found (``find_masks``); and
    ``out_dir/explanations.csv`` with one row per image. A run into a folder where ``explain`` wrote before keeps
    the earlier rows whose overlays it does not replace (their files stay, listed, so that a later run may replace
    them), and each row names its attribution.

    Before anything is written, the destination is checked (``outputs.check_output_folder``: ``out_dir`` must not
    be, hold or lie inside a folder the images are read from, nor be or hold the folder of an image or mask; an
    existing file may only be replaced when it is an overlay listed in the ``explanations.csv`` of an earlier run
    there, or that table itself), and every image and mask is read and checked: a mask must have its image's size
    (upright, after any EXIF orientation), as in training.

    Args:
        option: how the caller names ``out_dir`` in messages (the CLI: ``--out``).
        read_folders: the folders the images were found in (read with their subfolders, ``image_files``).

    Returns:
        One record per image (the CSV's rows): the image as given, predicted label and probability, the overlay's
        path relative to ``out_dir``, the mask's path ("" without one) and the share of attribution mass inside the
        mask (NaN without a mask).

    Raises:
        ConfigError: a destination that cannot be written or would replace an input or a file explain did not write.
        DataError: a ``masks_dir`` that is not a folder; unreadable images or masks, masks of another size than
            their image (all reported at once).
    """
    from explearn.explain.attribution import mask_mass_share
    from explearn.outputs import check_output_folder
    from explearn.explain.overlay import save_overlay

    pre = _preprocess(ckpt)
    out, masks = Path(out_dir), Path(masks_dir) if masks_dir else None
    if masks is not None and not masks.is_dir():
        raise DataError(f"masks folder {masks}: {'is a file, not a folder' if masks.exists() else 'not found'}")
    mask_paths = find_masks(files, masks)
    names = overlay_names(files)
    owned = _earlier_outputs(out)
    check_output_folder(out, option, input_folders=[*(f.parent for f in files), *(m.parent for m in mask_paths if m),
                                                    *([masks] if masks else [])],
                        read_folders=[*read_folders, *([masks] if masks else []),
                                      *(p for f in files if (layout := dataset_layout(f)) for p in layout)],
                        targets=[out / n for n in dict.fromkeys([*names, Path(EXPLANATIONS_CSV)])],
                        ours=lambda t: t.resolve() in owned, what="overlays of an earlier `explain` run there",
                        inputs=[*files, *(m for m in mask_paths if m)])
    x = load_inputs(ckpt, files)
    mask_values = _read_masks(pre, files, mask_paths, tuple(x.shape[2:]))
    probs = probabilities(ckpt, x)
    attributions = torch.cat([attribution_maps(ckpt, x[i:i + 64], kind) for i in range(0, len(x), 64)])
    records = []
    for f, name, mask_path, mask, xi, p, attribution in zip(files, names, mask_paths, mask_values, x, probs,
                                                             attributions):
        k = int(p.argmax())
        share = float(mask_mass_share(attribution[None, None], mask[None, None])[0]) if mask is not None else float("nan")
        title = f"{f.name}: {ckpt.class_names[k]} ({float(p[k]):.2f})"
        if mask is not None:
            title += f", attribution in mask {share:.2f}"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        save_overlay(out / name, pre.denormalize(xi).clamp(0, 1), attribution, mask, title, kind)
        records.append({"image": str(f), "label": ckpt.class_names[k], "probability": float(p[k]),
                        "overlay": name.as_posix(), "mask": str(mask_path) if mask_path else "", "mass_in_mask": share,
                        "attribution": kind})
    replaced = {r["overlay"] for r in records}
    kept = [{"attribution": "", **row} for row in _earlier_rows(out) or []
            if row["overlay"] not in replaced and (out / row["overlay"]).is_file()]
    with atomic_path(out / EXPLANATIONS_CSV) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=EXPLANATION_FIELDS)
        writer.writeheader()
        writer.writerows(kept + records)
    return records


def _read_masks(pre, files: Sequence[Path], mask_paths: Sequence[Path | None],
                size: tuple[int, int]) -> list[torch.Tensor | None]:
    """Each image's mask (None without one) at the model's input size (H, W), read by the training rules; every
    unreadable mask, and every mask whose size differs from its image's, reported at once.

    Raises:
        DataError: one line per problem. Shape: each mask (H, W).
    """
    out, problems = [], []
    for f, path in zip(files, mask_paths):
        if path is None:
            out.append(None)
            continue
        try:
            img, mask_img = open_image(f), open_image(path)
        except DataError as err:
            problems.append(str(err))
            out.append(None)
            continue
        if (problem := mask_format_problem(mask_img)):
            problems.append(f"{path}: {problem}")
            out.append(None)
            continue
        if mask_img.size != img.size:
            (mw, mh), (w, h) = mask_img.size, img.size
            problems.append(f"{path}: mask is {mw}x{mh} pixels (width x height), its image {f} is {w}x{h}"
                            f"{orientation_note(img)}; a mask must have its image's size")
            out.append(None)
            continue
        this = pre if pre.size is not None else replace(pre, size=size)
        try:
            out.append(this.mask_from(mask_img, img.size)[0])
        except DataError as err:
            problems.append(f"{path}: {err}")
            out.append(None)
    if problems:
        raise DataError(f"{len(problems)} mask(s) cannot be used:\n  " + "\n  ".join(problems))
    return out


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
    rows = _earlier_rows(out)
    if rows is None:
        return set()
    listed = [row["overlay"] for row in rows if row.get("overlay")]
    return {table.resolve(), *((out / o).resolve() for o in listed), *(Path(o).resolve() for o in listed)}


def _earlier_rows(out: Path) -> list[dict[str, str]] | None:
    """The rows of the ``explanations.csv`` an earlier ``explain_images`` run wrote into ``out`` (with or without
    the attribution column); None when there is none or it is not explain's (another header, unreadable)."""
    try:
        with open(out / EXPLANATIONS_CSV, newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) not in (EXPLANATION_FIELDS, EARLIER_EXPLANATION_FIELDS):
                return None
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _preprocess(ckpt: Checkpoint):
    from explearn.datasets.images import Preprocess

    if ckpt.preprocess is None:
        raise DataError("this checkpoint was not trained on image files (no preprocessing stored), so it cannot "
                        "read images; train it with `explearn fit DATA_DIR` or on a folder dataset")
    return Preprocess.from_dict(ckpt.preprocess)
