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


def test_shortcut_reliance_and_worst_group_accuracy_by_hand():
    from explearn.metrics import metric_bounds, shortcut_metrics

    metrics = {"a/acc": 0.9, "a/acc_class0": 1.0, "a/acc_class1": 0.8,
               "s/acc": 0.35, "s/acc_class0": 0.6, "s/acc_class1": 0.1}
    out = shortcut_metrics(metrics, "a", "s", 2)
    assert out["shortcut/reliance"] == pytest.approx(0.55)  # 0.9 - 0.35
    assert out["shortcut/worst_group_acc"] == pytest.approx(0.1)  # class 1 with the shortcut pointing elsewhere
    metrics["s/acc_class1"] = float("nan")  # a class absent from a split is no group
    assert shortcut_metrics(metrics, "a", "s", 2)["shortcut/worst_group_acc"] == pytest.approx(0.6)
    assert metric_bounds("shortcut/reliance") == (-1.0, 1.0)
    assert metric_bounds("shortcut/worst_group_acc") == (0.0, 1.0)


def test_training_reports_reliance_on_the_triangle_shortcut(one_torch_thread):
    from explearn import datasets, train

    data = datasets.triangles(n_train=40, seed=0, n_val=8, n_test=40, spurious_rate=1.0, image_size=16)
    m = train(data, "standard", 0, epochs=1, quiet=True).metrics
    assert m["shortcut/reliance"] == pytest.approx(m["test_aligned/acc"] - m["test_swapped/acc"])
    assert m["shortcut/worst_group_acc"] == pytest.approx(min(
        m[f"{split}/acc_class{k}"] for split in ("test_aligned", "test_swapped") for k in (0, 1)))
    assert "test_swapped/wrong_score" in m and "test/wrong_score" not in m  # only where a square is drawn


def test_confidence_by_hand():
    from explearn.metrics import confidence

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    y = torch.tensor([0, 2, 0])
    out = confidence(logits, y)
    z = [math.log(math.exp(2) + 2), math.log(3), math.log(math.e + math.exp(3) + 1)]
    assert out["ce"] == pytest.approx(((z[0] - 2) + z[1] + (z[2] - 1)) / 3, rel=1e-6)
    assert out["max_prob"] == pytest.approx((math.exp(2) / (math.exp(2) + 2) + 1 / 3
                                             + math.exp(3) / (math.e + math.exp(3) + 1)) / 3, rel=1e-6)
    assert out["margin"] == pytest.approx((2.0 + 0.0 + (1.0 - 3.0)) / 3)  # true logit minus the best other
