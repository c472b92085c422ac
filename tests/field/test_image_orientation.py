"""Images read as viewers show them (issue 12, item 2): a phone photo stored sideways with an EXIF orientation tag
is turned as viewers show it, in the folder loader, in ``Preprocess`` (predict, explain) and in every size message;
and (item 7 of the newcomer's findings) an image whose values lie outside its encoding's range is refused, not
clipped to white."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from explearn.datasets import Preprocess, check_folder, load_folder
from explearn.datasets.images import open_image
from explearn.errors import DataError

from tests.field.image_folders import make_folder, write_csv

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
    assert open_image(path).size == (upright.shape[1], upright.shape[0])  # explain's mask geometry


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


# --- values outside the encoding's range (issue 12, item 7 of the newcomer's findings) --------------------------


def test_float_and_32_bit_images_outside_their_range_are_problems(tmp_path):
    """A float ("F") TIFF holding 0..255 was clipped to white (99.6 % of pixels 1.0) without a word; a 32-bit
    ("I") one beyond 65535 likewise. Each is a problem naming the file and the range, listed with the others."""
    root = make_folder(tmp_path / "d")
    ramp = np.arange(256, dtype=np.float32).reshape(16, 16)  # 0..255
    Image.fromarray(ramp).save(root / "images" / "img0.tif")
    Image.fromarray(np.full((16, 16), 70000, np.int32)).save(root / "images" / "img1.tif")
    for k in (0, 1):
        (root / "images" / f"img{k}.png").unlink()
    splits = ("train", "train", "val", "val", "test", "test")
    write_csv(root, [{"image": f"img{k}", "label": "ab"[k % 2], "split": splits[k]} for k in range(6)]
              + [{"image": "ghost", "label": "a", "split": "train"}])  # and an unrelated problem
    assert check_folder(root) == [
        "labels.csv line 8: image 'ghost' not found in images/ (a label without an image)",
        "images/img0.tif: values from 0 to 255, outside the range [0, 1] of a greyscale float image; clipping would "
        "change them: scale the values to [0, 1], or save the image as 8- or 16-bit",
        "images/img1.tif: values from 70000 to 70000, outside the range [0, 65535] of a greyscale 32-bit image; "
        "clipping would change them: scale the values to [0, 65535], or save the image as 8- or 16-bit"]
    with pytest.raises(DataError, match=r"^.*img0\.tif: values from 0 to 255, outside the range \[0, 1\]"):
        Preprocess().image(root / "images" / "img0.tif")  # what predict reads


def test_float_and_32_bit_images_inside_their_range_keep_their_values(tmp_path):
    """Inside the range, nothing changes: value / full scale (1 for float, 65535 for 32-bit), exactly."""
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32)).save(path)
    assert Preprocess(channels="grey").raw_image(path)[0].tolist() == [[0.0, 0.25, 1.0]]
    path = tmp_path / "i.tif"
    Image.fromarray(np.array([[0, 13107, 65535]], np.int32)).save(path)
    np.testing.assert_allclose(Preprocess(channels="grey").raw_image(path)[0].numpy(), [[0.0, 0.2, 1.0]], atol=1e-7)
