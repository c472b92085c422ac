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
    assert plain.extra == {} and list(spur.extra) == ["test_spurious", "test_aligned", "test_swapped"]
    assert torch.equal(plain.test.y, spur.test.y)


def _square(corner: int, size: int = 32, patch: int = 3) -> np.ndarray:
    out = np.zeros((size, size), dtype=bool)
    r0 = 1 if corner in (0, 1) else size - 1 - patch
    c0 = 1 if corner in (0, 2) else size - 1 - patch
    out[r0:r0 + patch, c0:c0 + patch] = True
    return out


@pytest.mark.parametrize("n_classes", [2, 4])
def test_aligned_and_swapped_test_images_differ_from_test_only_in_the_square(n_classes):
    s = datasets.triangles(n_train=8, seed=5, n_val=4, n_test=40, n_classes=n_classes, spurious_rate=0.9)
    test, aligned, swapped = s.test, s.extra["test_aligned"], s.extra["test_swapped"]
    assert torch.equal(test.y, aligned.y) and torch.equal(test.y, swapped.y)
    assert torch.equal(test.mask, aligned.mask) and torch.equal(test.mask, swapped.mask)
    for i in range(40):
        label = int(test.y[i])
        a_sq = aligned.wrong_mask[i, 0].numpy().astype(bool)
        s_sq = swapped.wrong_mask[i, 0].numpy().astype(bool)
        assert np.array_equal(a_sq, _square(label))  # the label's own corner
        corner = [c for c in range(n_classes) if np.array_equal(s_sq, _square(c))]
        assert len(corner) == 1 and corner[0] != label  # exactly one other class's corner
        for split_x, sq in ((aligned.x[i, 0].numpy(), a_sq), (swapped.x[i, 0].numpy(), s_sq)):
            plain = test.x[i, 0].numpy()
            assert np.array_equal(split_x[~sq], plain[~sq])  # every other pixel, noise included, identical
            assert not np.array_equal(split_x[sq], plain[sq])  # the square is really drawn
    assert aligned.has_wrong_mask.all() and swapped.has_wrong_mask.all() and not test.has_wrong_mask.any()


def test_shortcut_free_control_is_the_same_images_without_the_square():
    opts = dict(n_train=30, seed=2, n_val=10, n_test=10, spurious_rate=0.9)
    shortcut = datasets.triangles(**opts, masks="both")
    control = datasets.triangles(**opts, spurious_train="absent")
    for split in ("train", "val"):
        a, b = getattr(shortcut, split), getattr(control, split)
        assert torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)
        square = a.wrong_mask[:, 0].bool()
        assert square.flatten(1).sum(1).eq(9).all()  # every shortcut image has its 3 x 3 square
        assert torch.equal(a.x[:, 0][~square], b.x[:, 0][~square])
        assert not torch.equal(a.x[:, 0][square], b.x[:, 0][square])
        assert not b.has_wrong_mask.any()
    for split in ("test", "test_aligned", "test_swapped", "test_spurious"):  # evaluated on the same images
        assert torch.equal(shortcut.eval_splits()[split].x, control.eval_splits()[split].x)


def test_wrong_reason_masks_are_the_square_where_asked():
    opts = dict(n_train=20, seed=1, n_val=6, n_test=10, spurious_rate=1.0)
    right = datasets.triangles(**opts)
    wrong = datasets.triangles(**opts, masks="wrong")
    both = datasets.triangles(**opts, masks="both", mask_fraction=0.5)
    assert not right.train.has_wrong_mask.any() and right.train.has_mask.all()
    assert not wrong.train.has_mask.any() and wrong.train.has_wrong_mask.all()
    for i in range(20):
        assert np.array_equal(wrong.train.wrong_mask[i, 0].numpy().astype(bool), _square(int(wrong.train.y[i])))
    assert torch.equal(both.train.has_mask, both.train.has_wrong_mask) and int(both.train.has_mask.sum()) == 10
    assert torch.equal(both.train.mask, right.train.mask) and torch.equal(both.train.x, right.train.x)
    # evaluation splits keep both kinds, whatever the training split carries
    assert wrong.val.has_mask.all() and wrong.val.has_wrong_mask.all()


def test_oracle_validation_is_drawn_like_test_and_disjoint_from_it():
    s = datasets.triangles(n_train=90, seed=0, n_val=50, n_test=60, train_per_class=(80, 10), spurious_rate=0.9,
                           n_val_oracle=40)
    oracle = s.extra["val_oracle"]
    assert oracle.class_counts() == [20, 20] and s.val.class_counts() == [44, 6]  # balanced like test, not train
    assert not oracle.has_wrong_mask.any() and s.val.has_wrong_mask.all()  # no square, like test ("absent")
    flat_test = {tuple(row) for row in s.test.x.flatten(1).numpy().round(6).tolist()}
    assert not any(tuple(row) in flat_test for row in oracle.x.flatten(1).numpy().round(6).tolist())
    indep = datasets.triangles(n_train=10, seed=0, n_val=4, n_test=10, spurious_rate=0.9,
                               spurious_test="independent", n_val_oracle=400)
    agree = (indep.extra["val_oracle"].wrong_mask[:, 0].flatten(1).argmax(1) >= 0).float().mean()
    assert agree == 1.0 and indep.extra["val_oracle"].has_wrong_mask.all()  # independent squares, like test


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
    ({"masks": "wrong"}, "needs the spurious square"),
    ({"spurious_train": "absent"}, "needs spurious_rate"),
    ({"spurious_rate": 0.9, "spurious_train": "absent", "masks": "both"}, "draws them without it"),
    ({"n_val_oracle": 1}, "n_val_oracle must be 0 or at least n_classes"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        datasets.triangles(n_train=10, seed=0, **options)


def test_load_by_name_matches_the_function():
    assert torch.equal(datasets.load("triangles", seed=2, n_train=10, n_val=4, n_test=4).train.x,
                       datasets.triangles(10, seed=2, n_val=4, n_test=4).train.x)
    with pytest.raises(ConfigError, match="did you mean 'triangles'"):
        datasets.load("triangle")
