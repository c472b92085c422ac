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
    ramp = np.zeros((16, 16), np.uint16)
    ramp[4:12, 4:12] = np.arange(64, dtype=np.uint16).reshape(8, 8) * 4 + 3                  # 64 levels, 3..255
    Image.fromarray(ramp).save(root / "masks" / "img5.png")                                  # soft, 8-bit in 16-bit
    assert check_folder(root) == []
    lines = check_folder(root, warnings=True)
    # issue 12 item 2 (newcomer): a few faint levels (img3, img4) may be class indices; the message names each
    # level and its value (1/255 = 0.004, 2/255 = 0.008; 100/65535 = 0.0015, 200/65535 = 0.0031); many faint
    # levels (img5) are a faint soft mask
    assert lines == [
        "warning: masks/img0.png: no reason pixel: every value is 0 (an empty mask)",
        "warning: masks/img1.png: every pixel is a reason (a full mask)",
        "warning: masks/img2.png: every pixel has the same value, 1 of 65535: the mask marks no region",
        "warning: masks/img3.png: levels 0, 1, 2: levels 1, 2 read as 0.004, 0.008 (almost no reason); if these are "
        "class indices, name the reason values (--data reason_values=1,2, or reason_values=(1, 2) in Python)",
        "warning: masks/img4.png: levels 0, 100, 200: levels 100, 200 read as 0.002, 0.003 (almost no reason); if "
        "these are class indices, name the reason values (--data reason_values=100,200, or reason_values=(100, 200) "
        "in Python)",
        "warning: masks/img5.png: no value reaches 10% of full scale (brightest 255 of 65535): a faint soft mask; if "
        "its values are class indices, name those that mark a reason (--data reason_values=1,2, or "
        "reason_values=(1, 2) in Python)",
    ]
    with pytest.warns(FolderWarning, match="6 warnings for folder dataset") as record:
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


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (4, "RGBA")])
def test_reason_values_on_a_colour_mask_is_a_problem(tmp_path, channels, mode):
    """Issue 12 item 9 (newcomer): an RGBA mask was called "a RGB (colour) mask"; the message names the file's mode."""
    root = make_folder(tmp_path / "d",
                       lambda p, m: Image.fromarray(np.stack([m * 255] * channels, -1)).save(f"{p}.png"))
    problems = check_folder(root, reason_values=(1,))
    assert len(problems) == 6 and problems[0] == (
        f"masks/img0.png: reason_values names palette indices or grey levels, but this is an {mode} (colour) mask; "
        "save the masks as palette or greyscale PNGs, or leave reason_values unset")


def test_explain_reads_masks_by_the_same_rule(tmp_path):
    """Preprocess.mask (used by explain) applies the rules and the stored reason_values."""
    path = tmp_path / "m.png"
    palette_image(square() * 2, VOC).save(path)
    assert torch.equal(Preprocess().mask(path)[0], torch.from_numpy(square().astype(np.float32)))
    assert float(Preprocess(reason_values=(1,)).mask(path).max()) == 0.0
    assert Preprocess.from_dict(Preprocess(reason_values=(1, 2)).to_dict()).reason_values == (1, 2)
    assert Preprocess.from_dict({"size": None}).reason_values is None  # checkpoints from before keep working


# --- the newcomer's findings (issue 12, items 1-4, 10 of the second round) -------------------------------------


def rgba_square(alpha_at=None) -> np.ndarray:
    """An opaque black RGBA mask with the white square. Shape: (16, 16, 4) uint8."""
    arr = np.zeros((16, 16, 4), np.uint8)
    arr[..., :3] = square()[..., None] * 255
    arr[..., 3] = 255
    return arr


COMPOSITE = "colour over black, brightest channel x alpha, two levels 0 and 255: 255 = reason"


def test_opaque_mask_with_one_translucent_pixel_reads_its_colour(tmp_path):
    """Issue 12 item 1 (newcomer): one background pixel at alpha 250 made alpha the mask (about 1.0 everywhere,
    no warning). The colour varies where alpha > 0, so the colour over black is read: the exact square."""
    def stray(p, m):
        arr = rgba_square()
        arr[0, 0, 3] = 250  # black at alpha 250: 0 over black
        Image.fromarray(arr).save(f"{p}.png")

    root = make_folder(tmp_path / "d", stray)
    expect_square(load(root))
    report = inspect_folder(root)
    assert set(report.mask_rules.values()) == {COMPOSITE} and report.warnings == []
    on_object = rgba_square()
    on_object[5, 5, 3] = 250  # white at alpha 250: 250 / 255 over black
    values = read_mask(Image.fromarray(on_object)).values
    expected = square().astype(np.float32)
    expected[5, 5] = np.float32(250 / 255)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-7)


def test_transparent_frame_around_an_opaque_mask_is_not_a_reason(tmp_path):
    """Issue 12 item 1 (newcomer): a 1-pixel transparent frame made 73 % of the background a reason."""
    def framed(p, m):
        arr = rgba_square()
        arr[[0, -1], :, 3] = 0
        arr[:, [0, -1], 3] = 0
        arr[[0, -1], :, :3] = 255  # what colour a transparent pixel has does not matter
        Image.fromarray(arr).save(f"{p}.png")

    root = make_folder(tmp_path / "d", framed)
    expect_square(load(root))
    assert set(inspect_folder(root).mask_rules.values()) == {COMPOSITE}


@pytest.mark.parametrize("colour, background", [((0, 0, 0), (255, 255, 255)), ((255, 0, 0), (0, 0, 0)),
                                                ((255, 255, 255), (255, 255, 255))])
def test_one_colour_shaped_by_opacity_is_read_by_alpha(colour, background):
    """Issue 12 item 1: a black or red annotation on a transparent background, antialiased by alpha: alpha is
    the mask whatever the colour (black is not "no reason" here), soft edges kept: alpha / 255."""
    arr = np.zeros((1, 4, 4), np.uint8)
    arr[0, :, :3] = colour
    arr[0, 0, :3] = background  # the transparent pixel's colour is not looked at
    arr[0, :, 3] = [0, 51, 128, 255]
    reading = read_mask(Image.fromarray(arr))
    np.testing.assert_allclose(reading.values, [[0.0, 0.2, 128 / 255, 1.0]], atol=1e-7)
    assert reading.rule == "alpha (opacity) / 255"


def test_soft_colour_and_alpha_compose_over_black():
    """Colour and alpha both varying: max(R, G, B) x alpha / 255, by hand."""
    arr = np.array([[[255, 0, 0, 51], [0, 0, 0, 255], [128, 64, 0, 255], [0, 200, 0, 0]]], np.uint8)
    reading = read_mask(Image.fromarray(arr))
    np.testing.assert_allclose(reading.values, [[0.2, 0.0, 128 / 255, 0.0]], atol=1e-7)
    assert reading.rule == "colour over black, brightest channel x alpha / 255"


def test_class_indices_with_a_void_border_are_a_warning(tmp_path):
    """Issue 12 item 2 (newcomer): an L mask of class indices, object 1 and void border 255, read the object as
    0.004 and the border as 1, without a word (the border reaches full scale, so "faint" did not fire)."""
    def indices(p, m):
        arr = m.copy()
        arr[3, :] = 255  # the void border
        Image.fromarray(arr).save(f"{p}.png")

    root = make_folder(tmp_path / "d", indices)
    with pytest.warns(FolderWarning, match="levels 0, 1, 255: level 1 reads as 0.004"):
        m = all_masks(load(root))["img0.png"]
    assert float(m[5, 5]) == pytest.approx(1 / 255) and float(m[3, 0]) == 1.0
    lines = check_folder(root, warnings=True)
    assert lines == ["warning: masks/img0.png, masks/img1.png, masks/img2.png, masks/img3.png, masks/img4.png, "
                     "masks/img5.png: levels 0, 1, 255: level 1 reads as 0.004 (almost no reason); if these are "
                     "class indices, name the reason values (--data reason_values=1, or reason_values=(1,) in "
                     "Python)"]
    expect_square(load(root, reason_values=(1,)))  # the way out it names
    assert check_folder(root, warnings=True, reason_values=(1,)) == []


def test_many_levels_or_bright_levels_are_soft_masks_without_a_warning():
    """The class-index warning needs few levels (at most 8), one of them faint (below 10 % of full scale)."""
    bright = np.array([[0, 128, 255]], np.uint8)  # 0, 0.5, 1: a soft mask
    assert read_mask(Image.fromarray(bright)).concerns == ()
    many = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 255]], np.uint8)  # 10 levels: a soft ramp
    assert read_mask(Image.fromarray(many)).concerns == ()
    float_levels = np.array([[0.0, 0.001, 1.0]], np.float32)  # float files hold no class indices
    assert read_mask(Image.fromarray(float_levels)).concerns == ()


@pytest.mark.parametrize("make", [lambda rgb: rgb.quantize(2),
                                  lambda rgb: rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)])
def test_optimised_palette_with_red_at_index_0_is_read_by_colour(tmp_path, make):
    """Issue 12 item 3 (newcomer): Pillow's optimiser puts the red annotation at index 0, black at 1; by index the
    mask was inverted. Index 0 is not the darkest colour, so this is no label map: its colours are read."""
    def optimised(p, m):
        rgb = np.zeros((16, 16, 3), np.uint8)
        rgb[m.astype(bool)] = (255, 0, 0)
        img = make(Image.fromarray(rgb))
        assert img.getpalette()[:6] == [255, 0, 0, 0, 0, 0]  # the case as the newcomer found it
        img.save(f"{p}.png")

    root = make_folder(tmp_path / "d", optimised)
    expect_square(load(root))
    assert set(inspect_folder(root).mask_rules.values()) == {
        "palette colours, brightest channel, two levels 0 and 255: 255 = reason"}


def test_palette_colours_keep_soft_levels():
    """A palette that is no label map is read as a colour file: brightest channel / 255."""
    index = np.array([[0, 1, 2]], np.uint8)
    reading = read_mask(palette_image(index, [255, 0, 0, 0, 0, 0, 0, 0, 51]))  # red, black, dark blue
    np.testing.assert_allclose(reading.values, [[1.0, 0.0, 0.2]], atol=1e-7)
    voc = read_mask(palette_image(index, VOC[:9]))  # black at index 0: a label map, by index
    assert voc.values.tolist() == [[0.0, 1.0, 1.0]] and voc.rule == "palette: index > 0 = reason"


@pytest.mark.parametrize("fmt, why", [("JPEG", "JPEG is lossy: it blurs a mask's edges into grey levels"),
                                      ("BMP", "masks are PNG files")])
def test_mask_data_that_is_not_png_is_a_problem(tmp_path, fmt, why):
    """Issue 12 item 4 (newcomer): JPEG data in a file named .png was read as a soft mask of 19 levels; the
    check looked at the name only. The decoded format decides."""
    root = make_folder(tmp_path / "d")
    Image.fromarray(square() * 255).save(root / "masks" / "img2.png", format=fmt)
    assert check_folder(root) == [f"masks/img2.png: holds {fmt} data, not PNG, whatever its name says ({why}); save "
                                  "the mask as a PNG file"]


def test_mostly_reason_masks_are_a_warning(tmp_path):
    """Issue 12 item 10: an inverted mask (white background, black object) is mostly reason. Threshold 0.99:
    the largest PH2 lesion mask covers 98.3 % of its image (docs/user-guide.md), so a 98 % mask is fine."""
    root = make_folder(tmp_path / "d")
    inverted = np.full((16, 16), 255, np.uint8)
    inverted[7:9, 7] = 0  # 2 of 256 pixels: mean 254 / 256 = 0.9921875
    Image.fromarray(inverted).save(root / "masks" / "img0.png")
    large = np.full((16, 16), 255, np.uint8)
    large[0, :5] = 0  # 5 of 256: mean 0.98, like PH2's largest lesions
    Image.fromarray(large).save(root / "masks" / "img1.png")
    assert check_folder(root, warnings=True) == [
        "warning: masks/img0.png: mostly reason: the mask's mean value is 0.9921 (above 0.99): an inverted mask? "
        "Masks mark the reason in white (or > 0) on a black (0) background; invert it if its object is black"]
