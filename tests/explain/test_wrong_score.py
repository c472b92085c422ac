import math

import torch
from torch import nn

from explearn import Splits, train
from explearn.datasets import ExplanationDataset
from explearn.explain import normalized_attribution, wrong_reason_score, wrong_score_from
from explearn.models import ExplainableNet


def linear_model(weights: torch.Tensor) -> ExplainableNet:
    """logit_1 = <w, x>, logit_0 = 0: |d log p_predicted / dx| is proportional to |w| for every input."""
    lin = nn.Linear(weights.numel(), 2, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = weights.flatten()
    return ExplainableNet(nn.Flatten(), nn.Identity(), lin)


def corner_data(n: int = 3) -> ExplanationDataset:
    wrong = torch.zeros(n, 1, 4, 4)
    wrong[:, 0, 0, :2] = 1  # the confounder: two pixels of the top row
    return ExplanationDataset(torch.rand(n, 1, 4, 4), torch.arange(n) % 2, None, None, 2, None, "corner",
                              wrong, torch.ones(n, dtype=torch.bool))


def test_score_is_zero_when_attribution_lies_outside_the_confounder():
    w = torch.zeros(1, 4, 4)
    w[0, 2:, 2:] = 1.0
    assert wrong_reason_score(linear_model(w), corner_data()) == 0.0


def test_score_is_one_when_attribution_lies_on_the_confounder():
    w = torch.zeros(1, 4, 4)
    w[0, 0, :2] = torch.tensor([1.0, -0.5])  # both confounder pixels above the mean (1.5 / 2 / 16 after scaling)
    assert wrong_reason_score(linear_model(w), corner_data()) == 1.0


def test_score_counts_confounder_pixels_above_the_dataset_mean():
    w = torch.full((1, 4, 4), 0.1)
    w[0, 0, 0] = 1.0  # above the mean (about 0.16)
    w[0, 0, 1] = 0.05  # below it
    net = linear_model(w)
    a = normalized_attribution(net, corner_data().x)
    assert torch.allclose(a, (w.abs() / 1.0).expand(3, 4, 4))  # |grad| / max, per image
    assert wrong_reason_score(net, corner_data()) == 0.5


def test_score_by_hand_with_soft_and_multi_channel_masks():
    a = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.2, 0.2], [0.2, 1.0]]])  # mean 0.325
    wrong = torch.zeros(2, 2, 2, 2)
    wrong[0, 1, 0, 0] = 0.5  # soft, in channel 1 only: max over channels keeps it; above the mean
    wrong[1, 0, 0, :] = 1.0  # two pixels at 0.2: below the mean
    assert math.isclose(wrong_score_from(a, wrong), 0.5 / 2.5, rel_tol=1e-6)
    assert math.isnan(wrong_score_from(a, torch.zeros_like(wrong)))


def test_train_reports_wrong_score_only_for_splits_with_wrong_reason_masks(tiny):
    plain = train(tiny, "standard", epochs=1, quiet=True)
    assert not any(k.endswith("/wrong_score") for k in plain.metrics)
    test = tiny.test
    wrong = torch.zeros_like(test.mask)
    wrong[:, :, :3, :3] = 1  # a corner as the confounder
    with_wrong = ExplanationDataset(test.x, test.y, test.mask, test.has_mask, test.n_classes, None, "test",
                                    wrong, torch.ones(len(test), dtype=torch.bool))
    result = train(Splits(tiny.train, tiny.val, with_wrong), "standard", epochs=1, quiet=True)
    assert 0.0 <= result.metrics["test/wrong_score"] <= 1.0
    assert "val/wrong_score" not in result.metrics and "train/wrong_score" not in result.metrics
    assert math.isnan(wrong_reason_score(result.model, tiny.val))
