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


def _no_planning(monkeypatch) -> None:
    """Fail the test if reproduce plans or trains anything: --out must be refused before."""
    def refuse(*args, **kwargs):
        raise AssertionError("planned or trained although --out was refused")

    monkeypatch.setattr("explearn.reproduce.plan_search", refuse)
    monkeypatch.setattr("explearn.reproduce.run_sweep", refuse)


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


def test_explain_keeps_the_rows_of_earlier_runs_it_does_not_replace(fitted, data, tmp_path):
    """A second run on part of the images, with another attribution, keeps the first run's other overlays listed
    (so a third run may replace them) and each row names its attribution."""
    out = tmp_path / "overlays"
    every = ["explain", str(fitted[1]), str(data / "images"), "--out", str(out)]
    assert main(every) == 0
    first = {r["overlay"]: r for r in csv.DictReader((out / "explanations.csv").open())}
    assert main(["explain", str(fitted[1]), str(data / "images" / "img0.png"), "--out", str(out),
                 "--attribution", "saliency"]) == 0
    rows = {r["overlay"]: r for r in csv.DictReader((out / "explanations.csv").open())}
    assert set(rows) == set(first)
    assert rows["img0.png"]["attribution"] == "saliency"
    assert all(rows[o] == first[o] for o in first if o != "img0.png")
    assert {first[o]["attribution"] for o in first} == {"input_gradient"}
    assert main(every) == 0  # the first command again replaces its own overlays
    assert {r["attribution"] for r in csv.DictReader((out / "explanations.csv").open())} == {"input_gradient"}


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
    # the check moved into reproduce() (library callers get it too), so nothing may be planned or trained
    _no_planning(monkeypatch)
    blocker = tmp_path / "report"
    blocker.write_text("")
    assert main(["reproduce", "paper", "--preset", "smoke", "--out", str(blocker)]) == 2
    assert "--out" in capsys.readouterr().err and blocker.read_text() == ""


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


def test_gradcam_on_a_vector_model_says_what_to_use_instead(tmp_path, capsys):
    # a newcomer's case: explain --attribution gradcam on an mlp suggested "a method without Grad-CAM (e.g. 'rrr')"
    root = make_folder(tmp_path / "d")
    ckpt = tmp_path / "mlp.pt"
    assert main(["fit", str(root), "--model", "mlp", "--epochs", "1", "--out", str(ckpt), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["explain", str(ckpt), str(root / "images"), "--out", str(tmp_path / "o"),
                 "--attribution", "gradcam"]) == 2
    err = capsys.readouterr().err
    assert "use --attribution input_gradient" in err and "'rrr'" not in err


# --- reproduce --out: a new or empty folder, or one reproduce wrote (issue 12 item 1, second round) --------------

TINY_SPEC = """
dataset = "triangles"
methods = ["standard"]
seeds = 2
epochs = 1
data = { n_train = 16, n_val = 4, n_test = 8, image_size = 16 }
"""


def _specs(folder: Path, report: str = "together") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY_SPEC + f'report = "{report}"\n')
    return folder


def test_reproduce_refuses_a_folder_it_did_not_write(tmp_path, monkeypatch, capsys):
    """Issue 12 item 1: `reproduce --out f` replaced a summary.md, results.csv, manifest.json and a figure that it
    had not written. Now a non-empty folder without an explearn manifest is refused, listing what is there."""
    _no_planning(monkeypatch)
    f = tmp_path / "f"
    (f / "figures").mkdir(parents=True)
    (f / "summary.md").write_text("notes\n")
    (f / "results.csv").write_text("a,b\n")
    (f / "manifest.json").write_text('{"mine":1}\n')
    (f / "figures" / "small_data_accuracy_vs_size.png").write_text("x\n")
    before = _bytes(f)
    assert main(["reproduce", "paper", "--preset", "smoke", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"--out {f}: holds figures/, manifest.json, results.csv, summary.md; it is not a report folder" in err
    assert "choose another folder" in err and "Traceback" not in err
    assert _bytes(f) == before  # not one byte changed
    assert sorted(str(p.relative_to(f)) for p in f.rglob("*")) == [  # nothing added (no runs/)
        "figures", "figures/small_data_accuracy_vs_size.png", "manifest.json", "results.csv", "summary.md"]


def test_reproduce_refuses_an_image_dataset_folder(data, monkeypatch, capsys):
    """Issue 12 item 1: `--out ds` (an image dataset folder) wrote a full report into it."""
    _no_planning(monkeypatch)
    before = _bytes(data)
    assert main(["reproduce", "paper", "--preset", "smoke", "--out", str(data)]) == 2
    assert f"--out {data}: holds images/, labels.csv, masks/; it is not a report folder" in capsys.readouterr().err
    assert _bytes(data) == before and not (data / "runs").exists()


@pytest.mark.parametrize("out", ["mypaper", ".", "mypaper/report"])
def test_reproduce_refuses_out_that_is_holds_or_lies_inside_the_spec_folder(tmp_path, monkeypatch, out, capsys):
    """Issue 12 item 1: `reproduce mypaper --out mypaper` wrote the report and its runs into its own spec folder."""
    _no_planning(monkeypatch)
    monkeypatch.chdir(tmp_path)
    specs = _specs(tmp_path / "mypaper")
    before = _bytes(specs)
    assert main(["reproduce", "mypaper", "--preset", "smoke", "--out", out]) == 2
    where = {"mypaper": "is", ".": "holds", "mypaper/report": "is inside"}[out]
    err = capsys.readouterr().err
    assert f"--out {out}: {where} the folder the inputs are read from ({specs.resolve()})" in err
    assert "would mix with the spec files" in err
    assert _bytes(specs) == before and sorted(p.name for p in specs.iterdir()) == ["tiny.toml"]


def test_report_folders_are_recognised_by_their_manifest(tmp_path):
    """Issue 12 item 1: the rule in the library. A folder reproduce wrote holds a manifest.json with the keys
    collection, preset, specs and entries, or (studies reported apart) nothing but runs/ and such folders."""
    from explearn.reproduce import is_report_folder

    manifest = json.dumps({"collection": "c", "preset": "smoke", "specs": {}, "entries": []})
    together = tmp_path / "together"
    together.mkdir()
    (together / "manifest.json").write_text(manifest)
    (together / "notes.txt").write_text("mine")  # beside a manifest: the folder is still reproduce's
    assert is_report_folder(together)
    apart = tmp_path / "apart"
    for study in ("a", "b"):
        (apart / study).mkdir(parents=True)
        (apart / study / "manifest.json").write_text(manifest)
    (apart / "runs").mkdir()
    (apart / ".DS_Store").write_text("")  # names starting with a dot are not counted
    assert is_report_folder(apart)
    (apart / "notes.txt").write_text("mine")  # anything else beside studies: not reproduce's
    assert not is_report_folder(apart)
    (apart / "notes.txt").unlink()
    (apart / "c").mkdir()
    assert not is_report_folder(apart)  # a folder without a manifest
    for text in ('{"specs": {}, "entries": []}', "[]", "not json", '{"mine": 1}'):  # keys missing, not an object
        (together / "manifest.json").write_text(text)
        assert not is_report_folder(together), text
    (together / "manifest.json").unlink()
    (together / "manifest.json").mkdir()
    assert not is_report_folder(together)
    runs_only = tmp_path / "runs_only"
    (runs_only / "runs").mkdir(parents=True)
    assert not is_report_folder(runs_only)  # no report beside the runs


@pytest.mark.parametrize("report", ["together", "apart"])
def test_reproduce_writes_a_new_or_empty_folder_and_resumes_its_own(tmp_path, report, capsys):
    """Issue 12 item 1: accepted are a new folder, an empty one (a .DS_Store does not count) and a folder that
    reproduce wrote (together: OUT/manifest.json; apart: OUT/runs and OUT/<study>/manifest.json), whose finished
    runs are reused."""
    specs = _specs(tmp_path / "specs", report)
    for out in (tmp_path / "new" / "report", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
            (out / ".DS_Store").write_text("")
        args = ["reproduce", str(specs), "--preset", "smoke", "--out", str(out), "--workers", "0"]
        assert main(args) == 0
        assert "2 runs trained, 0 reused, 0 failed" in capsys.readouterr().out
        report_dir = out if report == "together" else out / "tiny"
        assert (report_dir / "manifest.json").is_file() and (report_dir / "summary.md").is_file()
        assert len(list((out / "runs").glob("*/done"))) == 2
        assert main(args) == 0  # its own folder: accepted, nothing trained again
        assert "0 runs trained, 2 reused, 0 failed" in capsys.readouterr().out


def test_reproduce_refuses_a_foreign_folder_where_a_study_report_goes(tmp_path, monkeypatch, capsys):
    """Issue 12 item 1: each report folder reproduce writes follows the rule, OUT/<study> included."""
    _no_planning(monkeypatch)
    specs = _specs(tmp_path / "specs", "apart")
    out = tmp_path / "out"
    (out / "tiny").mkdir(parents=True)
    (out / "tiny" / "photo.jpg").write_bytes(b"mine")
    (out / "manifest.json").write_text(json.dumps({"collection": "c", "preset": "smoke", "specs": {}, "entries": []}))
    assert main(["reproduce", str(specs), "--preset", "smoke", "--out", str(out)]) == 2
    assert f"--out {out / 'tiny'}: holds photo.jpg; it is not a report folder" in capsys.readouterr().err
    (out / "tiny" / "photo.jpg").unlink()
    (out / "runs").write_text("")
    assert main(["reproduce", str(specs), "--preset", "smoke", "--out", str(out)]) == 2
    assert f"{out / 'runs'} is a file" in capsys.readouterr().err


# --- bench: two outputs, one file (issue 12 item 4, second round) -------------------------------------------------


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_bench_refuses_one_file_for_json_and_log(tmp_path, monkeypatch, how, capsys):
    """`bench --json X --log X` appended to X, then the JSON replaced it. The same file by any name (a relative
    path, a symbolic or hard link) is refused before measuring, and X is left as it was."""
    def run_bench(*args, **kwargs):
        raise AssertionError("measured although --json and --log are one file")

    monkeypatch.setattr("explearn.bench.run_bench", run_bench)
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "LOG.md"
    log.write_text("# Benchmark log\n\nearlier entries\n")
    other = {"same": log, "relative": Path("LOG.md"), "symlink": tmp_path / "link.md",
             "hardlink": tmp_path / "hard.md"}[how]
    if how == "symlink":
        os.symlink(log, other)
    if how == "hardlink":
        os.link(log, other)
    assert main(["bench", "--log", str(log), "--json", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"--log {log} and --json {other} are the same file" in err and "Traceback" not in err
    assert log.read_text() == "# Benchmark log\n\nearlier entries\n"


def test_bench_writes_json_and_log_into_new_folders(tmp_path, monkeypatch):
    """Issue 12 item 6: the checks leave no folder behind, so the writers create theirs."""
    monkeypatch.setattr("explearn.bench.run_bench", lambda **kwargs: {"machine": {}, "workloads": []})
    monkeypatch.setattr("explearn.bench.markdown", lambda figures: "| figure |")
    log, figures = tmp_path / "a" / "LOG.md", tmp_path / "b" / "c" / "figures.json"
    assert main(["bench", "--log", str(log), "--json", str(figures)]) == 0
    assert log.read_text().endswith("| figure |\n") and json.loads(figures.read_text()) == {"machine": {},
                                                                                            "workloads": []}


# --- a write that fails names the file, never its temporary (issue 12 item 5) ------------------------------------


def test_a_failed_write_names_its_target_and_keeps_errno(tmp_path):
    """The rule of explearn.files.atomic_path: an OSError met while writing the temporary file or renaming it names
    the target ("cannot write .../results.csv: Read-only file system"), keeps its class and errno, and leaves
    nothing behind; an OSError of the block about another file passes unchanged."""
    import errno

    from explearn.files import atomic_path

    target = tmp_path / "results.csv"
    with pytest.raises(OSError) as raised:
        with atomic_path(target) as tmp:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp))  # as open(tmp, "w") on a read-only disk
    assert raised.value.errno == errno.EROFS
    assert str(raised.value) == f"[Errno {errno.EROFS}] cannot write {target}: Read-only file system"
    with pytest.raises(PermissionError) as raised:
        with atomic_path(target) as tmp:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp))
    assert raised.value.errno == errno.EACCES and f"cannot write {target}: Permission denied" in str(raised.value)
    with pytest.raises(FileNotFoundError) as raised:
        with atomic_path(target):
            open(tmp_path / "an_input.csv")
    assert raised.value.filename == str(tmp_path / "an_input.csv")  # not a failed write: unchanged
    assert not list(tmp_path.iterdir())


def test_report_on_a_read_only_folder_names_the_file(tmp_path, monkeypatch, capsys):
    """Issue 12 item 5: `report` on a read-only folder said `[Errno 30] ... '.results.21878...csv'`. The rename onto
    a read-only file system fails as the kernel reports it (both names); the message names the report's file."""
    import errno
    import re

    specs = _specs(tmp_path / "specs")
    out = tmp_path / "report"
    assert main(["reproduce", str(specs), "--preset", "smoke", "--out", str(out), "--workers", "0"]) == 0
    capsys.readouterr()
    before = _bytes(out)

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(src), None, os.fspath(dst))

    monkeypatch.setattr(os, "replace", read_only)
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"explearn: error: \[Errno {errno.EROFS}\] cannot write {re.escape(str(out))}/\S+: "
                     r"Read-only file system", err), err
    assert not re.search(r"/\.[^/\s]+\.\d+\.\d+\.\d+", err)  # no temporary name (.results.<pid>.<thread>.<n>.csv)
    monkeypatch.undo()
    assert _bytes(out) == before  # nothing replaced, no temporary left


def test_a_checkpoint_that_cannot_be_written_names_the_checkpoint(tmp_path, monkeypatch):
    """Issue 12 item 5, for checkpoints: torch.save's own errors named the temporary file; now the file is opened
    by explearn and a failure names the checkpoint. The failure is real: a folder sits at the temporary name."""
    import itertools
    import threading

    from explearn import files
    from explearn.checkpoint import save_checkpoint
    from explearn.models import small_cnn

    target = tmp_path / "model.pt"
    (tmp_path / f".model.{os.getpid()}.{threading.get_ident()}.7.pt").mkdir()  # the name atomic_path picks next
    for write in (lambda: files.atomic_write(target, b""),
                  lambda: save_checkpoint(target, small_cnn((1, 16, 16), 2), input_shape=(1, 16, 16),
                                          class_names=["a", "b"], model_spec={"name": "small_cnn", "options": {}})):
        monkeypatch.setattr(files, "_counter", itertools.count(7))
        with pytest.raises(IsADirectoryError) as raised:
            write()
        assert str(raised.value) == f"[Errno {raised.value.errno}] cannot write {target}: Is a directory"
    assert not target.exists()


# --- a command that fails leaves no folder behind (issue 12 item 6) ----------------------------------------------


def test_probe_removes_the_folders_it_created(tmp_path):
    from explearn.outputs import probe_folder

    assert probe_folder(tmp_path / "a" / "b" / "c", "--out") == tmp_path / "a" / "b" / "c"
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    probe_folder(tmp_path / "kept", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not list((tmp_path / "kept").iterdir())


def test_failed_commands_leave_no_new_folder(data, fitted, tmp_path, monkeypatch, capsys):
    """Issue 12 item 6: `train --out new/run` that fails after the destination was checked (here: an unknown
    dataset option) left new/run behind, empty. So did fit, explain and reproduce."""
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--data", "no_such_option=1", "--out", "new/run"]) == 2
    (data / "labels.csv").write_text("image,label\nimg0,a\nmissing,b\n")  # fit fails reading it
    assert main(["fit", str(data), "--epochs", "1", "--out", "new/model.pt", "--quiet"]) == 2
    (data / "masks" / "img3.png").write_bytes(b"not a png")  # explain fails reading it
    assert main(["explain", str(fitted[1]), str(data / "images"), "--out", "new/overlays"]) == 2
    specs = _specs(tmp_path / "specs")
    (specs / "tiny.toml").write_text(TINY_SPEC + "variants = [{ label = 'v', hp = { lr_ratio = 10 } }]\n")
    assert main(["reproduce", str(specs), "--preset", "smoke", "--out", "new/report"]) == 2  # hp of no method
    err = capsys.readouterr().err
    assert err.count("explearn: error:") == 4 and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_commands_create_their_folders_when_they_write(fitted, tmp_path):
    """Issue 12 item 6: what the checks no longer leave, the writers create."""
    assert main(["predict", str(fitted[1]), str(fitted[0] / "images"), "--out", str(tmp_path / "p" / "q.csv")]) == 0
    assert len((tmp_path / "p" / "q.csv").read_text().splitlines()) == 1 + 6
    assert main([*TRAIN, "--out", str(tmp_path / "t" / "run")]) == 0
    assert (tmp_path / "t" / "run" / "result.json").is_file()

