"""End to end for practitioners: explearn fit on an image folder, predict and explain from the checkpoint."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from explearn.checkpoint import load_checkpoint
from explearn.cli import main


def _make_folder(root, n=36, size=(24, 32), seed=0):
    """Red squares (class 'red') or blue squares (class 'blue') on grey noise; the mask is the square. Every third
    image has no mask; a third of the images are JPEG."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(n):
        label = "red" if i % 2 else "blue"
        img = rng.integers(60, 140, size=(*size, 3), dtype=np.uint8)
        top, left = rng.integers(2, size[0] - 10), rng.integers(2, size[1] - 10)
        img[top:top + 8, left:left + 8] = (230, 30, 30) if label == "red" else (30, 30, 230)
        name = f"img{i:02d}" + (".jpg" if i % 3 == 1 else ".png")
        Image.fromarray(img).save(root / "images" / name)
        if i % 3:
            mask = np.zeros(size, dtype=np.uint8)
            mask[top:top + 8, left:left + 8] = 255
            Image.fromarray(mask).save(root / "masks" / f"img{i:02d}.png")
        rows.append((name, label))
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = _make_folder(tmp_path_factory.mktemp("data") / "squares")
    ckpt = tmp_path_factory.mktemp("model") / "model.pt"
    code = main(["fit", str(root), "--method", "two_stage", "--epochs", "3", "--image-size", "16x20", "--out", str(ckpt),
                 "--model-opt", "widths=8,16", "--quiet"])
    assert code == 0
    return root, ckpt


def test_fit_writes_a_checkpoint_with_classes_and_preprocessing(fitted):
    root, path = fitted
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == ["blue", "red"]
    assert ckpt.input_shape == (3, 16, 20)
    assert tuple(ckpt.preprocess["size"]) == (16, 20)
    assert ckpt.config["method"] == "two_stage" and ckpt.config["model"]["name"] == "small_resnet"
    assert 0 <= ckpt.metrics["test/acc"] <= 1


def test_predict_repeats_training_preprocessing(fitted, tmp_path):
    """Predicting the test split's files from disk gives exactly the test accuracy measured during training."""
    root, path = fitted
    ckpt = load_checkpoint(path)
    files = ckpt.config["data"]["files"]["test"]
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), *[str(root / "images" / f) for f in files], "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["image"].split("/")[-1] for r in rows] == [f.split("/")[-1] for f in files]
    probs = np.array([[float(r["prob_blue"]), float(r["prob_red"])] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert all(r["label"] == ("red" if p[1] > p[0] else "blue") for r, p in zip(rows, probs))
    labels = dict(csv.reader((root / "labels.csv").open()))
    acc = np.mean([r["label"] == labels[f] for r, f in zip(rows, files)])
    assert acc == pytest.approx(ckpt.metrics["test/acc"])


def test_predict_a_folder_prints_csv(fitted, capsys):
    root, path = fitted
    assert main(["predict", str(path), str(root / "images")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "image,label,prob_blue,prob_red" and len(lines) == 1 + 36


def test_explain_writes_overlays_with_masks_where_found(fitted, tmp_path):
    root, path = fitted
    out = tmp_path / "overlays"
    masked, unmasked = root / "images" / "img01.jpg", root / "images" / "img03.png"
    assert main(["explain", str(path), str(masked), str(unmasked), "--out", str(out)]) == 0
    for name in ("img01.png", "img03.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100 and np.asarray(im).std() > 0
    rows = {r["image"].split("/")[-1]: r for r in csv.DictReader((out / "explanations.csv").open())}
    assert rows["img01.jpg"]["mask"].endswith("masks/img01.png") and 0 <= float(rows["img01.jpg"]["mass_in_mask"]) <= 1
    assert rows["img03.png"]["mask"] == "" and rows["img03.png"]["mass_in_mask"] == "nan"
    assert main(["explain", str(path), str(masked), "--out", str(tmp_path / "g"), "--attribution", "gradcam"]) == 0
    assert (tmp_path / "g" / "img01.png").is_file()


def test_explain_with_a_captum_attribution_writes_its_overlays(fitted, tmp_path, capsys):
    root, path = fitted
    out = tmp_path / "ig"
    masked, unmasked = root / "images" / "img01.jpg", root / "images" / "img03.png"
    assert main(["explain", str(path), str(masked), str(unmasked), "--out", str(out),
                 "--attribution", "integrated_gradients"]) == 0
    for name in ("img01.png", "img03.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100 and np.asarray(im).std() > 0
    rows = {r["image"].split("/")[-1]: r for r in csv.DictReader((out / "explanations.csv").open())}
    assert 0 <= float(rows["img01.jpg"]["mass_in_mask"]) <= 1 and rows["img03.png"]["mass_in_mask"] == "nan"
    assert "wrote 2 overlays" in capsys.readouterr().out


def test_explain_help_lists_every_evaluation_attribution(capsys):
    from explearn.explain import EVALUATION_ATTRIBUTIONS

    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = capsys.readouterr().out
    for name in EVALUATION_ATTRIBUTIONS:
        assert f"{name}: " in text, name
    with pytest.raises(SystemExit) as stop:
        main(["explain", "model.pt", "x.png", "--out", "o", "--attribution", "integrated_gradient"])
    assert stop.value.code == 2 and "'integrated_gradients'" in capsys.readouterr().err


def test_fit_reports_folder_problems_before_training(tmp_path, capsys):
    root = _make_folder(tmp_path / "bad", n=12)
    (root / "images" / "img00.png").unlink()
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(root / "images" / "stray.png")
    ckpt = tmp_path / "m.pt"
    assert main(["fit", str(root), "--out", str(ckpt), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "img00" in err and "stray.png" in err
    assert not ckpt.exists()


def test_predict_refuses_a_tampered_checkpoint(fitted, tmp_path, capsys):
    _, path = fitted
    payload = torch.load(path, weights_only=True)
    payload["state_dict"][next(iter(payload["state_dict"]))] *= 2
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    assert main(["predict", str(bad), str(tmp_path)]) == 2
    assert "changed afterwards" in capsys.readouterr().err


def test_predict_reports_every_bad_image(fitted, tmp_path, capsys):
    _, path = fitted
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["predict", str(path), str(tmp_path / "broken.png"), str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "missing.png" in err


def test_bad_image_size_option(tmp_path, capsys):
    root = _make_folder(tmp_path / "d", n=6)
    assert main(["fit", str(root), "--image-size", "16by20"]) == 2
    assert "--image-size" in capsys.readouterr().err


NETWORK = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


def build(n_classes):
    return Net(n_classes)
'''


def test_fit_predict_with_your_own_backbone(tmp_path, monkeypatch, capsys):
    root = _make_folder(tmp_path / "d", n=12, size=(16, 16))
    (tmp_path / "explearn_test_nets.py").write_text(NETWORK)
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "m.pt"
    assert main(["fit", str(root), "--backbone", "explearn_test_nets:build", "--feature-layer", "body", "--epochs", "1",
                 "--out", str(ckpt), "--quiet"]) == 0
    assert "explearn_test_nets:build split at body" in capsys.readouterr().out
    # the checkpoint names the function but never imports it by itself
    assert main(["predict", str(ckpt), str(root / "images")]) == 2
    assert "--backbone explearn_test_nets:build" in capsys.readouterr().err
    assert main(["predict", str(ckpt), str(root / "images"), "--backbone", "explearn_test_nets:build"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 13
    assert main(["predict", str(ckpt), str(root / "images"), "--backbone", "explearn_test_nets:other"]) == 2
    assert main(["fit", str(root), "--backbone", "explearn_test_nets:build"]) == 2
    assert "--feature-layer" in capsys.readouterr().err
    assert main(["fit", str(root), "--backbone", "no_such_module:build", "--feature-layer", "body"]) == 2
    assert "cannot import module 'no_such_module'" in capsys.readouterr().err
