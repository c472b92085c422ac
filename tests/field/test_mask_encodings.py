"""Mask encodings as annotation tools and numpy write them (issue 12, item 1): each encoding's documented rule
gives the right values, and masks that look wrong (empty, full, faint, out of range) are reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explearn import datasets
from explearn.datasets import FolderWarning, Preprocess, check_folder, inspect_folder, load_folder, read_mask
from explearn.errors import DataError

from tests.field.image_folders import all_masks, make_folder, palette_image, square

VOC = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]  # black, dark red, green, ..., void


def expect_square(splits) -> None:
    """Every mask is exactly 1 on the square and 0 elsewhere."""
    expected = square().astype(np.float32)
    for f, m in all_masks(splits).items():
        np.testing.assert_array_equal(m, expected, err_msg=f)


def load(root, **options):
    return load_folder(root, normalize="none", **options)


# --- one rule per encoding: the examples of the issue --------------------------------------------------------


def save_grey(dtype, high):
    return lambda p, m: Image.fromarray(m.astype(dtype) * dtype(high)).save(f"{p}.png")


@pytest.mark.parametrize("dtype, high, rule", [
    (np.uint8, 1, "greyscale 8-bit, two levels 0 and 1: 1 = reason"),      # issue 12 item 1: read as 0.004 before
    (np.uint16, 1, "greyscale 16-bit, two levels 0 and 1: 1 = reason"),
    (np.uint8, 128, "greyscale 8-bit, two levels 0 and 128: 128 = reason"),
    (np.uint16, 65535, "greyscale 16-bit, two levels 0 and 65535: 65535 = reason"),
    (np.uint8, 255, "greyscale 8-bit, two levels 0 and 255: 255 = reason"),
])
def test_two_level_greyscale_masks_are_binary(tmp_path, dtype, high, rule):
    """Issue 12 item 1: an 8- or 16-bit file holding 0/1 (numpy) is a binary mask, not 1/255 everywhere."""
    root = make_folder(tmp_path / "d", save_grey(dtype, high))
    expect_square(load(root))
    report = inspect_folder(root)
    assert set(report.mask_rules.values()) == {rule} and report.warnings == [] and report.problems == []


def test_voc_palette_index_one_in_dark_red_is_a_reason(tmp_path):
    """Issue 12 item 1: a palette PNG whose index 1 is drawn dark red (VOC) loaded as 0.15; the index is the label."""
    root = make_folder(tmp_path / "d", lambda p, m: palette_image(m, VOC).save(f"{p}.png"))
    assert Image.open(root / "masks" / "img0.png").mode == "P"
    splits = load(root)
    expect_square(splits)
    assert splits.info["mask_rules"] == {"palette: index > 0 = reason": 6}


def test_numpy_palette_without_colours_reads_indices(tmp_path):
    """A "P" image straight from numpy has (almost) no palette: the indices still decide."""
    root = make_folder(tmp_path / "d", lambda p, m: palette_image(m, [0, 0, 0]).save(f"{p}.png"))
    expect_square(load(root))


def test_palette_reason_values_select_indices(tmp_path):
    """VOC masks draw a void border (index 255) that index > 0 counts as a reason; reason_values=1 leaves it out,
    and is settable as --data reason_values=1 (a string)."""
    def voc_with_border(p, m):
        index = m.copy()
        index[3, 3:13] = 255  # the void border above the square
        index[13, 3:13] = 2   # another class below it
        palette_image(index, VOC).save(f"{p}.png")

    root = make_folder(tmp_path / "d", voc_with_border)
    default = all_masks(load(root))["img0.png"]
    assert default[3, 3:13].tolist() == [1.0] * 10 and default[13, 3:13].tolist() == [1.0] * 10
    chosen = datasets.load("folder", seed=0, root=str(root), normalize="none", reason_values="1")
    expect_square(chosen)
    assert chosen.info["preprocess"]["reason_values"] == [1]
    both = all_masks(load(root, reason_values=(1, 2)))["img0.png"]
    assert both[13, 3:13].tolist() == [1.0] * 10 and both[3, 3:13].tolist() == [0.0] * 10


def test_palette_of_greys_reads_its_grey_levels(tmp_path):
    """A grey mask stored indexed (pngquant, optimisers) is read by what it shows: white = reason, whatever the
    index order; soft grey levels survive."""
    def inverted_order(p, m):  # index 0 is white, index 1 black: the square (index 0) is the reason
        palette_image(1 - m, [255, 255, 255, 0, 0, 0]).save(f"{p}.png")

    root = make_folder(tmp_path / "d", inverted_order)
    expect_square(load(root))
    index = np.array([[0, 1, 2]], np.uint8)
    soft = read_mask(palette_image(index, [0, 0, 0, 51, 51, 51, 255, 255, 255]))
    np.testing.assert_allclose(soft.values, [[0.0, 0.2, 1.0]], atol=1e-7)
    assert soft.rule == "palette of greys, grey level / 255"


def test_rgba_alpha_carries_the_shape(tmp_path):
    """Issue 12 item 1: an RGBA mask on a transparent white background loaded as all reason; alpha is the mask."""
    def rgba(p, m):
        arr = np.full((*m.shape, 4), 255, np.uint8)
        arr[..., 3] = m * 255  # transparent white background, opaque white square
        Image.fromarray(arr).save(f"{p}.png")

    root = make_folder(tmp_path / "d", rgba)
    expect_square(load(root))
    assert set(inspect_folder(root).mask_rules.values()) == {"alpha (opacity), two levels 0 and 255: 255 = reason"}


def test_soft_alpha_and_constant_alpha():
    """Alpha with soft edges gives alpha / 255; a constant alpha is ignored and the colour decides."""
    arr = np.zeros((1, 3, 4), np.uint8)
    arr[0, :, 3] = [0, 51, 255]
    np.testing.assert_allclose(read_mask(Image.fromarray(arr)).values, [[0.0, 0.2, 1.0]], atol=1e-7)
    opaque = np.zeros((1, 2, 4), np.uint8)
    opaque[..., 3] = 255
    opaque[0, 1, :3] = (0, 0, 255)  # a blue annotation on opaque black
    reading = read_mask(Image.fromarray(opaque))
    assert reading.values.tolist() == [[0.0, 1.0]] and reading.rule.startswith("colour, brightest channel")
    la = Image.fromarray(np.zeros((1, 2), np.uint8)).convert("LA")
    la.putalpha(Image.fromarray(np.array([[0, 200]], np.uint8)))  # black, opaque (200) at pixel 1 only
    assert read_mask(la).values.tolist() == [[0.0, 1.0]]


def test_palette_with_a_transparent_index(tmp_path):
    """A palette whose index 0 is transparent (tRNS): the opaque pixels are the reason."""
    def transparent(p, m):
        img = palette_image(m, [255, 255, 255, 255, 255, 255])  # white on white: only alpha tells them apart
        img.save(f"{p}.png", transparency=0)

    root = make_folder(tmp_path / "d", transparent)
    expect_square(load(root))


@pytest.mark.parametrize("colour", [(255, 0, 0), (128, 0, 0), (0, 90, 0)])
def test_colour_annotation_on_black(tmp_path, colour):
    """Issue 12 item 1: a red annotation on black loaded as 0.30 (its grey level); the brightest channel is 1."""
    def coloured(p, m):
        arr = np.zeros((*m.shape, 3), np.uint8)
        arr[m.astype(bool)] = colour
        Image.fromarray(arr).save(f"{p}.png")

    root = make_folder(tmp_path / "d", coloured)
    expect_square(load(root))


def test_soft_levels_and_one_bit():
    """Three or more levels are soft (value / full scale); 1-bit is 0/1."""
    grey = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(read_mask(Image.fromarray(grey)).values, [[0.0, 0.2, 1.0]], atol=1e-7)
    wide = np.array([[0, 13107, 65535]], np.uint16)
    np.testing.assert_allclose(read_mask(Image.fromarray(wide)).values, [[0.0, 0.2, 1.0]], atol=1e-7)
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 1] = (0, 51, 10)
    rgb[0, 2] = (255, 0, 0)
    np.testing.assert_allclose(read_mask(Image.fromarray(rgb)).values, [[0.0, 0.2, 1.0]], atol=1e-7)
    one_bit = Image.fromarray(np.array([[0, 255, 0]], np.uint8)).convert("1")
    assert read_mask(one_bit).values.tolist() == [[0.0, 1.0, 0.0]] and read_mask(one_bit).rule.startswith("1-bit")


def test_bilinear_resize_happens_after_decoding(tmp_path):
    """The rule reads the file's own values: a 0/1 mask resized bilinearly keeps 1 inside the square."""
    root = make_folder(tmp_path / "d", save_grey(np.uint8, 1))
    m = all_masks(load(root, image_size=(8, 8), mask_resample="bilinear"))["img0.png"]
    assert float(m[3, 3]) == pytest.approx(1.0) and float(m[0, 0]) == 0.0


# --- masks that look wrong --------------------------------------------------------------------------------------


def test_empty_full_constant_and_faint_masks_are_warnings(tmp_path):
    """Issue 12 item 1: check_folder was silent. Each kind is listed with its files; loading goes on and warns."""
    root = make_folder(tmp_path / "d")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "img0.png")          # empty
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "masks" / "img1.png")      # full
    Image.fromarray(np.full((16, 16), 1, np.uint16)).save(root / "masks" / "img2.png")       # all 1: constant
    faint = square() * 2
    faint[0, 0] = 1
    Image.fromarray(faint).save(root / "masks" / "img3.png")                                 # 0, 1, 2 of 255
    low_byte = square().astype(np.uint16) * 200
    low_byte[0, 0] = 100
    Image.fromarray(low_byte).save(root / "masks" / "img4.png")                              # 8-bit values, 16-bit
    assert check_folder(root) == []
    lines = check_folder(root, warnings=True)
    assert lines == [
        "warning: masks/img0.png: no reason pixel: every value is 0 (an empty mask)",
        "warning: masks/img1.png: every pixel is a reason (a full mask)",
        "warning: masks/img2.png: every pixel has the same value, 1 of 65535: the mask marks no region",
        "warning: masks/img3.png: no value reaches 10% of full scale (brightest 2 of 255): a faint soft mask; if its "
        "values are class indices, name those that mark a reason (--data reason_values=1,2, or reason_values=(1, 2) "
        "in Python)",
        "warning: masks/img4.png: no value reaches 10% of full scale (brightest 200 of 65535): a faint soft mask; if "
        "its values are class indices, name those that mark a reason (--data reason_values=1,2, or "
        "reason_values=(1, 2) in Python)",
    ]
    with pytest.warns(FolderWarning, match="5 warnings for folder dataset") as record:
        splits = load(root)
    assert "masks/img0.png" in str(record[0].message) and splits.info["warnings"] == [x[9:] for x in lines]
    masks = all_masks(splits)
    assert float(masks["img0.png"].max()) == 0 and float(masks["img1.png"].min()) == 1
    assert float(masks["img3.png"][5, 5]) == pytest.approx(2 / 255)


def test_reason_pixels_vanishing_on_resize_are_a_warning(tmp_path):
    """A one-pixel line shrunk with nearest resizing disappears: said, with the way out."""
    def line(p, m):
        arr = np.zeros((16, 16), np.uint8)
        arr[5, 2:14] = 255
        Image.fromarray(arr).save(f"{p}.png")

    root = make_folder(tmp_path / "d", line)
    lines = check_folder(root, warnings=True, image_size=(4, 4))
    assert lines == ["warning: masks/img0.png, masks/img1.png, masks/img2.png, masks/img3.png, masks/img4.png, "
                     "masks/img5.png: its reason pixels vanish when resized to 4x4 (width x height); set --data "
                     "mask_resample=bilinear (mask_resample=\"bilinear\" in Python) or a larger image size"]
    assert check_folder(root, warnings=True, image_size=(4, 4), mask_resample="bilinear") == []


def test_values_outside_the_encoding_are_a_problem(tmp_path):
    """A float mask above 1 or a 32-bit mask beyond 16 bits is refused (clipping would change it silently)."""
    with pytest.raises(DataError, match=r"values from 0 to 2, outside the range \[0, 1\] of a greyscale float mask"):
        read_mask(Image.fromarray(np.array([[0.0, 2.0]], np.float32)))
    with pytest.raises(DataError, match=r"outside the range \[0, 65535\]"):
        read_mask(Image.fromarray(np.array([[0, 70000]], np.int32)))
    tiff = tmp_path / "m.tif"
    Image.fromarray(np.array([[0.0, 2.0]], np.float32)).save(tiff)
    with pytest.raises(DataError, match=r"m.tif: values from 0 to 2"):
        Preprocess().mask(tiff)


def test_reason_values_on_a_colour_mask_is_a_problem(tmp_path):
    root = make_folder(tmp_path / "d", lambda p, m: Image.fromarray(np.stack([m * 255] * 3, -1)).save(f"{p}.png"))
    problems = check_folder(root, reason_values=(1,))
    assert len(problems) == 6 and problems[0].startswith("masks/img0.png: reason_values names palette indices or "
                                                         "grey levels, but this is a RGB (colour) mask")


def test_explain_reads_masks_by_the_same_rule(tmp_path):
    """Preprocess.mask (used by explain) applies the rules and the stored reason_values."""
    path = tmp_path / "m.png"
    palette_image(square() * 2, VOC).save(path)
    assert torch.equal(Preprocess().mask(path)[0], torch.from_numpy(square().astype(np.float32)))
    assert float(Preprocess(reason_values=(1,)).mask(path).max()) == 0.0
    assert Preprocess.from_dict(Preprocess(reason_values=(1, 2)).to_dict()).reason_values == (1, 2)
    assert Preprocess.from_dict({"size": None}).reason_values is None  # checkpoints from before keep working
