"""The data option ``resample="oversample"`` (random oversampling, the known remedy for class imbalance)."""

import pytest
import torch

from explearn import datasets
from explearn.datasets.base import ExplanationDataset
from explearn.datasets.masks import oversample
from explearn.errors import ConfigError


def toy(counts: list[int]) -> ExplanationDataset:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return ExplanationDataset(x, y, (x > 3).float(), torch.ones(len(y), dtype=torch.bool), len(counts))


def test_every_class_grows_to_the_largest_by_repeating_its_own_images():
    train = toy([7, 3, 2])  # class 1: 7 = 2 x 3 + 1; class 2: 7 = 3 x 2 + 1
    out = oversample(train, seed=0)
    assert out.class_counts() == [7, 7, 7] and len(out) == 21
    assert torch.equal(out.x[:12], train.x) and torch.equal(out.y[:12], train.y)  # the originals first, in order
    ids = out.x[:, 0, 0, 0].long()  # each image's value is its original index
    assert torch.equal(out.y, train.y[ids]) and torch.equal(out.mask, train.mask[ids])  # masks repeat with images
    per_image = torch.bincount(ids, minlength=12).tolist()
    assert per_image[:7] == [1] * 7  # the largest class is not resampled
    assert sorted(per_image[7:10]) == [2, 2, 3]  # floor(7 / 3) = 2 each, 7 mod 3 = 1 of them once more
    assert sorted(per_image[10:12]) == [3, 4]  # floor(7 / 2) = 3 each, 1 once more
    assert torch.equal(oversample(train, seed=0).x, out.x)  # the data seed decides which repeat once more
    assert any(not torch.equal(oversample(train, seed=s).x, out.x) for s in range(1, 10))


def test_balanced_data_are_unchanged_and_an_empty_class_stays_empty():
    train = toy([4, 4])
    assert torch.equal(oversample(train, 0).x, train.x)
    gap = ExplanationDataset(train.x, torch.tensor([0, 0, 0, 2, 2, 0, 0, 0]), train.mask, train.has_mask, 3)
    assert oversample(gap, 0).class_counts() == [6, 0, 6]


def test_the_option_on_a_dataset_and_its_run_identity():
    plain = datasets.load("triangles", seed=0, n_train=40, train_per_class=[30, 10], n_val=10, n_test=10,
                          image_size=16)
    over = datasets.load("triangles", seed=0, n_train=40, train_per_class=[30, 10], n_val=10, n_test=10,
                         image_size=16, resample="oversample")
    assert over.train.class_counts() == [30, 30] and torch.equal(over.train.x[:40], plain.train.x)
    assert torch.equal(over.val.x, plain.val.x) and torch.equal(over.test.x, plain.test.x)  # training only
    assert over.info["resample"] == "oversample" and "resample" not in plain.info
    # the option joins a run's identity only when it resamples: earlier runs keep their ids
    assert "resample" not in datasets.normalize_options("triangles", {"n_train": 40})
    assert datasets.normalize_options("triangles", {"resample": "oversample"})["resample"] == "oversample"
    with pytest.raises(ConfigError, match="resample"):
        datasets.load("triangles", seed=0, n_train=40, resample="undersample")
