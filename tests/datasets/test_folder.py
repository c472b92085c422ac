"""The folder dataset: layout, every reported problem, masks, geometry, splits and normalisation (tiny folders)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explearn import datasets
from explearn.datasets import FolderOptions, Preprocess, check_folder, load_folder
from explearn.errors import ConfigError, DataError

W, H = 20, 16  # Pillow sizes are (width, height)
COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "eel": (40, 40, 200)}


def write_csv(root: Path, rows: list[dict], name: str = "labels.csv") -> None:
    with open(root / name, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def solid(label: str, k: int = 0, size=(W, H)) -> Image.Image:
    r, g, b = COLOURS[label]
    return Image.new("RGB", size, (r, g, (b + 7 * k) % 256))


def box_mask(size=(W, H), box=(4, 4, 12, 10), mode="1") -> Image.Image:
    arr = np.zeros(size[::-1], dtype=np.uint8)
    arr[box[1]:box[3], box[0]:box[2]] = 255
    return Image.fromarray(arr).convert(mode)


def make_folder(root: Path, per_class: int = 5, classes=("cat", "dog"), split: bool = False) -> Path:
    """per_class images of each class, alternately png and jpg; masks for every image but the last of each class."""
    rows = []
    for label in classes:
        for k in range(per_class):
            name = f"{label}{k}.{'png' if k % 2 == 0 else 'jpg'}"
            save(solid(label, k), root / "images" / name)
            if k < per_class - 1:
                save(box_mask(), root / "masks" / f"{label}{k}.png")
            row = {"image": name, "label": label}
            if split:
                row["split"] = ("train", "train", "val", "test")[k % 4] if k < per_class - 1 else "train"
            rows.append(row)
    write_csv(root, rows)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path / "data")


def problems(root: Path, **options) -> str:
    with pytest.raises(DataError) as err:
        load_folder(root, **options)
    return str(err.value)


def rows_of(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# --- loading ------------------------------------------------------------------------------------------------


def test_loads_png_and_jpg_with_partial_masks(folder):
    splits = load_folder(folder, seed=0, normalize="none")
    files = splits.info["files"]
    assert sorted(sum(files.values(), [])) == sorted(r["image"] for r in rows_of(folder))
    for split, ds in splits.eval_splits().items():
        assert ds.input_shape == (3, H, W) and ds.class_names == ("cat", "dog")
        expected = [(folder / "masks" / (Path(f).stem + ".png")).exists() for f in files[split]]
        assert ds.has_mask.tolist() == expected
        assert torch.equal(ds.mask[~ds.has_mask], torch.zeros_like(ds.mask[~ds.has_mask]))
    x = splits.train.x
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert {"dataset", "seed", "options", "class_names", "preprocess", "files"} <= set(splits.info)
    assert splits.info["dataset"] == "folder" and splits.info["class_names"] == ["cat", "dog"]


def test_binary_mask_is_the_white_box(folder):
    ds = load_folder(folder, normalize="none").train
    expected = torch.from_numpy(np.asarray(box_mask(), dtype=np.float32))
    assert torch.equal(ds.mask[ds.has_mask][0, 0], expected)


def test_soft_mask_values_with_nearest_and_16_bit(tmp_path):
    root = make_folder(tmp_path / "d")
    Image.new("L", (W, H), 128).save(root / "masks" / "cat0.png")
    Image.fromarray(np.full((H, W), 30000, dtype=np.uint16)).save(root / "masks" / "cat2.png")
    with pytest.warns(datasets.FolderWarning, match="cat0.png: every pixel has the same value, 128 of 255"):
        splits = load_folder(root, normalize="none", image_size=(8, 10))  # constant masks mark no region: warned
    masks = {}
    for split, files in splits.info["files"].items():
        masks.update(zip(files, splits.eval_splits()[split].mask))
    assert torch.allclose(masks["cat0.png"], torch.full((1, 8, 10), 128 / 255), atol=1e-6)
    assert torch.allclose(masks["cat2.png"], torch.full((1, 8, 10), 30000 / 65535), atol=1e-6)


@pytest.mark.parametrize("fit", ["stretch", "crop"])
def test_resize_keeps_image_and_mask_aligned(tmp_path, fit):
    root = tmp_path / "d"
    rows = []
    for k, label in enumerate(["cat", "dog"] * 3):
        size, box = (60, 40), (8 + 4 * k, 6 + 2 * k, 30 + 4 * k, 24 + 2 * k)
        arr = np.zeros((40, 60, 3), dtype=np.uint8)
        arr[box[1]:box[3], box[0]:box[2]] = 255
        save(Image.fromarray(arr), root / "images" / f"i{k}.png")
        save(box_mask(size, box), root / "masks" / f"i{k}.png")
        rows.append({"image": f"i{k}.png", "label": label})
    write_csv(root, rows)
    splits = load_folder(root, image_size=(24, 24), fit=fit, normalize="none", val_fraction=0.34, test_fraction=0.34)
    for ds in splits.eval_splits().values():
        bright, mask = ds.x.mean(1) > 0.5, ds.mask[:, 0] > 0.5
        iou = (bright & mask).sum((1, 2)) / (bright | mask).sum((1, 2))
        assert float(iou.min()) > 0.9
        if fit == "crop":  # the crop cuts 18 of 60 columns: boxes lose their outer parts, identically
            assert ds.input_shape == (3, 24, 24)


def test_crop_box_is_centred_at_the_target_aspect():
    pre = Preprocess(size=(10, 10), fit="crop")
    assert pre.crop_box((40, 20)) == (10.0, 0.0, 30.0, 20.0)
    assert pre.crop_box((20, 40)) == (0.0, 10.0, 20.0, 30.0)
    assert Preprocess(size=(10, 10)).crop_box((40, 20)) == (0.0, 0.0, 40.0, 20.0)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "CMYK", "LA"])
def test_image_modes_are_accepted(tmp_path, mode):
    root = make_folder(tmp_path / "d")
    img = solid("cat")
    img = Image.fromarray(np.full((H, W), 40000, dtype=np.uint16)) if mode == "I;16" else img.convert(mode)
    img.save(root / "images" / "cat0.png" if mode != "CMYK" else root / "images" / "cat1.jpg")
    splits = load_folder(root, normalize="none")
    assert splits.input_shape == (3, H, W)
    grey = load_folder(root, normalize="none", channels="grey")
    assert grey.input_shape == (1, H, W)


def test_names_without_extension_and_subfolders(tmp_path):
    root = tmp_path / "d"
    for k, label in enumerate(["cat", "dog", "cat", "dog", "cat", "dog"]):
        save(solid(label, k), root / "images" / label / f"IMD{k:03d}.png")
    save(box_mask(), root / "masks" / "cat" / "IMD000.png")
    write_csv(root, [{"image": f"{lab}/IMD{k:03d}", "label": lab}
                     for k, lab in enumerate(["cat", "dog", "cat", "dog", "cat", "dog"])])
    splits = load_folder(root, val_fraction=0.34, test_fraction=0.34, normalize="none")
    files = sum(splits.info["files"].values(), [])
    assert sorted(files) == sorted(f"{lab}/IMD{k:03d}.png" for k, lab in enumerate(["cat", "dog"] * 3))
    assert sum(int(ds.has_mask.sum()) for ds in splits.eval_splits().values()) == 1


def test_class_order_default_sorted_or_given(tmp_path):
    root = make_folder(tmp_path / "d", classes=("dog", "cat"))
    assert load_folder(root).train.class_names == ("cat", "dog")
    given = load_folder(root, classes=("dog", "cat"))
    assert given.train.class_names == ("dog", "cat") and given.info["class_names"] == ["dog", "cat"]
    x = given.train.x
    dogs = given.train.y == 0
    assert float(x[dogs][:, 1].mean()) > float(x[dogs][:, 0].mean())  # class 0 is green: the dogs


def test_split_column_is_honoured(tmp_path):
    root = make_folder(tmp_path / "d", per_class=5, split=True)
    splits = load_folder(root, seed=3)
    by_split = {r["image"]: r["split"] for r in rows_of(root)}
    for split, files in splits.info["files"].items():
        assert files and all(by_split[f] == split for f in files)
    assert load_folder(root, seed=4).info["files"] == splits.info["files"]  # the seed does not move them


def test_stratified_split_proportions_and_seed(tmp_path):
    root = make_folder(tmp_path / "d", per_class=20, classes=("cat", "dog", "eel"))
    splits = load_folder(root, seed=0, val_fraction=0.25, test_fraction=0.2)
    assert splits.train.class_counts() == [11, 11, 11]
    assert splits.val.class_counts() == [5, 5, 5] and splits.test.class_counts() == [4, 4, 4]
    again = load_folder(root, seed=0, val_fraction=0.25, test_fraction=0.2)
    assert torch.equal(again.train.x, splits.train.x) and torch.equal(again.test.mask, splits.test.mask)
    assert load_folder(root, seed=1, val_fraction=0.25, test_fraction=0.2).info["files"] != splits.info["files"]


def test_train_normalisation_standardises_the_training_split(folder):
    splits = load_folder(folder, normalize="train")
    x = splits.train.x.double()
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3, dtype=torch.double), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.double), atol=1e-4)
    pre = Preprocess.from_dict(splits.info["preprocess"])
    raw = load_folder(folder, normalize="none")
    assert torch.allclose(pre.denormalize(splits.test.x), raw.test.x, atol=1e-5)
    assert torch.allclose(pre.image(folder / "images" / "cat0.png"), pre.normalize(pre.raw_image(folder / "images" /
                                                                                                  "cat0.png")))


def test_imagenet_and_no_normalisation(folder):
    imagenet = Preprocess.from_dict(load_folder(folder, normalize="imagenet").info["preprocess"])
    assert imagenet.mean == (0.485, 0.456, 0.406) and imagenet.std == (0.229, 0.224, 0.225)
    assert load_folder(folder, normalize="none").info["preprocess"]["mean"] is None


def test_mask_fraction_keeps_a_seeded_share(tmp_path):
    root = make_folder(tmp_path / "d", per_class=11)
    full = load_folder(root, seed=0)
    half = load_folder(root, seed=0, mask_fraction=0.5)
    n = int(full.train.has_mask.sum())
    assert int(half.train.has_mask.sum()) == int(np.floor(0.5 * n + 0.5))
    assert not bool((half.train.has_mask & ~full.train.has_mask).any())
    assert torch.equal(half.val.has_mask, full.val.has_mask)


def test_preprocess_round_trip_and_unknown_key():
    pre = Preprocess(size=(8, 10), fit="crop", channels="grey", mean=(0.5,), std=(0.25,), mask_resample="bilinear")
    d = pre.to_dict()
    assert d["size"] == [8, 10] and d["mean"] == [0.5]
    assert Preprocess.from_dict(d) == pre
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Preprocess.from_dict({**d, "colour": 1})
    with pytest.raises(ConfigError, match="mean and std need 1 values"):
        Preprocess(channels="grey", mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))


def test_preprocess_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nothing.png: file not found"):
        Preprocess().image(tmp_path / "nothing.png")


def test_registered_and_root_required(folder):
    splits = datasets.load("folder", seed=0, root=str(folder), image_size="8,10", classes="dog,cat")
    assert splits.input_shape == (3, 8, 10) and splits.train.class_names == ("dog", "cat")
    assert datasets.normalize_options("folder", {"root": str(folder)})["labels"] == "labels.csv"
    with pytest.raises(ConfigError, match="root is required"):
        datasets.load("folder", seed=0)
    assert check_folder(folder) == []
    assert FolderOptions(root="x").preprocess() == Preprocess()


# --- problems, one at a time --------------------------------------------------------------------------------


def _drop_row(root, image):
    write_csv(root, [r for r in rows_of(root) if r["image"] != image])


def _add_rows(root, *rows):
    write_csv(root, rows_of(root) + [dict(r) for r in rows])


def _add_split(root, value_for=lambda row: ("train", "train", "val", "test", "train")[int(row["image"][3])]):
    write_csv(root, [{**r, "split": value_for(r)} for r in rows_of(root)])


PROBLEMS = {
    "label without an image": (lambda r: _add_rows(r, {"image": "ghost.png", "label": "cat"}),
                               ["labels.csv line 12: image 'ghost.png' not found in images/"]),
    "image without a label": (lambda r: _drop_row(r, "dog3.jpg"),
                              ["images/dog3.jpg: no row of labels.csv names this image"]),
    "mask of another size": (lambda r: box_mask((10, 8)).save(r / "masks" / "cat1.png"),
                             ["masks/cat1.png: mask is 10x8 pixels", "images/cat1.jpg is 20x16"]),
    "mask of another aspect": (lambda r: box_mask((20, 20)).save(r / "masks" / "cat1.png"),
                               ["masks/cat1.png: mask is 20x20", "a different aspect ratio"]),
    "corrupt image": (lambda r: (r / "images" / "dog2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"),
                      ["images/dog2.png: cannot be read as an image"]),
    "truncated image": (lambda r: (r / "images" / "dog2.png").write_bytes((r / "images" / "dog2.png").read_bytes()[:60]),
                        ["images/dog2.png: cannot be read as an image"]),
    "corrupt mask": (lambda r: (r / "masks" / "dog0.png").write_bytes(b"not a png"),
                     ["masks/dog0.png: cannot be read as an image"]),
    "empty label": (lambda r: write_csv(r, [{**x, "label": "" if x["image"] == "cat2.png" else x["label"]}
                                            for x in rows_of(r)]),
                    ["labels.csv line 4: empty label for image 'cat2.png'"]),
    "split value": (lambda r: (_add_split(r), write_csv(r, [{**x, "split": "training" if x["image"] == "dog1.jpg"
                                                             else x["split"]} for x in rows_of(r)])),
                    ["labels.csv line 8: split 'training' is not one of train, val, test"]),
    "absolute path": (lambda r: _add_rows(r, {"image": str(r / "images" / "cat0.png"), "label": "cat"}),
                      ["labels.csv line 12: image path", "is absolute"]),
    "path escaping": (lambda r: _add_rows(r, {"image": "../labels.csv", "label": "cat"}),
                      ["labels.csv line 12: image path '../labels.csv' points outside images/"]),
    "duplicate row": (lambda r: _add_rows(r, {"image": "cat1", "label": "dog"}),
                      ["labels.csv line 12: image images/cat1.jpg is listed again (first on line 3)"]),
    "orphan mask": (lambda r: box_mask().save(r / "masks" / "lynx.png"),
                    ["masks/lynx.png: no image images/lynx.* for this mask"]),
    "missing csv": (lambda r: (r / "labels.csv").unlink(), ["labels.csv: not found"]),
    "missing column": (lambda r: write_csv(r, [{"file": x["image"], "label": x["label"]} for x in rows_of(r)]),
                       ["labels.csv: no column 'image' (columns found: file, label)"]),
    "sizes and aspects differ": (lambda r: solid("dog", size=(18, 16)).save(r / "images" / "dog4.png"),
                                 ["images differ in size", "9 are 20x16; 18x16: images/dog4.png",
                                  "differs by more than 10%", "--data fit=crop", "--image-size HxW"]),
    "non-png mask": (lambda r: solid("cat").save(r / "masks" / "cat4.jpg"), ["masks/cat4.jpg: masks must be PNG"]),
    "ambiguous name": (lambda r: (solid("cat").save(r / "images" / "cat4.bmp"),  # cat4 has no mask to share
                                  write_csv(r, [{**x, "image": "cat4" if x["image"] == "cat4.png" else x["image"]}
                                                for x in rows_of(r)])),
                       ["labels.csv line 6: image 'cat4' matches several files (cat4.bmp, cat4.png)"]),
    "class absent from training": (lambda r: _add_split(r, lambda x: "test" if x["label"] == "dog" else
                                                        ("val", "test", "train")[int(x["image"][3]) % 3]),
                                   ["class 'dog' has no image in the training split (5 in all)"]),
    "empty split": (lambda r: _add_split(r, lambda x: ("train", "test")[int(x["image"][3]) % 2]),
                    ["the val split is empty: no row of labels.csv has split=val"]),
}


@pytest.mark.parametrize("case", list(PROBLEMS))
def test_each_problem_is_reported_with_its_file(folder, case):
    mutate, expected = PROBLEMS[case]
    mutate(folder)
    message = problems(folder)
    assert message.startswith(f"1 problem in folder dataset {folder}:"), message
    for text in expected:
        assert text in message, message
    assert check_folder(folder) == message.split("\n  ")[1:]


def test_unknown_label_with_classes(folder):
    message = problems(folder, classes=("cat", "cow"))
    assert "labels.csv line 7: label 'dog' is not one of the classes cat, cow" in message
    assert ("class 'cow' has no image at all: no row has the label 'cow'; add images of it, or leave it out of the "
            "classes option") in message  # issue 12: not "in the training split", which sent users to val_fraction
    assert message.startswith("6 problems")


def test_one_class_is_a_problem(tmp_path):
    root = make_folder(tmp_path / "d", classes=("cat",))
    assert "found 1 class (cat); a classifier needs at least two" in problems(root)


def test_several_problems_are_reported_together(folder):
    _add_rows(folder, {"image": "ghost.png", "label": "cat"})
    _drop_row(folder, "dog3.jpg")
    box_mask((10, 8)).save(folder / "masks" / "cat1.png")
    (folder / "images" / "dog2.png").write_bytes(b"junk")
    box_mask().save(folder / "masks" / "lynx.png")
    message = problems(folder)
    lines = message.split("\n  ")
    assert lines[0] == f"5 problems in folder dataset {folder}:"
    for name in ("ghost.png", "images/dog3.jpg", "masks/cat1.png", "images/dog2.png", "masks/lynx.png"):
        assert sum(name in line for line in lines[1:]) == 1, (name, message)
