import math

import pytest
import torch

from explearn.metrics import (accuracy, balanced_accuracy, epochs_to_fraction, minority_class, pairwise_agreement,
                              per_class_accuracy, stability)


def test_accuracies_by_hand():
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    pred = torch.tensor([0, 0, 0, 1, 1, 0])
    assert accuracy(pred, y) == pytest.approx(4 / 6)
    assert per_class_accuracy(pred, y, 3)[:2] == pytest.approx([0.75, 0.5]) and math.isnan(per_class_accuracy(pred, y, 3)[2])
    assert balanced_accuracy(pred, y, 3) == pytest.approx(0.625)  # absent class 2 is left out
    assert minority_class([450, 50]) == 1 and minority_class([5, 5]) is None  # balanced: no minority class


def test_pairwise_agreement_by_hand():
    a, b, c = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]), torch.tensor([1, 0, 0, 1])
    # pairs: (a,b) 3/4, (a,c) 0/4, (b,c) 1/4
    assert pairwise_agreement([a, b, c]) == pytest.approx((0.75 + 0 + 0.25) / 3)
    assert pairwise_agreement([a, a]) == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_agreement([a])
    with pytest.raises(ValueError, match="same points"):
        pairwise_agreement([a, a[:3]])


def test_stability_and_convergence():
    assert stability([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(stability([1.0]))
    assert epochs_to_fraction([0.5, 0.6, 0.9, 0.95, 1.0], 0.95) == 3
    assert epochs_to_fraction([0.5, 0.6, 0.9, 0.95, 1.0], 0.9) == 2
    assert epochs_to_fraction([]) is None
