"""Issue 12 item 4: outputs never destroy inputs, and work is not thrown away.

No explearn command writes over one of its inputs or over a file it did not make, and none trains and then finds
that it cannot save: every destination is checked before any data are read.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explearn.cli import main
from explearn.errors import DataError
from explearn.inference import overlay_names

from tests.field.image_folders import image, make_folder, square


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """A six-image folder (images/img<k>.png, masks/img<k>.png) and a one-epoch checkpoint trained on it."""
    root = make_folder(tmp_path_factory.mktemp("data") / "squares")
    ckpt = tmp_path_factory.mktemp("model") / "model.pt"
    assert main(["fit", str(root), "--epochs", "1", "--model-opt", "widths=4,8", "--out", str(ckpt), "--quiet"]) == 0
    return root, ckpt


@pytest.fixture
def data(fitted, tmp_path) -> Path:
    """A private copy of the folder, so a test that (wrongly) wrote into it could not affect another."""
    return Path(shutil.copytree(fitted[0], tmp_path / "data"))


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_training(monkeypatch) -> None:
    """Fail the test if a command starts training: destinations must be refused before."""
    def train(*args, **kwargs):
        raise AssertionError("trained although the destination could not be written")

    monkeypatch.setattr(importlib.import_module("explearn.train"), "train", train)  # the module, not explearn.train()


# --- explain: the folder of the inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("out", ["masks", "images", ".", "images/overlays", "masks/new/overlays"])
def test_explain_refuses_out_that_is_or_holds_an_input_folder(fitted, data, out, capsys):
    """The issue's case: `explain --out` pointed at the masks (or images) folder overwrote the originals."""
    before = _bytes(data)
    assert main(["explain", str(fitted[1]), str(data / "images" / "img2.png"), "--out", str(data / out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "the folder the inputs are read from" in err and "Traceback" not in err
    assert _bytes(data) == before  # not one byte changed, nothing added


def test_explain_refuses_a_link_to_the_masks_folder(fitted, data, tmp_path, capsys):
    """Folders are compared resolved: a symbolic link to the masks folder is the masks folder."""
    link = tmp_path / "overlays"
    os.symlink(data / "masks", link)
    before = _bytes(data)
    assert main(["explain", str(fitted[1]), str(data / "images" / "img2.png"), "--out", str(link)]) == 2
    assert "the folder the inputs are read from" in capsys.readouterr().err
    assert _bytes(data) == before


def test_explain_refuses_explicit_masks_folder_as_out(fitted, data, tmp_path, capsys):
    masks = Path(shutil.copytree(data / "masks", tmp_path / "my_masks"))
    before = _bytes(masks)
    assert main(["explain", str(fitted[1]), str(data / "images" / "img2.png"), "--masks", str(masks),
                 "--out", str(masks)]) == 2
    assert "is the folder the inputs are read from" in capsys.readouterr().err
    assert _bytes(masks) == before


# --- explain: names and counts -------------------------------------------------------------------------------


def test_same_stem_in_two_folders_gives_two_overlays(fitted, tmp_path, capsys):
    """The issue's case: a/x.jpg and b/x.jpg wrote one overlay while the message counted two."""
    for folder, k in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        Image.fromarray(image(k)).save(tmp_path / folder / "x.png")
    out = tmp_path / "overlays"
    assert main(["explain", str(fitted[1]), str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a/x.png", "b/x.png"]
    assert "wrote 2 overlays" in printed
    rows = list(csv.DictReader((out / "explanations.csv").open()))
    assert [r["overlay"] for r in rows] == ["a/x.png", "b/x.png"]


def test_same_stem_two_extensions_keep_their_extension(fitted, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(image(0)).save(photos / "x.png")
    Image.fromarray(image(1)).save(photos / "x.jpg")
    out = tmp_path / "overlays"  # beside the photos: a folder inside them is refused
    assert main(["explain", str(fitted[1]), str(photos / "x.jpg"), str(photos / "x.png"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["x.jpg.png", "x.png.png"]
    assert "wrote 2 overlays" in capsys.readouterr().out


@pytest.mark.parametrize("files, names", [
    (["photos/x.jpg"], ["x.png"]),
    (["photos/a/x.jpg", "photos/b/x.jpg"], ["a/x.png", "b/x.png"]),
    (["p/x.jpg", "p/x.png", "p/y.png"], ["x.jpg.png", "x.png.png", "y.png"]),
    (["p/x.jpg", "p/x.png", "p/x.jpg.png"], ["x.jpg.png", "x.png.png", "x.jpg.png.png"]),  # the rule's own clash
    (["p/x", "p/x.png"], ["x.png", "x.png.png"]),
    (["p/x.png", "p/x.png"], ["x.png", "x.png"]),  # one file given twice: one overlay
    (["p/a/x.png", "p/../p/b/y.png"], ["a/x.png", "b/y.png"]),
])
def test_overlay_names(files, names):
    """Issue 12 item 4: names are the path below the images' common folder, extension -> .png; distinct files get
    distinct names."""
    assert [n.as_posix() for n in overlay_names([Path(f) for f in files])] == names


def test_explain_again_replaces_its_own_overlays(fitted, data, tmp_path, capsys):
    out = tmp_path / "overlays"
    args = ["explain", str(fitted[1]), str(data / "images"), "--out", str(out)]
    assert main(args) == 0
    (out / "img0.png").write_bytes(b"stale")  # an overlay of the earlier run, listed in its explanations.csv
    assert main(args) == 0
    assert (out / "img0.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote 6 overlays" in capsys.readouterr().out


def test_explain_refuses_to_replace_a_file_it_did_not_write(fitted, data, tmp_path, capsys):
    out = tmp_path / "overlays"
    out.mkdir()
    (out / "img0.png").write_bytes(b"my holiday photo")
    (out / "notes.txt").write_text("kept")
    assert main(["explain", str(fitted[1]), str(data / "images"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 file(s) there would be replaced" in err and str(out / "img0.png") in err
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "notes.txt"]  # no work done, nothing written
    assert (out / "img0.png").read_bytes() == b"my holiday photo"


def test_explain_refuses_a_foreign_explanations_csv(fitted, data, tmp_path, capsys):
    out = tmp_path / "overlays"
    out.mkdir()
    (out / "explanations.csv").write_text("patient,diagnosis\n1,nevus\n")
    assert main(["explain", str(fitted[1]), str(data / "images" / "img0.png"), "--out", str(out)]) == 2
    assert "explanations.csv" in capsys.readouterr().err
    assert (out / "explanations.csv").read_text() == "patient,diagnosis\n1,nevus\n"


def test_explain_refuses_a_listed_overlay_that_links_to_an_input(fitted, data, tmp_path, capsys):
    """A file listed by an earlier run may be replaced, but never when it resolves to an input image."""
    out = tmp_path / "overlays"
    out.mkdir()
    (out / "explanations.csv").write_text("image,label,probability,overlay,mask,mass_in_mask\nx,a,1,img0.png,,nan\n")
    os.symlink(data / "images" / "img0.png", out / "img0.png")
    before = _bytes(data)
    assert main(["explain", str(fitted[1]), str(data / "images" / "img0.png"), "--out", str(out)]) == 2
    assert "which is the input" in capsys.readouterr().err
    assert _bytes(data) == before


# --- fit, train, predict, reproduce, bench: checked before any work ------------------------------------------


def test_fit_to_an_unwritable_place_fails_before_training(data, tmp_path, monkeypatch, capsys):
    """The issue's case: `fit --out` to an unwritable place trained fully, then failed."""
    _no_training(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["fit", str(data), "--epochs", "1", "--out", str(blocker / "model.pt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file, not a folder" in err and "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user whose permissions are enforced")
def test_fit_to_a_read_only_folder_fails_before_training(data, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["fit", str(data), "--epochs", "1", "--out", str(locked / "model.pt"), "--quiet"]) == 2
    finally:
        locked.chmod(0o700)
    assert "cannot write into" in capsys.readouterr().err


def test_fit_out_that_is_a_folder_or_a_foreign_file(data, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    assert main(["fit", str(data), "--out", str(tmp_path), "--quiet"]) == 2
    assert "is a folder" in capsys.readouterr().err
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes")
    assert main(["fit", str(data), "--out", str(notes), "--quiet"]) == 2
    assert "is not an explearn checkpoint" in capsys.readouterr().err
    assert notes.read_text() == "my notes"
    assert main(["fit", str(data), "--out", str(data / "labels.csv"), "--quiet"]) == 2
    assert "which is the input" in capsys.readouterr().err


def test_fit_replaces_its_own_checkpoint(fitted, tmp_path):
    ckpt = Path(shutil.copy(fitted[1], tmp_path / "model.pt"))
    before = ckpt.read_bytes()
    assert main(["fit", str(fitted[0]), "--epochs", "1", "--seed", "1", "--model-opt", "widths=4,8",
                 "--out", str(ckpt), "--quiet"]) == 0
    assert ckpt.read_bytes() != before  # seed 1: other weights


TRAIN = ["train", "--dataset", "triangles", "--data", "n_train=16", "--data", "n_val=8", "--data", "n_test=8",
         "--data", "image_size=16", "--epochs", "1", "--quiet"]


def test_train_out_checked_before_training(tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    (tmp_path / "result.json").write_text('{"mine": 1}')
    assert main([*TRAIN, "--out", str(tmp_path)]) == 2
    assert "result.json" in capsys.readouterr().err
    assert (tmp_path / "result.json").read_text() == '{"mine": 1}'
    assert main([*TRAIN, "--out", str(tmp_path / "result.json")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_train_replaces_its_own_result(tmp_path):
    assert main([*TRAIN, "--out", str(tmp_path)]) == 0
    assert main([*TRAIN, "--seed", "1", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["config"]["seed"] == 1


def test_predict_never_writes_over_an_input_image(fitted, data, capsys):
    before = _bytes(data)
    target = data / "images" / "img3.png"
    assert main(["predict", str(fitted[1]), str(data / "images"), "--out", str(target)]) == 2
    assert "which is the input" in capsys.readouterr().err
    assert _bytes(data) == before
    assert main(["predict", str(fitted[1]), str(data / "images"), "--out", str(fitted[1])]) == 2  # the checkpoint
    assert "which is the input" in capsys.readouterr().err


def test_predict_replaces_only_its_own_csv(fitted, data, tmp_path, capsys):
    other = tmp_path / "table.csv"
    other.write_text("patient,age\n1,40\n")
    assert main(["predict", str(fitted[1]), str(data / "images"), "--out", str(other)]) == 2
    assert "is not a CSV of predictions" in capsys.readouterr().err
    assert other.read_text() == "patient,age\n1,40\n"
    # a newcomer's case: another dataset's labels.csv has an image,label,... header too, and was overwritten
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label,split\na0.png,a,train\n")
    assert main(["predict", str(fitted[1]), str(data / "images"), "--out", str(labels)]) == 2
    assert labels.read_text() == "image,label,split\na0.png,a,train\n"
    mine = tmp_path / "pred.csv"
    assert main(["predict", str(fitted[1]), str(data / "images" / "img0.png"), "--out", str(mine)]) == 0
    assert main(["predict", str(fitted[1]), str(data / "images"), "--out", str(mine)]) == 0
    assert len(mine.read_text().splitlines()) == 1 + 6


def test_reproduce_out_checked_before_running(tmp_path, monkeypatch, capsys):
    def reproduce(*args, **kwargs):
        raise AssertionError("ran although --out cannot be written")

    monkeypatch.setattr("explearn.reproduce.reproduce", reproduce)
    blocker = tmp_path / "report"
    blocker.write_text("")
    assert main(["reproduce", "paper", "--preset", "smoke", "--out", str(blocker)]) == 2
    assert "--out" in capsys.readouterr().err


def test_bench_json_checked_before_measuring(tmp_path, monkeypatch, capsys):
    def run_bench(*args, **kwargs):
        raise AssertionError("measured although --json cannot be written")

    monkeypatch.setattr("explearn.bench.run_bench", run_bench)
    mine = tmp_path / "figures.json"
    mine.write_text('{"my": "figures"}')
    assert main(["bench", "--json", str(mine), "--log", str(tmp_path / "LOG.md")]) == 2
    assert "--json" in capsys.readouterr().err and mine.read_text() == '{"my": "figures"}'
    readme = tmp_path / "README.md"
    readme.write_text("# My project\n")
    assert main(["bench", "--log", str(readme)]) == 2
    assert "--log" in capsys.readouterr().err and readme.read_text() == "# My project\n"


def test_overlay_pixels_come_from_the_right_image(fitted, tmp_path):
    """Two same-named images of different content: each overlay shows its own image (not one written twice)."""
    for folder, k in (("a", 0), ("b", 3)):
        (tmp_path / folder).mkdir()
        Image.fromarray(image(k)).save(tmp_path / folder / "x.png")
    out = tmp_path / "overlays"
    assert main(["explain", str(fitted[1]), str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"),
                 "--out", str(out)]) == 0
    a, b = (np.asarray(Image.open(out / f / "x.png")) for f in ("a", "b"))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_masks_of_images_in_subfolders_follow_the_folder_layout(tmp_path):
    # issue 12 item 4 (found with item 3): `explain DIR` reads subfolders, and images of the same name in two
    # subfolders must not share a mask; the rule is the loader's: images/sub/x.jpg -> masks/sub/x.png
    from explearn.inference import find_masks

    root = tmp_path / "data"
    for rel in ("images/x.jpg", "images/a/x.jpg", "images/b/x.jpg", "masks/x.png", "masks/a/x.png", "other/y.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    files = [root / "images/x.jpg", root / "images/a/x.jpg", root / "images/b/x.jpg", root / "other/y.png"]
    assert find_masks(files, None) == [root / "masks/x.png", root / "masks/a/x.png", None, None]
    given = tmp_path / "given"
    (given / "a").mkdir(parents=True)
    (given / "a/x.png").write_bytes(b"")
    (given / "x.png").write_bytes(b"")
    # the longest tail of the image's path with a mask wins (a newcomer's case: images/x/a0.png took masks/a0.png)
    assert find_masks(files[1:3], given) == [given / "a/x.png", given / "x.png"]
    assert find_masks([root / "images/x.jpg"], given) == [given / "x.png"]
    (given / "a/x.png").unlink()
    with pytest.raises(DataError, match=r"(?s)1 mask\(s\) would serve several images.*given/x.png: the mask of"):
        find_masks(files[1:3], given)  # a/x and b/x would both take x.png
    # NFC names and a .PNG suffix pair as in the folder loader
    nfd = unicodedata.normalize("NFD", "café")
    (root / "images" / f"{nfd}.jpg").write_bytes(b"")
    (root / "masks" / "café.PNG").write_bytes(b"")
    assert find_masks([root / "images" / f"{nfd}.jpg"], None) == [root / "masks" / "café.PNG"]


# --- explain and predict: what a newcomer found after the first round -------------------------------------------


def test_explain_checks_every_mask_before_writing_anything(fitted, data, tmp_path, capsys):
    # a mask of another size was stretched over its image (fit refuses it), and an unreadable mask stopped explain
    # half way, leaving overlays that blocked the rerun
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(data / "masks" / "img0.png")  # 32 wide for a 16 x 16 image
    (data / "masks" / "img3.png").write_bytes(b"not a png")
    out = tmp_path / "overlays"
    assert main(["explain", str(fitted[1]), str(data / "images"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 mask(s) cannot be used" in err
    assert "img0.png: mask is 32x16 pixels (width x height), its image" in err and "is 16x16" in err
    assert "img3.png: cannot be read as an image" in err
    assert not list(out.rglob("*.png")) and not (out / "explanations.csv").exists()
    Image.fromarray(square() * 255).save(data / "masks" / "img0.png")
    Image.fromarray(square() * 255).save(data / "masks" / "img3.png")
    assert main(["explain", str(fitted[1]), str(data / "images"), "--out", str(out)]) == 0  # the rerun works
    assert len(list(out.glob("*.png"))) == 6


def test_explain_beside_single_files_is_fine_inside_a_folder_read_whole_is_not(fitted, tmp_path, monkeypatch, capsys):
    # `explain m.pt big.png --out overlays` in the folder of big.png was refused with advice to do exactly that
    monkeypatch.chdir(tmp_path)
    Image.fromarray(image(0)).save("big.png")
    assert main(["explain", str(fitted[1]), "big.png", "--out", "overlays"]) == 0
    capsys.readouterr()
    (tmp_path / "photos").mkdir()
    Image.fromarray(image(1)).save("photos/p.png")
    assert main(["explain", str(fitted[1]), "photos", "--out", "photos/overlays"]) == 2
    assert "is inside the folder the inputs are read from" in capsys.readouterr().err


def test_predict_on_a_folder_above_a_dataset_skips_its_masks(fitted, tmp_path, capsys):
    shutil.copytree(fitted[0], tmp_path / "pp" / "ds")
    assert main(["predict", str(fitted[1]), str(tmp_path / "pp")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 6 and all("/images/" in r and "/masks/" not in r for r in rows)


def test_predict_resizes_close_aspect_ratios_and_names_the_orientation_of_far_ones(fitted, tmp_path, capsys):
    # the model was trained on 16 x 16 files without --image-size
    Image.fromarray(np.repeat(np.repeat(image(0), 2, 0), 2, 1)).save(tmp_path / "twice.png")  # 32 x 32: resized
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 16 wide x 32 high, shown 32 wide x 16 high
    Image.fromarray(np.zeros((32, 16, 3), np.uint8)).save(tmp_path / "side.jpg", exif=exif)
    assert main(["predict", str(fitted[1]), str(tmp_path / "twice.png")]) == 0
    capsys.readouterr()
    assert main(["predict", str(fitted[1]), str(tmp_path / "side.jpg")]) == 2
    err = capsys.readouterr().err
    assert "side.jpg: 32x16 pixels (width x height) after its EXIF orientation 6 (stored 16x32)" in err
    assert "trained on 16x16" in err
