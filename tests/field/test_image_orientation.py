"""Images read upright (issue 12, item 2): a phone photo stored sideways with an EXIF orientation tag is turned
as viewers show it, in the folder loader, in ``Preprocess`` (predict, explain) and in every size message."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from explearn.datasets import Preprocess, check_folder, load_folder
from explearn.datasets.images import open_image
from explearn.inference import _file_size

# EXIF orientation -> how the stored pixels become the upright view (TIFF/EXIF 2.32, tag 0x0112), in numpy terms
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],            # mirrored left-right
    3: lambda a: a[::-1, ::-1],         # turned 180 degrees
    4: lambda a: a[::-1, :],            # mirrored top-bottom
    5: lambda a: np.swapaxes(a, 0, 1),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),       # turn 90 degrees clockwise to display
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),        # turn 90 degrees counter-clockwise to display
}


def save_with_orientation(path, stored: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif)


def stored_pixels(h: int = 6, w: int = 4) -> np.ndarray:
    """Every pixel distinct, so any wrong turn shows. Shape: (h, w) uint8."""
    return (np.arange(h * w, dtype=np.uint8) * 7).reshape(h, w)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_read_upright(tmp_path, orientation):
    """Issue 12 item 2: the pixels as a viewer shows them, for all eight EXIF orientations."""
    path = tmp_path / "photo.png"  # PNG keeps the pixels exact; it carries EXIF as JPEG does
    stored = stored_pixels()
    save_with_orientation(path, stored, orientation)
    upright = UPRIGHT[orientation](stored)
    assert np.array_equal(np.asarray(open_image(path)), upright)
    x = Preprocess(channels="grey").raw_image(path)  # what predict and explain read
    assert torch.equal(x[0], torch.from_numpy(upright.astype(np.float32) / 255))
    assert _file_size(path) == (upright.shape[1], upright.shape[0])  # explain's mask geometry


def build(root, h, w, mask_view="upright", orientation=6, ext="jpg"):
    """Six photos stored sideways (tag 6), an object at the top left of the upright view; masks drawn on the
    upright view (as annotation tools show it) or on the stored view."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(6):
        upright = np.zeros((h, w), np.uint8)
        upright[2:h // 2, 1:w // 3] = 255
        stored = np.rot90(upright, 1)  # the sensor's view: tag 6 turns it back clockwise
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(np.stack([stored] * 3, -1)).save(root / "images" / f"p{i}.{ext}", exif=exif, quality=100)
        Image.fromarray(upright if mask_view == "upright" else stored).save(root / "masks" / f"p{i}.png")
        rows.append((f"p{i}", "ab"[i % 2], ("train", "train", "val", "val", "test", "test")[i]))
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("image", "label", "split"), *rows])
    return root


@pytest.mark.parametrize("h, w", [(20, 20), (24, 16)])
def test_sideways_photos_line_up_with_masks_drawn_upright(tmp_path, h, w):
    """Issue 12 item 2: a square photo loaded sideways, silently misaligned with its mask (IoU about 0.1); a
    portrait one was refused with a size message. Both load upright: the object is exactly where the mask is."""
    splits = load_folder(build(tmp_path / "d", h, w), normalize="none")
    assert splits.input_shape == (3, h, w)
    for ds in splits.eval_splits().values():
        bright, mask = ds.x[:, 0] > 0.5, ds.mask[:, 0] > 0.5
        assert torch.equal(bright, mask)


def test_mask_drawn_on_the_stored_view_names_the_orientation(tmp_path):
    """A mask drawn on the sideways view cannot line up: the message gives both sizes and the EXIF orientation."""
    root = build(tmp_path / "d", 24, 16, mask_view="stored", ext="png")
    problems = check_folder(root)
    assert len(problems) == 6
    assert problems[0] == (
        "masks/p0.png: mask is 24x16 pixels (width x height), its image images/p0.png is 16x24 after its EXIF "
        "orientation 6 (stored 24x16), a different aspect ratio; a mask must have its image's size; it matches the "
        "image as stored, before the EXIF rotation: it was drawn on a sideways view (turn the mask upright, or "
        "remove the orientation tag from the image)")


def test_invalid_orientation_values_are_ignored(tmp_path):
    """Orientation 0 or 9 is not in the standard; viewers show the stored pixels, and so does explearn."""
    for value in (0, 9):
        path = tmp_path / f"o{value}.png"
        save_with_orientation(path, stored_pixels(), value)
        assert np.array_equal(np.asarray(open_image(path)), stored_pixels())
