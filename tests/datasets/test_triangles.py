import numpy as np
import pytest
import torch

from explearn import datasets
from explearn.datasets.triangles import TriangleOptions, render_split
from explearn.errors import ConfigError


def test_same_seed_same_tensors():
    a = datasets.triangles(n_train=20, seed=3, n_val=10, n_test=10)
    b = datasets.triangles(n_train=20, seed=3, n_val=10, n_test=10)
    c = datasets.triangles(n_train=20, seed=4, n_val=10, n_test=10)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).mask, getattr(b, split).mask)
    assert not torch.equal(a.train.x, c.train.x)


def test_splits_sizes_ranges_and_balance():
    s = datasets.triangles(n_train=40, seed=0, n_val=20, n_test=60, train_per_class=(36, 4))
    assert s.train.class_counts() == [36, 4]
    assert s.val.class_counts() == [18, 2]  # validation follows the training ratio
    assert s.test.class_counts() == [30, 30]  # the test set is balanced
    assert s.train.x.shape == (40, 1, 32, 32) and s.train.x.min() >= 0 and s.train.x.max() <= 1
    assert set(s.train.mask.unique().tolist()) == {0.0, 1.0}


def test_smaller_training_sets_are_nested_and_test_set_is_fixed():
    small = datasets.triangles(n_train=10, seed=0, n_val=4, n_test=10)
    large = datasets.triangles(n_train=30, seed=0, n_val=4, n_test=10)
    assert torch.equal(small.train.x[:5], large.train.x[:5])  # first 5 of class 0
    assert torch.equal(small.train.x[5:], large.train.x[15:20])  # first 5 of class 1
    assert torch.equal(small.test.x, large.test.x)


def test_mask_covers_exactly_the_triangle():
    opts = TriangleOptions(n_train=40, n_classes=4, spurious_rate=1.0)
    arrays = render_split(opts, seed=1, split="train")
    clean, mask = arrays["clean"][:, 0], arrays["mask"][:, 0].astype(bool)
    for img, m in zip(clean, mask):
        assert m.sum() >= 10  # a real triangle, not a speck
        values = np.unique(img[m])
        assert len(values) == 1 and values[0] >= 0.5  # drawn on top with one intensity
        assert not (np.isclose(img, values[0]) & ~m).all()  # not the whole image
        # triangles keep away from the corners, where the spurious square lives
        assert not m[:5, :5].any() and not m[:5, -5:].any() and not m[-5:, :5].any() and not m[-5:, -5:].any()


def test_mask_is_a_triangle_pointing_in_the_label_direction():
    arrays = render_split(TriangleOptions(n_train=60, n_classes=4, difficulty=0.0), seed=0, split="train")
    for m, label in zip(arrays["mask"][:, 0], arrays["y"]):
        rows, cols = np.nonzero(m)
        # the apex is the far end along the label direction: the mask's centroid lies on the base side
        cy, cx = rows.mean(), cols.mean()
        extent = {0: cy - rows.min(), 1: cols.max() - cx, 2: rows.max() - cy, 3: cx - cols.min()}
        opposite = {0: 2, 1: 3, 2: 0, 3: 1}
        assert extent[label] > extent[opposite[label]]


@pytest.mark.parametrize("rate", [0.9, 0.5])
def test_spurious_feature_agrees_with_label_at_the_asked_rate(rate):
    opts = TriangleOptions(n_train=2000, n_val=400, n_test=400, spurious_rate=rate)
    train = render_split(opts, seed=0, split="train")
    agree = (train["spurious"] == train["y"]).mean()
    assert abs(agree - rate) < 3 * np.sqrt(rate * (1 - rate) / 2000) + 1e-9
    # the square is really in the image: its corner is bright in the noise-free image
    corners = {0: (slice(1, 4), slice(1, 4)), 1: (slice(1, 4), slice(-4, -1))}
    for img, corner in zip(train["clean"][:50, 0], train["spurious"][:50]):
        assert (img[corners[corner]] == 1.0).all()

    test = render_split(opts, seed=0, split="test")
    assert (test["spurious"] == -1).all()  # absent by default
    indep = render_split(TriangleOptions(n_test=2000, spurious_rate=rate, spurious_test="independent"), 0, "test")
    assert abs((indep["spurious"] == indep["y"]).mean() - 0.5) < 0.05


def test_spurious_splits_exist_only_with_a_spurious_feature():
    plain = datasets.triangles(n_train=10, seed=0, n_val=4, n_test=10)
    spur = datasets.triangles(n_train=10, seed=0, n_val=4, n_test=10, spurious_rate=1.0)
    assert plain.extra == {} and list(spur.extra) == ["test_spurious"]
    assert torch.equal(plain.test.y, spur.test.y)


def test_mask_fraction_keeps_exactly_that_share():
    s = datasets.triangles(n_train=50, seed=0, n_val=4, n_test=10, mask_fraction=0.2)
    assert int(s.train.has_mask.sum()) == 10 and s.val.has_mask.all() and s.test.has_mask.all()


@pytest.mark.parametrize("options, message", [
    ({"n_classes": 3}, "'n_classes': 3 is not one of 2, 4"),
    ({"train_per_class": (10,)}, "train_per_class needs 2 counts"),
    ({"spurious_rate": 1.5}, r"spurious_rate must lie in \[0, 1\]"),
    ({"difficulty": -1}, "difficulty must lie in"),
    ({"difficulty_": 1}, "did you mean 'difficulty'"),
    ({"spurious_test": "absnt"}, "did you mean 'absent'"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        datasets.triangles(n_train=10, seed=0, **options)


def test_load_by_name_matches_the_function():
    assert torch.equal(datasets.load("triangles", seed=2, n_train=10, n_val=4, n_test=4).train.x,
                       datasets.triangles(10, seed=2, n_val=4, n_test=4).train.x)
    with pytest.raises(ConfigError, match="did you mean 'triangles'"):
        datasets.load("triangle")
