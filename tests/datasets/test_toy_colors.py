import importlib
import time

import numpy as np
import pytest
import torch

from explearn import datasets
from explearn.errors import ConfigError

toy = importlib.import_module("explearn.datasets.toy_colors")  # the package exports the function by that name
#: the original's four colours (dtak/rrr: r, g, b, v), restated so that a change in the module is caught
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 128, 255], [128, 0, 255]]) / 255.0
CORNER_PIXELS = [(0, 0), (0, 4), (4, 0), (4, 4)]
TOP_MIDDLE_PIXELS = [(0, 1), (0, 2), (0, 3)]


@pytest.fixture(scope="module")
def data() -> datasets.Splits:
    return datasets.toy_colors(n_train=3000, seed=0, n_val=500, n_test=2000)


def _indices(x: torch.Tensor) -> np.ndarray:
    """Colour index of every pixel; fails unless each is exactly one of the four colours. (N,3,5,5) -> (N,5,5)."""
    pixels = x.numpy().transpose(0, 2, 3, 1)[..., None, :]  # (N, 5, 5, 1, 3)
    match = np.isclose(pixels, COLOURS, atol=1e-6).all(-1)  # (N, 5, 5, 4)
    assert (match.sum(-1) == 1).all()
    return match.argmax(-1)


def _rule1(c: np.ndarray) -> np.ndarray:
    corners = np.stack([c[:, r, k] for r, k in CORNER_PIXELS], 1)
    return (corners == corners[:, :1]).all(1)


def _rule2(c: np.ndarray) -> np.ndarray:
    top = np.stack([c[:, r, k] for r, k in TOP_MIDDLE_PIXELS], 1)
    return np.array([len(set(row)) == 3 for row in top])


def _mask_of(pixels) -> torch.Tensor:
    m = torch.zeros(5, 5)
    for r, k in pixels:
        m[r, k] = 1
    return m


def test_shapes_values_and_splits(data):
    assert set(data.eval_splits()) == {"train", "val", "test", "test_rule1", "test_rule2"}
    assert [len(d) for d in data.eval_splits().values()] == [3000, 500, 2000, 2000, 2000]
    assert data.input_shape == (3, 5, 5) and data.n_classes == 2
    assert data.info == {"dataset": "toy_colors", "data_seed": 0,
                         "options": {"n_train": 3000, "n_val": 500, "n_test": 2000, "rule": 1, "mask_fraction": 1.0}}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_class_0_satisfies_both_rules_and_class_1_neither(data, split):
    ds = data.eval_splits()[split]
    c, y = _indices(ds.x), ds.y.numpy()
    assert (_rule1(c) == (y == 0)).all() and (_rule2(c) == (y == 0)).all()
    assert abs(y.mean() - 0.5) < 0.05  # fair coin labels


@pytest.mark.parametrize("split, follows, against", [("test_rule1", _rule1, _rule2), ("test_rule2", _rule2, _rule1)])
def test_the_rules_disagree_in_the_rule_splits(data, split, follows, against):
    ds = data.extra[split]
    c, y = _indices(ds.x), ds.y.numpy()
    assert (follows(c) == (y == 0)).all()  # the label follows this rule
    assert (against(c) == (y == 1)).all()  # while the other rule holds as for the other class
    assert 0.4 < y.mean() < 0.6


def test_other_pixels_stay_uniform(data):
    c = _indices(data.train.x)
    free = np.ones((5, 5), dtype=bool)
    for r, k in CORNER_PIXELS + TOP_MIDDLE_PIXELS:
        free[r, k] = False
    share = np.bincount(c[:, free].ravel(), minlength=4) / c[:, free].size
    assert np.abs(share - 0.25).max() < 0.01
    # class 1 breaks rule 1 as the original does: one diagonal pair of corners differs (never only the sides)
    ones = c[data.train.y.numpy() == 1]
    assert ((ones[:, 0, 4] != ones[:, 4, 0]) | (ones[:, 0, 0] != ones[:, 4, 4])).all()
    # either diagonal is the redrawn one with probability 1/2; the other then agrees by chance (1/4): 1/8 each
    for a, b in (((0, 4), (4, 0)), ((0, 0), (4, 4))):
        assert 0.07 < (ones[:, a[0], a[1]] == ones[:, b[0], b[1]]).mean() < 0.18


@pytest.mark.parametrize("rule", [1, 2])
def test_masks_mark_the_chosen_rule_and_the_other_as_wrong(rule):
    s = datasets.toy_colors(n_train=20, seed=0, n_val=5, n_test=5, rule=rule)
    right, wrong = (CORNER_PIXELS, TOP_MIDDLE_PIXELS) if rule == 1 else (TOP_MIDDLE_PIXELS, CORNER_PIXELS)
    for ds in s.eval_splits().values():
        assert ds.mask.shape == (len(ds), 1, 5, 5) and ds.has_mask.all() and ds.has_wrong_mask.all()
        assert (ds.mask[:, 0] == _mask_of(right)).all() and (ds.wrong_mask[:, 0] == _mask_of(wrong)).all()


def test_mask_fraction_and_options():
    s = datasets.toy_colors(n_train=40, seed=0, n_val=5, n_test=5, mask_fraction=0.25)
    assert int(s.train.has_mask.sum()) == 10 and torch.equal(s.train.has_mask, s.train.has_wrong_mask)
    assert s.val.has_mask.all()
    with pytest.raises(ConfigError, match="'rule': 3 is not one of 1, 2"):
        datasets.toy_colors(rule=3)
    with pytest.raises(ConfigError, match="n_val must be at least 1"):
        datasets.toy_colors(n_val=0)
    assert datasets.load("toy_colors", seed=0, n_train=40, n_val=5, n_test=5, rule="2").info["options"]["rule"] == 2


def test_same_seed_same_tensors_and_nested_sizes():
    options = {"n_val": 100, "n_test": 100}
    a, b = (datasets.toy_colors(n_train=1500, seed=0, **options) for _ in range(2))
    for split, ds in a.eval_splits().items():
        assert torch.equal(ds.x, b.eval_splits()[split].x) and torch.equal(ds.y, b.eval_splits()[split].y)
    small = datasets.toy_colors(n_train=1100, seed=0, **options)  # ends inside the second block of 1024
    assert torch.equal(small.train.x, a.train.x[:1100]) and torch.equal(small.test.x, a.test.x)
    assert not torch.equal(datasets.toy_colors(n_train=1500, seed=1, **options).train.x, a.train.x)
    assert not torch.equal(a.train.x[:100], a.val.x)  # splits have their own random streams


def test_does_not_touch_the_global_random_state():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    datasets.toy_colors(n_train=100, seed=0, n_val=5, n_test=5)
    assert (np.random.get_state()[1] == before).all()


def test_twenty_thousand_images_are_fast():
    start = time.perf_counter()
    colours, y = toy.render_split(0, "train", 20000)
    assert time.perf_counter() - start < 2.0
    assert colours.shape == (20000, 5, 5) and y.shape == (20000,)
