import numpy as np
import pytest
import torch

from explearn import ExplanationDataset, Splits
from explearn.errors import DataError


def make(**overrides):
    args = dict(x=torch.rand(4, 1, 8, 8), y=torch.tensor([0, 1, 0, 1]), mask=torch.ones(4, 1, 8, 8), name="toy")
    args.update(overrides)
    return ExplanationDataset(**args)


def test_valid_dataset_normalises_fields():
    ds = make(mask=torch.ones(4, 1, 8, 8, dtype=torch.bool), y=np.array([0, 1, 2, 1], dtype=np.int32))
    assert ds.mask.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert ds.n_classes == 3 and ds.has_mask.all() and len(ds) == 4
    assert ds.class_counts() == [1, 2, 1]


def test_no_mask_means_no_sample_has_one():
    ds = make(mask=None)
    assert not ds.has_mask.any() and ds.mask.shape == (4, 1, 8, 8)


@pytest.mark.parametrize("overrides, message", [
    ({"x": torch.rand(4, 8, 8)}, r"toy: x must have shape \(N, C, H, W\), got \(4, 8, 8\)"),
    ({"x": torch.randint(0, 255, (4, 1, 8, 8))}, "x must be float32 or float64, got torch.int64 .*x / 255"),
    ({"x": torch.rand(4, 1, 8, 8).index_put_((torch.tensor([2]),), torch.tensor(float("nan")))},
     "x contains 64 NaN or infinite values \\(first at sample 2\\)"),
    ({"y": torch.tensor([0, 1, 0])}, r"y must have shape \(4,\) to match x, got \(3,\)"),
    ({"y": torch.tensor([0.0, 1.0, 0.0, 1.0])}, "y must hold integer class labels"),
    ({"y": torch.tensor([0, 1, -1, 1])}, r"label -1 at sample 2 is outside \[0, 2\)"),
    ({"y": torch.tensor([0, 1, 5, 1]), "n_classes": 2}, r"label 5 at sample 2 is outside \[0, 2\)"),
    ({"y": torch.zeros(4, dtype=torch.long)}, "need at least 2 classes"),
    ({"mask": torch.ones(4, 1, 8, 7)}, r"mask must have shape \(4, 1, 8, 8\) to match x, got \(4, 1, 8, 7\)"),
    ({"mask": torch.ones(4, 3, 8, 8)}, "mask must have shape"),
    ({"mask": torch.full((4, 1, 8, 8), 1.5)}, r"mask values must lie in \[0, 1\], found range \[1.5, 1.5\] \(first offending sample: 0\)"),
    ({"mask": torch.ones(4, 1, 8, 8).index_put_((torch.tensor([3]),), torch.tensor(float("nan")))}, "mask contains .* NaN"),
    ({"mask": torch.ones(4, 1, 8, 8, dtype=torch.long)}, "mask must be bool or float"),
    ({"has_mask": torch.ones(3, dtype=torch.bool)}, r"has_mask must have shape \(4,\)"),
    ({"has_mask": torch.ones(4)}, "has_mask must be bool"),
    ({"class_names": ("a",)}, "1 class names given for 2 classes"),
    ({"wrong_mask": torch.full((4, 1, 8, 8), -0.5)}, r"wrong_mask values must lie in \[0, 1\]"),
    ({"wrong_mask": torch.ones(4, 1, 7, 8)}, r"wrong_mask must have shape \(4, 1, 8, 8\)"),
    ({"wrong_mask": None, "has_wrong_mask": torch.ones(4, dtype=torch.bool)},
     "has_wrong_mask marks samples with masks but wrong_mask is None"),
    ({"wrong_mask": torch.ones(4, 1, 8, 8), "has_wrong_mask": torch.ones(2, dtype=torch.bool)},
     r"has_wrong_mask must have shape \(4,\)"),
    ({"x": torch.rand(0, 1, 8, 8), "y": torch.zeros(0, dtype=torch.long)}, "empty"),
])
def test_bad_input_says_what_is_wrong(overrides, message):
    with pytest.raises(DataError, match=message):
        make(**overrides)


def test_subset_keeps_masks_and_flags():
    ds = make(has_mask=torch.tensor([True, False, True, False]))
    sub = ds.subset([1, 2], name="toy/sub")
    assert sub.has_mask.tolist() == [False, True] and sub.name == "toy/sub" and sub.n_classes == 2


def test_splits_reject_mismatched_shapes():
    a, b = make(), make(x=torch.rand(4, 1, 6, 6), mask=None)
    with pytest.raises(DataError, match="split 'val' has images of shape"):
        Splits(a, b, a)


def test_wrong_reason_masks_are_optional_and_carried_along():
    ds = make()
    assert not ds.has_wrong_mask.any() and ds.wrong_mask.shape == (4, 1, 8, 8)
    wrong = torch.zeros(4, 1, 8, 8)
    wrong[:, :, :2, :2] = 1
    ds = make(mask=None, wrong_mask=wrong, has_wrong_mask=torch.tensor([True, True, False, True]))
    sub = ds.subset([2, 3])
    assert sub.has_wrong_mask.tolist() == [False, True] and torch.equal(sub.wrong_mask, wrong[2:])
    assert torch.equal(ds.to("cpu", channels_last=True).wrong_mask, wrong)
