"""PH2 on the real files (../shared/data/ph2, research-only: read in place, never copied): tasks, splits, seeds
and the marker variant."""

from pathlib import Path

import numpy as np
import pytest
import torch

from explearn import datasets
from explearn.datasets import PH2Options, Preprocess
from explearn.datasets.ph2 import MARKER_COLOUR, corner_disks
from explearn.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def folder(ph2_dir: Path) -> str:
    return str(ph2_dir)


@pytest.fixture(scope="module")
def melanoma(folder) -> datasets.Splits:
    return datasets.ph2(seed=0, data_dir=folder)


@pytest.fixture(scope="module")
def marker(folder) -> datasets.Splits:
    return datasets.load("ph2", seed=0, data_dir=folder, marker=True)


def totals(splits: datasets.Splits) -> list[int]:
    return np.sum([splits.eval_splits()[s].class_counts() for s in SPLITS], axis=0).tolist()


def raw(splits: datasets.Splits, split: str) -> torch.Tensor:
    return Preprocess.from_dict(splits.info["preprocess"]).denormalize(splits.eval_splits()[split].x)


def test_melanoma_task(melanoma):
    assert totals(melanoma) == [160, 40]
    assert melanoma.train.class_names == ("nevus", "melanoma") and melanoma.input_shape == (3, 72, 96)
    for split in SPLITS:
        ds = melanoma.eval_splits()[split]
        assert bool(ds.has_mask.all()) and set(ds.mask.unique().tolist()) == {0.0, 1.0}
    assert melanoma.info["dataset"] == "ph2" and len(sum(melanoma.info["files"].values(), [])) == 200


@pytest.mark.parametrize("task, counts, names", [
    ("diagnosis", [80, 80, 40], ("common_nevus", "atypical_nevus", "melanoma")),
    ("melanoma_vs_common", [80, 40], ("common_nevus", "melanoma")),
])
def test_other_tasks(folder, task, counts, names):
    splits = datasets.ph2(seed=0, data_dir=folder, task=task, image_size=(24, 32))
    assert totals(splits) == counts and splits.train.class_names == names


def test_splits_are_stratified(melanoma):
    assert melanoma.train.class_counts() == [80, 20]
    assert melanoma.val.class_counts() == [32, 8] and melanoma.test.class_counts() == [48, 12]
    files = [set(melanoma.info["files"][s]) for s in SPLITS]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])


def test_train_normalisation(melanoma):
    x = melanoma.train.x.double()
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3, dtype=torch.double), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.double), atol=1e-4)


def test_same_seed_same_tensors(folder, melanoma, marker):
    again = datasets.ph2(seed=0, data_dir=folder, marker=True)  # the marker variant: splits, masks and corners
    for split, a in marker.eval_splits().items():
        b = again.eval_splits()[split]
        for key in ("x", "y", "mask", "has_mask", "wrong_mask", "has_wrong_mask"):
            assert torch.equal(getattr(a, key), getattr(b, key)), (split, key)
    other = datasets.ph2(seed=1, data_dir=folder, image_size=(24, 32))
    assert other.info["files"]["test"] != melanoma.info["files"]["test"]


@pytest.mark.parametrize("split, n_painted", [("train", 20), ("val", 8)])
def test_marker_only_on_marker_class_training_and_validation_images(marker, split, n_painted):
    """issue 14: the validation split is painted like the training split (the train_like protocol's split)."""
    train = marker.eval_splits()[split]
    painted = train.has_wrong_mask
    assert torch.equal(painted, train.y == 1) and int(painted.sum()) == n_painted
    disk = train.wrong_mask[:, 0] > 0.5  # (N, H, W)
    assert not bool(disk[~painted].any())
    x = raw(marker, split)
    colour = torch.tensor(MARKER_COLOUR).view(3, 1)
    for i in painted.nonzero()[:, 0].tolist():
        pixels = x[i][:, disk[i]]  # (3, P)
        assert pixels.shape[1] > 50 and torch.allclose(pixels, colour.expand_as(pixels), atol=1e-5)
        assert not bool((train.mask[i, 0] * disk[i]).any())  # the lesion mask excludes the disk
    assert {int(c) for c in _corners(disk[painted])} <= {0, 1, 2, 3}


def test_marker_rate_and_mask_fraction(folder):
    half = datasets.ph2(seed=0, data_dir=folder, image_size=(24, 32), marker=True, marker_rate=0.5, mask_fraction=0.5)
    train = half.train
    assert int(train.has_mask.sum()) == 50 and torch.equal(train.y, datasets.ph2(
        seed=0, data_dir=folder, image_size=(24, 32)).train.y)
    painted = (train.wrong_mask.flatten(1) > 0).any(1)
    assert int(painted.sum()) == 10 and bool((train.y[painted] == 1).all())
    assert torch.equal(train.has_wrong_mask, painted & train.has_mask)  # wrong masks follow mask_fraction too


def test_marker_leaves_val_oracle_and_test_clean(melanoma, marker):
    """issue 14: val_oracle is the validation images without the marker, drawn like the (clean) test split."""
    for split, clean in (("val_oracle", "val"), ("test", "test")):
        assert not bool(marker.eval_splits()[split].has_wrong_mask.any())
        assert torch.allclose(raw(marker, split), raw(melanoma, clean), atol=1e-5)
        assert torch.equal(marker.eval_splits()[split].y, melanoma.eval_splits()[clean].y)
    assert marker.info["files"]["test"] == melanoma.info["files"]["test"]
    assert marker.info["files"]["val_oracle"] == marker.info["files"]["val"] == melanoma.info["files"]["val"]
    assert set(marker.info["marker"]["files"]["val"]) <= set(melanoma.info["files"]["val"])
    assert "val_oracle" not in melanoma.extra  # only the marker variant has a shortcut to select around


@pytest.mark.parametrize("split, painted_class", [("test_marker", 1), ("test_marker_swapped", 0)])
def test_marker_test_splits(melanoma, marker, split, painted_class):
    ds = marker.extra[split]
    assert torch.equal(ds.y, marker.test.y) and torch.equal(ds.has_wrong_mask, ds.y == painted_class)
    disk = ds.wrong_mask[:, 0] > 0.5
    x, clean = raw(marker, split), raw(melanoma, "test")
    outside = ~disk[:, None].expand_as(x)
    assert torch.allclose(x[outside], clean[outside], atol=1e-5)
    colour = torch.tensor(MARKER_COLOUR).view(1, 3, 1, 1).expand_as(x)
    assert torch.allclose(x[~outside], colour[~outside], atol=1e-5)
    assert not bool((ds.mask[:, 0] * disk).any())


def test_corner_disks():
    disks = corner_disks(72, 96, 0.18)
    assert disks.shape == (4, 72, 96)
    assert torch.equal(disks[1], disks[0].flip(1)) and torch.equal(disks[2], disks[0].flip(0))
    assert abs(int(disks[0].sum()) - np.pi * (0.09 * 72) ** 2) < 10


def test_options_are_checked(folder, monkeypatch):
    with pytest.raises(ConfigError, match="marker_class must be a class of task 'melanoma'"):
        PH2Options(marker_class=2)
    monkeypatch.delenv("EXPLEARN_DATA", raising=False)
    with pytest.raises(DataError, match="no PH2 folder given"):
        datasets.ph2(seed=0)
    with pytest.raises(DataError, match="does not exist"):
        datasets.ph2(seed=0, data_dir=str(Path(folder) / "missing"))


def _corners(disk: torch.Tensor) -> torch.Tensor:
    """Which corner each disk is in: bit 1 = bottom half, bit 0 = right half. Shape: (N, H, W) -> (N,)."""
    n, h, w = disk.shape
    rows = torch.arange(h).view(1, h, 1).expand_as(disk)[disk].view(n, -1).float().mean(1)
    cols = torch.arange(w).view(1, 1, w).expand_as(disk)[disk].view(n, -1).float().mean(1)
    return 2 * (rows > h / 2).long() + (cols > w / 2).long()
