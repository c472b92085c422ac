import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from explearn import datasets
from explearn.datasets.mnist import MNIST, load_mnist, split_indices
from explearn.errors import ConfigError, DataError

decoy = importlib.import_module("explearn.datasets.decoy_mnist")  # the package exports the function by that name
SMALL = {"n_train": 200, "n_val": 300, "n_test": 500}


@pytest.fixture(scope="module")
def folder(mnist_dir: Path) -> str:
    return str(mnist_dir)


@pytest.fixture(scope="module")
def small(folder) -> datasets.Splits:
    return datasets.decoy_mnist(seed=0, data_dir=folder, **SMALL)


def _render(folder, split, seed=0, **options):
    return decoy.render_split(decoy.DecoyMNISTOptions(**{**SMALL, "data_dir": folder, **options}), seed, split)


def _corner_block(corner: int) -> np.ndarray:
    block = np.zeros((28, 28), dtype=bool)
    rows = slice(0, 4) if corner < 2 else slice(24, 28)
    cols = slice(0, 4) if corner % 2 == 0 else slice(24, 28)
    block[rows, cols] = True
    return block


def test_splits_shapes_and_names(small):
    assert set(small.eval_splits()) == {"train", "val", "val_oracle", "test", "test_decoy", "test_swapped",
                                        "test_clean"}
    assert small.info["shortcut_splits"] == ["test_decoy", "test_swapped"]
    assert [len(small.train), len(small.val), len(small.test)] == [200, 300, 500]
    assert small.input_shape == (1, 28, 28) and small.n_classes == 10
    assert 0 <= float(small.train.x.min()) and float(small.train.x.max()) <= 1
    assert small.info["dataset"] == "decoy_mnist" and small.info["data_seed"] == 0
    assert small.info["options"]["n_train"] == 200 and small.info["options"]["masks"] == "both"


@pytest.mark.parametrize("split", ["train", "val", "val_oracle", "test", "test_decoy"])
def test_patch_is_a_4x4_square_flush_in_a_corner_and_the_only_change(folder, split):
    a = _render(folder, split, n_train=2000, n_val=2000, n_test=2000)
    mnist = load_mnist(folder)
    raw = (mnist.train_x if split.startswith(("train", "val")) else mnist.test_x)[a["index"]] / np.float32(255)
    wrong = a["wrong_mask"][:, 0].astype(bool)
    for x, w, corner, r in zip(a["x"][:, 0], wrong, a["corner"], raw):
        assert (w == _corner_block(corner)).all()
        assert (x[~w] == r[~w]).all()  # the digit is untouched outside the patch
    assert (wrong.sum((1, 2)) == 16).all()
    # the four corners are used about equally often
    assert np.abs(np.bincount(a["corner"], minlength=4) / len(a["corner"]) - 0.25).max() < 0.05


@pytest.mark.parametrize("split", ["train", "val"])
def test_training_and_validation_shade_is_255_minus_25_times_the_label(small, split):
    """issue 14: the validation split is drawn like the training data (the train_like protocol's split)."""
    ds = getattr(small, split)
    x, y, wrong = ds.x[:, 0], ds.y, ds.wrong_mask[:, 0].bool()
    assert ds.has_wrong_mask.all()
    patch_values = x[wrong].reshape(-1, 16)
    expected = torch.tensor([(255 - 25 * k) / 255 for k in range(10)], dtype=torch.float32)[y]
    assert (patch_values == expected[:, None]).all()


def test_val_oracle_is_the_validation_images_with_random_shades(folder, small):
    """issue 14: val_oracle is drawn like the test split (random shades) on the validation images and corners,
    disjoint from the test images: only the patch's shade differs from val."""
    val, oracle = small.val, small.extra["val_oracle"]
    assert torch.equal(val.y, oracle.y) and torch.equal(val.wrong_mask, oracle.wrong_mask)
    patch = val.wrong_mask[:, 0].bool()
    assert torch.equal(val.x[:, 0][~patch], oracle.x[:, 0][~patch])
    assert (oracle.x[:, 0][patch].reshape(-1, 16) != val.x[:, 0][patch].reshape(-1, 16)).any(1).float().mean() > 0.8
    a, t = _render(folder, "val_oracle"), _render(folder, "test")
    assert (a["index"] == _render(folder, "val")["index"]).all()  # from MNIST train; test is from MNIST test
    assert len(a["index"]) == SMALL["n_val"] and len(t["index"]) == SMALL["n_test"]


@pytest.mark.parametrize("split", ["val_oracle", "test"])
def test_validation_and_test_shades_are_independent_of_the_label(folder, split):
    a = _render(folder, split, n_val=5000, n_test=5000)
    x, wrong, y = a["x"][:, 0], a["wrong_mask"][:, 0].astype(bool), a["y"]
    values = x[wrong].reshape(-1, 16)
    assert (values == values[:, :1]).all()  # one grey level per patch
    shade = np.rint((255 - values[:, 0] * 255) / 25).astype(int)
    assert set(shade.tolist()) <= set(range(10))
    assert (shade == a["shade"]).all()
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (y, shade), 1)
    assert (table > 0).all()  # every (label, shade) pair occurs
    assert chi2_contingency(table).pvalue > 0.001  # fixed seed: does not reject independence
    assert (shade == y).mean() < 0.15  # about 1 in 10, not the training rule


def test_test_decoy_ties_the_shade_to_the_label_on_the_test_images(small):
    t, d = small.test, small.extra["test_decoy"]
    assert torch.equal(t.y, d.y) and torch.equal(t.wrong_mask, d.wrong_mask)  # same images, same corners
    expected = torch.tensor([(255 - 25 * k) / 255 for k in range(10)], dtype=torch.float32)[d.y]
    assert (d.x[:, 0][d.wrong_mask[:, 0].bool()].reshape(-1, 16) == expected[:, None]).all()


def test_test_swapped_gives_each_test_image_another_class_shade(small):
    d, s = small.extra["test_decoy"], small.extra["test_swapped"]
    assert torch.equal(d.y, s.y) and torch.equal(d.wrong_mask, s.wrong_mask)  # same images, same corners
    patch = d.wrong_mask[:, 0].bool()
    assert torch.equal(d.x[:, 0][~patch], s.x[:, 0][~patch])  # only the patch differs
    grey = s.x[:, 0][patch].reshape(-1, 16)
    assert (grey == grey[:, :1]).all()
    shade = torch.round((255 - grey[:, 0] * 255) / 25).long()
    assert (shade != s.y).all() and set(shade.tolist()) <= set(range(10))
    assert len(set(((shade - s.y) % 10).tolist())) == 9  # every other class occurs


def test_test_clean_is_plain_mnist(folder, small):
    clean = small.extra["test_clean"]
    mnist = load_mnist(folder)
    index = _render(folder, "test_clean")["index"]
    assert torch.equal(clean.x[:, 0], torch.from_numpy(mnist.test_x[index] / np.float32(255)))
    assert not clean.has_wrong_mask.any()
    assert torch.equal(clean.y, small.test.y)


@pytest.mark.parametrize("split", ["train", "val", "test", "test_clean"])
def test_right_mask_is_the_digit_above_threshold_and_never_the_patch(folder, split):
    a = _render(folder, split)
    mnist = load_mnist(folder)
    raw = (mnist.train_x if split in ("train", "val") else mnist.test_x)[a["index"]]
    right, wrong = a["mask"][:, 0].astype(bool), a["wrong_mask"][:, 0].astype(bool)
    if split == "test_clean":
        assert not wrong.any()
    assert not (right & wrong).any()
    assert (right == ((raw / 255.0 > 0.1) & ~wrong)).all()
    assert (right.sum((1, 2)) > 20).all()  # a real digit
    right_half = _render(folder, split, digit_threshold=0.5)["mask"][:, 0].astype(bool)
    assert (right_half <= right).all() and right_half.sum() < right.sum()


def test_right_mask_skips_the_patch_even_under_ink():
    # synthetic MNIST, every pixel lit: the right-reason mask must be everything but the 16 patch pixels
    full = lambda n: np.full((n, 28, 28), 200, dtype=np.uint8)  # noqa: E731
    fake = MNIST(full(60000), np.arange(60000, dtype=np.uint8) % 10, full(10000), np.arange(10000, dtype=np.uint8) % 10)
    for split in ("train", "val", "val_oracle", "test", "test_decoy"):
        a = decoy.render_split(decoy.DecoyMNISTOptions(**SMALL), 0, split, fake)
        assert (a["mask"] == 1 - a["wrong_mask"]).all()
        assert (a["x"][a["wrong_mask"] == 0] == np.float32(200 / 255)).all()


def test_validation_is_disjoint_from_training_and_independent_of_its_size(folder):
    val = _render(folder, "val")["index"]
    assert not set(_render(folder, "train")["index"]) & set(val)
    full_train = split_indices(decoy.DecoyMNISTOptions(n_val=300), seed=0)["train"]
    assert len(full_train) == 60000 - 300 and not set(full_train) & set(val)  # default: all the rest
    assert (_render(folder, "val", n_train=50)["index"] == val).all()
    # and the other way round: more validation images move no training image; the validation sets are nested
    assert (_render(folder, "train", n_val=5000)["index"] == _render(folder, "train")["index"]).all()
    assert (_render(folder, "val", n_val=900)["index"][:300] == val).all()


def test_smaller_training_sets_are_prefixes_and_other_splits_do_not_move(folder, small):
    large = datasets.decoy_mnist(seed=0, data_dir=folder, **{**SMALL, "n_train": 600})
    for name in ("x", "y", "mask", "wrong_mask"):
        assert torch.equal(getattr(small.train, name), getattr(large.train, name)[:200])
    for split in ("val", "val_oracle", "test", "test_decoy", "test_clean"):
        assert torch.equal(small.eval_splits()[split].x, large.eval_splits()[split].x)


def test_same_seed_same_tensors_other_seed_other_data(folder, small):
    again = datasets.decoy_mnist(seed=0, data_dir=folder, **SMALL)
    other = datasets.decoy_mnist(seed=1, data_dir=folder, **SMALL)
    for split, ds in small.eval_splits().items():
        for name in ("x", "y", "mask", "has_mask", "wrong_mask", "has_wrong_mask"):
            assert torch.equal(getattr(ds, name), getattr(again.eval_splits()[split], name))
    assert not torch.equal(small.train.x, other.train.x)
    assert not torch.equal(small.test.x, other.test.x)


def test_mask_options_shape_only_the_training_split(folder):
    frac = datasets.decoy_mnist(seed=0, data_dir=folder, **SMALL, mask_fraction=0.25)
    assert int(frac.train.has_mask.sum()) == 50 and torch.equal(frac.train.has_mask, frac.train.has_wrong_mask)
    right = datasets.decoy_mnist(seed=0, data_dir=folder, **SMALL, masks="right")
    assert right.train.has_mask.all() and not right.train.has_wrong_mask.any()
    wrong = datasets.decoy_mnist(seed=0, data_dir=folder, **SMALL, masks="wrong")
    assert wrong.train.has_wrong_mask.all() and not wrong.train.has_mask.any()
    for s in (frac, right, wrong):
        assert s.test.has_mask.all() and s.test.has_wrong_mask.all()


def test_registered_and_loadable_by_name(folder, small):
    loaded = datasets.load("decoy_mnist", seed=0, data_dir=folder, **SMALL)
    assert torch.equal(loaded.train.x, small.train.x)
    options = datasets.normalize_options("decoy_mnist", {"n_val": 10})
    assert options["n_train"] is None and options["masks"] == "both" and options["digit_threshold"] == 0.1


@pytest.mark.parametrize("options, message", [
    ({"n_train": 59000, "n_val": 2000}, "n_train \\+ n_val must not exceed"),
    ({"n_test": 10001}, "n_test must lie in"),
    ({"masks": "bth"}, "did you mean 'both'"),
    ({"mask_fraction": 2}, "mask_fraction must lie in"),
    ({"digit_threshold": 1.0}, "digit_threshold must lie in"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        datasets.decoy_mnist(seed=0, **options)


def test_missing_data_says_where(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        datasets.decoy_mnist(seed=0, data_dir=str(tmp_path / "nothing"), **SMALL)


def test_shortcut_free_control_trains_on_the_same_images_without_their_patch(folder, small):
    clean = datasets.decoy_mnist(seed=0, data_dir=folder, decoy_train="absent", **SMALL)
    patch = small.train.wrong_mask[:, 0].bool()
    assert patch.flatten(1).sum(1).eq(16).all()
    assert torch.equal(clean.train.y, small.train.y)
    assert torch.equal(clean.train.x[:, 0][~patch], small.train.x[:, 0][~patch])  # the digit pixels, unchanged
    mnist = load_mnist(folder)
    index = _render(folder, "train")["index"]
    assert torch.equal(clean.train.x[:, 0], torch.from_numpy(mnist.train_x[index] / np.float32(255)))  # plain MNIST
    assert not clean.train.has_wrong_mask.any()
    # validation is drawn like training: without the patch too (issue 14), the same images
    val_index = _render(folder, "val")["index"]
    assert torch.equal(clean.val.x[:, 0], torch.from_numpy(mnist.train_x[val_index] / np.float32(255)))
    assert torch.equal(clean.val.y, small.val.y) and not clean.val.has_wrong_mask.any()
    for split in ("val_oracle", "test", "test_decoy", "test_swapped", "test_clean"):  # evaluated on the same images
        assert torch.equal(clean.eval_splits()[split].x, small.eval_splits()[split].x)
