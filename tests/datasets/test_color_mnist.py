import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from explearn import datasets
from explearn.datasets.mnist import load_mnist
from explearn.errors import ConfigError

color = importlib.import_module("explearn.datasets.color_mnist")  # the package exports the function by that name
SMALL = {"n_train": 200, "n_val": 500, "n_test": 500}
#: the CDEP colours, restated here so that a change in the module is caught
CDEP = np.array([[1, 0, 0], [.9447, .5248, 0], [.7905, .8893, 0], [.2780, .8340, 0], [0, .7786, .1730],
                 [0, .7233, .5626], [0, .4453, .6680], [0, .0681, .6126], [.2477, 0, .5573], [.5020, 0, .5020]])


@pytest.fixture(scope="module")
def folder(mnist_dir: Path) -> str:
    return str(mnist_dir)


@pytest.fixture(scope="module")
def small(folder) -> datasets.Splits:
    return datasets.color_mnist(seed=0, data_dir=folder, **SMALL)


def _colour_of(x: torch.Tensor) -> np.ndarray:
    """The colour of each image (N, 3, 28, 28), up to brightness: every lit pixel is gray * colour, so the
    per-channel maximum is max(gray) * colour; divided by its largest channel. Shape: (N, 3)."""
    peak = x.amax((2, 3)).numpy()
    return peak / peak.max(1, keepdims=True)


def _hue(colours: np.ndarray) -> np.ndarray:
    return colours / colours.max(1, keepdims=True)


def _gray(folder, split, index):
    mnist = load_mnist(folder)
    return (mnist.train_x if split.startswith(("train", "val")) else mnist.test_x)[index] / np.float32(255)


def test_splits_shapes_and_names(small):
    assert set(small.eval_splits()) == {"train", "val", "val_oracle", "test", "test_train_colours"}
    assert [len(small.train), len(small.val), len(small.test)] == [200, 500, 500]
    assert small.input_shape == (3, 28, 28) and small.n_classes == 10
    assert small.info["dataset"] == "color_mnist" and small.info["options"]["n_train"] == 200


def test_colours_are_cdeps():
    assert np.allclose(color.COLOURS, CDEP, atol=1e-6)


@pytest.mark.parametrize("split, rule", [("train", lambda y: y), ("val", lambda y: y), ("val_oracle", lambda y: 9 - y),
                                         ("test", lambda y: 9 - y), ("test_train_colours", lambda y: y)])
def test_colour_follows_the_split_rule(small, split, rule):
    ds = small.eval_splits()[split]
    y = ds.y.numpy()
    assert np.allclose(_colour_of(ds.x), _hue(CDEP[rule(y)]), atol=1e-4)


@pytest.mark.parametrize("split", ["train", "val", "val_oracle", "test", "test_train_colours"])
def test_every_pixel_is_gray_times_the_colour_and_the_background_black(folder, split):
    a = color.render_split(color.ColorMNISTOptions(**SMALL, data_dir=folder), 0, split)
    gray = _gray(folder, split, a["index"])  # (N, 28, 28)
    expected = gray[:, None] * CDEP[a["colour"]][:, :, None, None]
    assert np.allclose(a["x"], expected, atol=1e-6)
    assert (a["x"][np.broadcast_to(gray[:, None] == 0, a["x"].shape)] == 0).all()
    # channel ratios on lit pixels are the colour's ratios: red / (red + green + blue)
    lit = gray > 0.5
    share = a["x"][:, 0] / a["x"].sum(1).clip(1e-12)
    colour_share = CDEP[:, 0] / CDEP.sum(1)
    assert np.allclose(share[lit], np.broadcast_to(colour_share[a["colour"]][:, None, None], lit.shape)[lit], atol=1e-5)


def test_val_oracle_is_the_validation_images_in_the_test_colours(folder, small):
    """issue 14: val is drawn like training (train_like protocol), val_oracle like test (oracle protocol), on the
    same validation images, disjoint from the test images."""
    opts = color.ColorMNISTOptions(**SMALL, data_dir=folder)
    val, oracle = (color.render_split(opts, 0, split) for split in ("val", "val_oracle"))
    assert (val["index"] == oracle["index"]).all() and (val["y"] == oracle["y"]).all()
    assert (val["colour"] == val["y"]).all() and (oracle["colour"] == 9 - oracle["y"]).all()
    assert torch.equal(small.extra["val_oracle"].y, small.val.y)


def test_masks_are_the_digit_in_one_channel_and_there_are_no_wrong_masks(folder, small):
    for split, ds in small.eval_splits().items():
        assert ds.mask.shape[1] == 1 and not ds.has_wrong_mask.any()
        a = color.render_split(color.ColorMNISTOptions(**SMALL, data_dir=folder), 0, split)
        assert torch.equal(ds.mask[:, 0], torch.from_numpy(_gray(folder, split, a["index"]) > 0.1).float())
    assert small.train.has_mask.all()
    few = datasets.color_mnist(seed=0, data_dir=folder, **SMALL, mask_fraction=0.1)
    assert int(few.train.has_mask.sum()) == 20 and few.test.has_mask.all()


def test_val_disjoint_from_train_and_test_splits_share_images(folder):
    opts = color.ColorMNISTOptions(**SMALL, data_dir=folder)
    assert not set(color.render_split(opts, 0, "train")["index"]) & set(color.render_split(opts, 0, "val")["index"])
    test, shortcut = (color.render_split(opts, 0, split)["index"] for split in ("test", "test_train_colours"))
    assert (test == shortcut).all()


def test_deterministic_and_nested(folder, small):
    again = datasets.color_mnist(seed=0, data_dir=folder, **SMALL)
    large = datasets.color_mnist(seed=0, data_dir=folder, **{**SMALL, "n_train": 600})
    for split, ds in small.eval_splits().items():
        assert torch.equal(ds.x, again.eval_splits()[split].x)
    assert torch.equal(small.train.x, large.train.x[:200]) and torch.equal(small.val.x, large.val.x)
    assert torch.equal(small.extra["val_oracle"].x, large.extra["val_oracle"].x)
    assert not torch.equal(small.val.x, datasets.color_mnist(seed=1, data_dir=folder, **SMALL).val.x)


def test_registered_and_options_checked(folder, small):
    assert torch.equal(datasets.load("color_mnist", seed=0, data_dir=folder, **SMALL).test.x, small.test.x)
    with pytest.raises(ConfigError, match="did you mean 'mask_fraction'"):
        datasets.color_mnist(seed=0, mask_fractio=0.5)
    with pytest.raises(ConfigError, match="unknown setting 'masks'"):
        datasets.load("color_mnist", masks="wrong")  # colour is not localised: no wrong-reason masks to choose
