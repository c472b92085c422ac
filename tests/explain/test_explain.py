import torch
from torch import nn

from explearn.datasets import ExplanationDataset
from explearn.explain import explanation_alignment, input_gradients, mask_mass_share
from explearn.models import ExplainableNet


def linear_model(weights: torch.Tensor) -> ExplainableNet:
    """logit_1 = <w, x>, logit_0 = 0: the input gradient of log p is proportional to w."""
    lin = nn.Linear(weights.numel(), 2, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = weights.flatten()
    return ExplainableNet(nn.Flatten(), nn.Identity(), lin)


def test_input_gradient_of_a_linear_model():
    w = torch.zeros(1, 2, 2)
    w[0, 0, 0] = 2.0
    net = linear_model(w)
    x = torch.zeros(1, 1, 2, 2)
    g = input_gradients(net, x, target="label", y=torch.tensor([1]))
    assert torch.allclose(g, w.unsqueeze(0) * 0.5)  # d log p1 / dx = (1 - p1) w, p1 = 0.5 at x = 0
    assert not g.requires_grad
    assert input_gradients(net, x, create_graph=True).requires_grad


def test_mask_mass_share():
    attribution = torch.tensor([[[[1.0, -3.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    assert torch.allclose(mask_mass_share(attribution, mask), torch.tensor([0.75]))
    assert torch.isnan(mask_mass_share(torch.zeros_like(attribution), mask)).all()


def test_alignment_is_one_when_model_looks_only_inside_mask():
    w = torch.zeros(1, 2, 2)
    w[0, 1, 1] = 1.0
    net = linear_model(w)
    mask = torch.zeros(3, 1, 2, 2)
    mask[:, 0, 1, 1] = 1
    ds = ExplanationDataset(torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), mask)
    assert explanation_alignment(net, ds) == 1.0
    outside = ExplanationDataset(ds.x, ds.y, 1 - mask)
    assert explanation_alignment(net, outside) == 0.0
    nomask = ExplanationDataset(ds.x, ds.y, None)
    assert torch.isnan(torch.tensor(explanation_alignment(net, nomask)))
