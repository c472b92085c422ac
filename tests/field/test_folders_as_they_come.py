"""Folders as people have them (issue 12, item 3): mixed image sizes, labels written several ways, classes too small
to split, names in another Unicode normalisation, symbolic links, subfolders given to predict / explain, and
in-memory labels that do not start at 0."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explearn import ExplanationDataset, Splits
from explearn.datasets import FolderWarning, Preprocess, check_folder, inspect_folder, load_folder
from explearn.datasets.parts import class_shares, split_indices
from explearn.errors import DataError
from explearn.inference import image_files

from tests.field.image_folders import image, make_folder, write_csv


def load(root, **options):
    return load_folder(root, normalize="none", **options)


def resave(path: Path, size: tuple[int, int]) -> None:
    """Resize the file at ``path`` to (W, H) in place."""
    with Image.open(path) as img:
        img.resize(size).save(path)


# --- sizes ------------------------------------------------------------------------------------------------------


def test_mixed_sizes_are_resized_to_the_most_common_one(tmp_path):
    """Issue 12 item 3: mixed sizes stopped fit unless image_size was given (PH2 has heights 191, 192 and 193).
    Default: every image (and its mask) to the most common size, with a warning and a record in info."""
    root = make_folder(tmp_path / "d")
    resave(root / "images" / "img1.png", (16, 15))  # 6 % off the aspect ratio: stretched
    resave(root / "masks" / "img1.png", (16, 15))
    resave(root / "images" / "img4.png", (16, 17))
    resave(root / "masks" / "img4.png", (16, 17))
    with pytest.warns(FolderWarning, match=r"4 are 16x16, the most common size; 2 images were stretched to it") as w:
        splits = load(root)
    assert "16x15: images/img1.png; 16x17: images/img4.png" in str(w[0].message)
    assert "--image-size HxW with fit, --data image_size=H,W with train" in str(w[0].message)
    assert splits.input_shape == (3, 16, 16) and splits.info["preprocess"]["size"] == [16, 16]
    assert splits.info["resized"] == {"size": [16, 16], "from": {"16x15": ["images/img1.png"],
                                                                  "16x17": ["images/img4.png"]}}
    pre = Preprocess(size=(16, 16))  # exactly what predict does with the saved preprocessing
    i = splits.info["files"]["train"].index("img1.png")
    assert torch.equal(splits.train.x[i], pre.raw_image(root / "images" / "img1.png"))
    assert torch.equal(splits.train.mask[i], pre.mask(root / "masks" / "img1.png"))


def test_ties_go_to_the_largest_size(tmp_path):
    root = make_folder(tmp_path / "d")
    for k in range(3):
        resave(root / "images" / f"img{k}.png", (18, 18))
        resave(root / "masks" / f"img{k}.png", (18, 18))
    with pytest.warns(FolderWarning, match="3 are 18x18"):
        assert load(root).input_shape == (3, 18, 18)


def test_very_different_aspect_ratios_are_not_stretched(tmp_path):
    """More than 10 % off the common aspect ratio: a problem naming the files and both ways out; fit=crop loads."""
    root = make_folder(tmp_path / "d")
    resave(root / "images" / "img5.png", (16, 24))
    resave(root / "masks" / "img5.png", (16, 24))
    assert check_folder(root) == [
        "images differ in size (width x height) and image_size is not set: 5 are 16x16; 16x24: images/img5.png; "
        "the aspect ratio of 1 of these sizes differs by more than 10%, so stretching them to 16x16 would distort "
        "them: set --data fit=crop (fit=\"crop\" in Python) to centre-crop them to it, or choose a size "
        "(--image-size HxW with fit, --data image_size=H,W with train, image_size=(H, W) in Python)"]
    with pytest.warns(FolderWarning, match="1 image was centre-cropped and resized to it"):
        splits = load(root, fit="crop")
    i = splits.info["files"]["test"].index("img5.png")
    assert torch.equal(splits.test.x[i], Preprocess(size=(16, 16), fit="crop").raw_image(root / "images" / "img5.png"))
    assert check_folder(root, image_size=(16, 16)) == []  # a size of one's own: as asked, no check


def test_ph2_real_sizes_load_without_image_size(ph2_dir):
    """Issue 12 item 3's example: PH2's 256-wide images are 191, 192 or 193 pixels high."""
    report = inspect_folder(ph2_dir, label_column="label_name")
    assert report.problems == []
    assert len(report.warnings) == 1  # issue 12 item 10: no real lesion mask is "mostly reason" (largest: 98.3 %)
    assert report.warnings[0].startswith("images differ in size (width x height): ")
    assert "256x191" in report.warnings[0] and "256x193" in report.warnings[0]
    assert set(report.mask_rules.values()) == {"1-bit, two levels 0 and 1: 1 = reason"}


# --- labels -----------------------------------------------------------------------------------------------------


def relabel(root: Path, labels: list[str]) -> None:
    rows = [{"image": f"img{k}", "label": lab} for k, lab in enumerate(labels)]
    write_csv(root, rows)


def test_spaces_in_labels_are_trimmed_and_collapsed(tmp_path):
    root = make_folder(tmp_path / "d", n=6, split=False)
    relabel(root, [" common  nevus", "melanoma ", "common\tnevus", "melanoma", "common\u00a0nevus", "melanoma"])
    splits = load(root)
    assert splits.train.class_names == ("common nevus", "melanoma")
    assert sum(ds.class_counts()[0] for ds in splits.eval_splits().values()) == 3


def test_labels_differing_only_in_case_are_a_problem(tmp_path):
    """Issue 12 item 3: "Melanoma"/"melanoma" silently formed a new class. Now: both spellings, counts, lines."""
    root = make_folder(tmp_path / "d", n=6, split=False)
    relabel(root, ["nevus", "Melanoma", "nevus", "melanoma", "nevus", "melanoma"])
    assert check_folder(root)[0] == (
        "labels.csv: labels 'Melanoma' (1 row: line 3) and 'melanoma' (2 rows: lines 5, 7) differ only in case, so "
        "they would be separate classes; write each class one way (or list them in --data classes=A,B,... to keep "
        "them apart on purpose)")
    message = check_folder(root, classes=("nevus", "Melanoma"))
    assert message[0] == ("labels.csv line 5: label 'melanoma' is not one of the classes nevus, Melanoma (did you "
                          "mean 'Melanoma'? labels are compared exactly, case included)")


def test_labels_in_another_unicode_normalisation_are_one_class(tmp_path):
    root = make_folder(tmp_path / "d", n=6, split=False)
    nfc, nfd = "naevus café", unicodedata.normalize("NFD", "naevus café")
    relabel(root, [nfc, "b", nfd, "b", nfc, "b"])
    assert load(root).train.class_names == ("b", nfc)


# --- small classes ----------------------------------------------------------------------------------------------


def test_a_class_of_three_is_in_every_split(tmp_path):
    """Issue 12 item 3: a class with one or two images ended with none in val or test. Three are enough now."""
    root = make_folder(tmp_path / "d", n=12, split=False)
    relabel(root, ["a"] * 9 + ["b"] * 3)
    splits = load(root)
    assert [ds.class_counts()[1] for ds in (splits.train, splits.val, splits.test)] == [1, 1, 1]
    assert [ds.class_counts()[0] for ds in (splits.train, splits.val, splits.test)] == [5, 2, 2]


@pytest.mark.parametrize("n, test, val", [(3, 1, 1), (4, 1, 1), (10, 2, 2), (3, 0.0, 1), (4, 2, 1), (100, 20, 20)])
def test_class_shares(n, test, val):
    """round(fraction * n), at least 1 each from 3 images, and at least one left for training."""
    fractions = {(3, 0.0, 1): (0.0, 0.2), (4, 2, 1): (0.49, 0.49)}.get((n, test, val), (0.2, 0.2))
    assert class_shares(n, *fractions) == (int(test), val)


def test_classes_too_small_for_a_stratified_split_are_problems(tmp_path):
    root = make_folder(tmp_path / "d", n=9, split=False)
    relabel(root, ["a"] * 6 + ["b", "b", "c"])
    assert check_folder(root) == [
        "class 'b' has 2 images: a split stratified by class needs at least 3 of each class (one each for train, val "
        "and test); add images of it, or give the CSV a split column",
        "class 'c' has 1 image: a split stratified by class needs at least 3 of each class (one each for train, val "
        "and test); add images of it, or give the CSV a split column"]


def test_a_class_missing_from_a_csv_test_split_is_a_warning(tmp_path):
    """The split column is the user's: kept, but its consequence for the metrics is said."""
    root = make_folder(tmp_path / "d", n=6)
    write_csv(root, [{"image": f"img{k}", "label": "ab"[k % 2], "split": s}
                     for k, s in enumerate(["train", "train", "val", "val", "test", "val"])])
    assert check_folder(root) == []
    assert check_folder(root, warnings=True) == [
        "warning: the test split of labels.csv has no image of class 'b': its balanced accuracy there averages over "
        "the other classes and its recall is NaN; give it rows with split=test"]


def test_stratified_split_of_big_classes_is_unchanged():
    """The minimum of one per split changes nothing where round(fraction * n) is already positive (PH2's splits)."""
    y = np.repeat([0, 1], [160, 40])
    index = split_indices(y, None, 0, 0.2, 0.3)
    assert [int((y[index[s]] == 1).sum()) for s in ("train", "val", "test")] == [20, 8, 12]


# --- file names -------------------------------------------------------------------------------------------------


def test_names_in_another_unicode_normalisation_match(tmp_path):
    """Issue 12 item 3: an NFD file name (macOS) and an NFC CSV cell did not match; both are compared as NFC."""
    root = make_folder(tmp_path / "d")
    name = unicodedata.normalize("NFD", "lésion")
    os.rename(root / "images" / "img0.png", root / "images" / f"{name}.png")
    os.rename(root / "masks" / "img0.png", root / "masks" / f"{unicodedata.normalize('NFC', 'lésion')}.png")
    rows = [{"image": unicodedata.normalize("NFC", "lésion") if k == 0 else f"img{k}", "label": "ab"[k % 2],
             "split": ("train", "train", "val", "val", "test", "test")[k]} for k in range(6)]
    write_csv(root, rows)
    splits = load(root)
    assert splits.info["files"]["train"][0] == f"{name}.png" and bool(splits.train.has_mask[0])


def test_names_differing_in_case_are_not_matched_but_suggested(tmp_path):
    root = make_folder(tmp_path / "d")
    os.rename(root / "images" / "img0.png", root / "images" / "IMG0.png")
    os.rename(root / "masks" / "img0.png", root / "masks" / "IMG0.png")
    assert check_folder(root)[0] == ("labels.csv line 2: image 'img0' not found in images/ (a label without an "
                                     "image); names are case-sensitive: did you mean IMG0.png?")


# --- symbolic links ---------------------------------------------------------------------------------------------


def test_symlinked_files_and_folders_are_followed(tmp_path):
    """Issue 12 item 3: a linked file was read but a linked subfolder was "not found". Both are followed."""
    root = make_folder(tmp_path / "d")
    store = tmp_path / "store" / "lesions"
    store.mkdir(parents=True)
    Image.fromarray(image(7)).save(store / "x.png")
    (root / "images" / "linked").symlink_to(store, target_is_directory=True)
    (root / "images" / "loop").symlink_to(root / "images", target_is_directory=True)  # not followed twice
    os.rename(root / "images" / "img5.png", tmp_path / "elsewhere.png")
    (root / "images" / "img5.png").symlink_to(tmp_path / "elsewhere.png")
    write_csv(root, [{"image": f"img{k}", "label": "ab"[k % 2], "split": ("train", "train", "val", "val", "test",
                                                                          "test")[k]} for k in range(6)]
              + [{"image": "linked/x", "label": "a", "split": "train"}])
    splits = load(root)
    assert "linked/x.png" in splits.info["files"]["train"] and "img5.png" in splits.info["files"]["test"]
    assert len(sum(splits.info["files"].values(), [])) == 7


def test_broken_links_are_problems(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "images" / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (root / "images" / "img0.png").unlink()
    (root / "images" / "img0.png").symlink_to(tmp_path / "missing.png")
    assert check_folder(root) == [f"images/gone: a symbolic link to {tmp_path / 'nowhere'}, which does not exist",
                                  f"images/img0.png: a symbolic link to {tmp_path / 'missing.png'}, which does not "
                                  "exist"]


# --- predict / explain DIR --------------------------------------------------------------------------------------


def test_predict_dir_reads_subfolders(tmp_path):
    """Issue 12 item 3: predict DIR ignored subfolders without a word. Now they are read, like the folder loader
    does (hidden ones skipped), each file named with its subfolder; a dataset folder's masks/ are not images."""
    photos = tmp_path / "photos"
    for rel in ("a.png", "2024/b.jpg", "2024/march/c.png", ".thumbs/d.png", "2024/.e.png"):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image(0)).save(photos / rel)
    assert image_files([photos]) == [photos / "2024/b.jpg", photos / "2024/march/c.png", photos / "a.png"]
    data = make_folder(tmp_path / "data")
    assert image_files([data]) == [data / "images" / f"img{k}.png" for k in range(6)]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no image files .* in it or its subfolders"):
        image_files([tmp_path / "empty"])


# --- in-memory labels -------------------------------------------------------------------------------------------


def _ds(y, n_classes=None):
    y = torch.tensor(y)
    return ExplanationDataset(torch.zeros(len(y), 1, 2, 2), y, n_classes=n_classes, name=f"mine/{len(y)}")


def test_labels_from_one_are_refused():
    """Issue 12 item 3: labels {1, 2} silently made 3 classes (class 0 never trained)."""
    with pytest.raises(DataError, match=r"labels are 1, 2: class 0 has no training sample; labels must be 0..K-1"):
        Splits(_ds([1, 2, 1, 2]), _ds([1, 2]), _ds([1, 2, 2]))
    Splits(_ds([0, 1, 0, 1]), _ds([0, 1]), _ds([1, 1]))  # 0..K-1: fine, even with class 0 absent from test


def test_explicit_n_classes_with_a_missing_class_warns():
    with pytest.warns(UserWarning, match=r"class 2 of n_classes=3 has no training sample"):
        Splits(_ds([0, 1, 0, 1], 3), _ds([0, 1, 2], 3), _ds([2], 3))


# --- the newcomer's findings (issue 12, items 5, 6, 8, 9 of the second round) ----------------------------------


def test_the_same_number_written_differently_is_a_problem(tmp_path):
    """Issue 12 item 5 (newcomer): "1" and "1.0" (pandas writes float columns so) or "01" silently made two
    classes. A problem names each spelling with its rows, like case variants."""
    root = make_folder(tmp_path / "d", n=9, split=False)
    relabel(root, ["1", "1.0", "01", "2", "2", "2", "1", "2.0", "1"])
    assert check_folder(root)[:2] == [  # then: classes '01', '1.0', '2.0' too small to split
        "labels.csv: labels '01' (1 row: line 4) and '1' (3 rows: lines 2, 8, 10) and '1.0' (1 row: line 3) are the "
        "same number written differently, so they would be separate classes; write each class one way (or list them "
        "in --data classes=A,B,... to keep them apart on purpose)",
        "labels.csv: labels '2' (3 rows: lines 5, 6, 7) and '2.0' (1 row: line 9) are the same number written "
        "differently, so they would be separate classes; write each class one way (or list them in --data "
        "classes=A,B,... to keep them apart on purpose)"]
    assert check_folder(root, classes=("1", "2"))[0] == (
        "labels.csv line 3: label '1.0' is not one of the classes 1, 2 (did you mean '1'? labels are compared "
        "exactly, as written)")


def test_integer_labels_are_ordered_by_value(tmp_path):
    """Issue 12 item 5: when every label is an integer, class 2 comes before class 10 (as text, '10' < '2')."""
    root = make_folder(tmp_path / "d", n=9, split=False)
    relabel(root, ["10", "2", "-1"] * 3)
    assert load(root).train.class_names == ("-1", "2", "10")
    relabel(root, ["10", "2", "b"] * 3)  # not all integers: text order
    assert load(root).train.class_names == ("10", "2", "b")


def test_images_differing_only_in_extension_cannot_share_a_mask(tmp_path):
    """Issue 12 item 6 (newcomer): a0.png (class a) and a0.jpg (class b) both took masks/img0.png, silently."""
    root = make_folder(tmp_path / "d")
    Image.fromarray(image(9)).save(root / "images" / "img0.jpg")
    write_csv(root, [{"image": f"img{k}.png", "label": "ab"[k % 2],
                      "split": ("train", "train", "val", "val", "test", "test")[k]} for k in range(6)]
              + [{"image": "img0.jpg", "label": "b", "split": "train"}])
    assert check_folder(root) == [
        "masks/img0.png: would be the mask of images/img0.jpg and images/img0.png (masks are named by the image's "
        "name without extension, so it cannot tell them apart); rename one of the images (and its mask, if it has "
        "one)"]


def write_text(root: Path, text: str, encoding: str = "utf-8") -> None:
    (root / "labels.csv").write_bytes(text.encode(encoding))


SPLIT = ("train", "train", "val", "val", "test", "test")
ROWS = "".join(f"img{k}{{d}}{'ab'[k % 2]}{{d}}{SPLIT[k]}\n" for k in range(6))  # str.format(d=delimiter)


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimited_csvs_are_read(tmp_path, delimiter):
    """Issue 12 item 8 (newcomer): a ;- or tab-delimited CSV (spreadsheets in many languages; "Unicode text") was
    "no column 'image' (columns found: image;label)". The delimiter that finds the columns is used."""
    root = make_folder(tmp_path / "d")
    write_text(root, f"image{delimiter}label{delimiter}split\n" + ROWS.format(d=delimiter))
    splits = load(root)
    assert splits.info["files"]["train"] == ["img0.png", "img1.png"] and splits.train.y.tolist() == [0, 1]


def test_excel_sep_line_names_the_delimiter_and_lines_stay_physical(tmp_path):
    """A first line "sep=;" (Excel) names the delimiter; problems still name the file's own line numbers."""
    root = make_folder(tmp_path / "d")
    write_text(root, "sep=;\nimage;label;split\n" + ROWS.format(d=";") + "ghost;a;train\n")
    assert check_folder(root) == ["labels.csv line 9: image 'ghost' not found in images/ (a label without an image)"]


def test_utf16_csv_with_a_bom_is_read_and_latin1_is_a_problem(tmp_path):
    """A UTF-16 CSV (Excel's "Unicode text": tab-delimited, with a byte-order mark) is read; Latin-1 text is a
    problem naming the line and byte, and how to re-save it."""
    root = make_folder(tmp_path / "d")
    write_text(root, "\ufeffimage\tlabel\tsplit\n" + ROWS.format(d="\t").replace("\tb\t", "\tbé\t"), "utf-16-le")
    assert load(root).train.class_names == ("a", "bé")
    write_text(root, "image,label,split\n" + ROWS.format(d=",").replace(",b,", ",bé,"), "latin-1")
    assert check_folder(root) == ["labels.csv: cannot be read: line 3 holds the byte 0xe9, not UTF-8 (Latin-1 or "
                                  "Windows-1252 text?); re-save it as UTF-8 (in a spreadsheet: \"CSV UTF-8\")"]
    write_text(root, "image,label,split\n" + ROWS.format(d=","), "utf-16-le")  # no byte-order mark
    assert check_folder(root) == ["labels.csv: holds NUL bytes, so it is not UTF-8 text (UTF-16 without a "
                                  "byte-order mark?); re-save it as UTF-8 (in a spreadsheet: \"CSV UTF-8\")"]


def test_missing_columns_say_what_to_do(tmp_path):
    """Issue 12 item 8: a header "Image,Label" hints the case and the option; other names the option."""
    root = make_folder(tmp_path / "d")
    write_text(root, "Image;Label\n" + "".join(f"img{k};{'ab'[k % 2]}\n" for k in range(6)))
    assert check_folder(root) == [
        "labels.csv: no column 'image', 'label' (columns found: Image, Label); column names are case-sensitive: did "
        "you mean 'Image', 'Label'? Rename the column, or set --data image_column=Image (image_column=\"Image\" in "
        "Python) and set --data label_column=Label (label_column=\"Label\" in Python)"]
    write_text(root, "file|label\n" + "".join(f"img{k}|{'ab'[k % 2]}\n" for k in range(6)))
    assert check_folder(root) == [
        "labels.csv: no column 'image', 'label' (columns found: file|label; one column: the delimiter is read as "
        "comma, semicolon or tab, whichever finds the columns); rename the column, or name it: set --data "
        "image_column=NAME (image_column=\"NAME\" in Python) and set --data label_column=NAME "
        "(label_column=\"NAME\" in Python)"]


def test_names_that_match_no_image_say_what_was_meant(tmp_path):
    """Issue 12 item 8 (newcomer): a path relative to the dataset folder, another extension, a hidden file and a
    file type not read were all plain "not found"; each now says what it found."""
    root = make_folder(tmp_path / "d")
    os.rename(root / "images" / "img2.png", root / "images" / ".img2.png")
    os.rename(root / "masks" / "img2.png", root / "masks" / ".img2.png")
    Image.fromarray(image(3)).save(root / "images" / "img3.gif")
    (root / "images" / "img3.png").unlink()
    (root / "masks" / "img3.png").unlink()
    names = ["images/img0.png", "img1.jpg", ".img2.png", "img3.gif", "img4", "img5"]
    write_csv(root, [{"image": n, "label": "ab"[k % 2], "split": ("train", "train", "val", "val", "test",
                                                                   "test")[k]} for k, n in enumerate(names)])
    assert check_folder(root) == [
        "labels.csv line 2: image 'images/img0.png' not found in images/ (a label without an image); paths are "
        "relative to images/: write 'img0.png'",
        "labels.csv line 3: image 'img1.jpg' not found in images/ (a label without an image); images/ has img1.png "
        "(another extension): did you mean it?",
        "labels.csv line 4: image '.img2.png' not found in images/ (a label without an image); .img2.png exists, but "
        "hidden files and folders (names starting with '.') are skipped: rename it",
        "labels.csv line 5: image 'img3.gif' not found in images/ (a label without an image); img3.gif exists, but "
        "files ending .gif are not read as images (read: .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp)",
        "images/img0.png: no row of labels.csv names this image (an image without a label)",
        "images/img1.png: no row of labels.csv names this image (an image without a label)",
        "the train split is empty: no row of labels.csv has split=train",
        "the val split is empty: no row of labels.csv has split=val"]


def test_a_class_without_any_image_says_so(tmp_path):
    """Issue 12 item 8 (newcomer): classes=a,b,c without an image of c suggested lowering val_fraction."""
    root = make_folder(tmp_path / "d", split=False)
    assert check_folder(root, classes=("a", "b", "c")) == [
        "class 'c' has no image at all: no row has the label 'c'; add images of it, or leave it out of the classes "
        "option (--data classes=..., classes=(...) in Python)"]


def test_folders_named_in_another_case_are_pointed_to(tmp_path):
    """Issue 12 item 9 (newcomer): a folder Masks/ beside images/ was ignored without a word: a warning naming
    the option. Images/ and Labels.csv: the problem names them too."""
    root = make_folder(tmp_path / "d")
    os.rename(root / "masks", root / "Masks")
    assert check_folder(root, warnings=True) == [
        "warning: no folder masks/, so no image has a mask; Masks/ exists, but folder names are case-sensitive: to "
        "use it, set --data masks=Masks (masks=\"Masks\" in Python)"]
    assert bool(load(root, masks="Masks").train.has_mask.all())
    os.rename(root / "images", root / "Images")
    os.rename(root / "labels.csv", root / "Labels.csv")
    assert check_folder(root, masks="Masks") == [
        "labels.csv: not found (expected a CSV with columns image, label and optionally split); Labels.csv exists, "
        "but file names are case-sensitive: set --data labels=Labels.csv (labels=\"Labels.csv\" in Python)",
        "images/: folder not found; Images/ exists, but folder names are case-sensitive: set --data images=Images "
        "(images=\"Images\" in Python)"]


def test_in_memory_messages_say_what_to_do():
    # a newcomer's cases: a validation split of one class said only "need at least 2 classes, got n_classes=1";
    # a mask shape error repeated "(4, 1, 16, 16) or (4, 1, 16, 16)" for one-channel images
    import torch

    from explearn import ExplanationDataset
    from explearn.errors import DataError

    with pytest.raises(DataError, match=r"my/val: need at least 2 classes.*labels are all 0.*pass n_classes=K"):
        ExplanationDataset(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long), name="my/val")
    assert ExplanationDataset(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long), n_classes=2).n_classes == 2
    with pytest.raises(DataError, match=r"mask must have shape \(3, 1, 4, 4\) to match x, got \(3, 2, 4, 4\)$"):
        ExplanationDataset(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]), torch.rand(3, 2, 4, 4))
