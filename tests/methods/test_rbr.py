"""The defining properties of RBR (Shao et al., AAAI 2021, as the XIL typology code implements it): the penalty's
gradient, its value by hand on a logistic model, how the method uses masks, and its settings."""

import copy

import pytest
import torch
from torch import nn

from explearn import ConfigError
from explearn.config import from_dict
from explearn.methods import METHODS, Batch
from explearn.methods.base import wrong_reasons
from explearn.methods.rbr import RBRHParams, influence_input_gradient, rbr_penalty
from explearn.models import ExplainableNet, small_cnn


def build(model, **hp):
    cls = METHODS.get("rbr")
    return cls(model, cls.HParams(**hp), batches_per_epoch=1)


def fixed_batch(tiny, n=8, has=None):
    d = tiny.train
    i = torch.arange(n) * (len(d) // n)  # both classes (the split is sorted by class)
    return Batch(d.x[i], d.y[i], d.mask[i], d.has_mask[i] if has is None else has)


def smooth_net() -> ExplainableNet:
    """A tiny float64 CNN on 4x4 images with smooth activations (finite differences see no ReLU kink), its
    weights tripled: at PyTorch's initial scale the penalty is about 1e-6, too small for gradcheck's tolerance
    (atol 1e-5) to test anything; tripled it is about 0.3 with input gradients up to about 0.3."""
    torch.manual_seed(0)
    net = ExplainableNet(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Softplus()), nn.Conv2d(2, 2, 1),
                         nn.Sequential(nn.Flatten(), nn.Tanh(), nn.Linear(2 * 16, 3))).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net


def test_penalty_passes_gradcheck_in_the_input_and_reaches_the_weights():
    net = smooth_net()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])
    wrong = (torch.rand(2, 1, 4, 4, generator=gen) > 0.5).double()
    penalty = rbr_penalty(net, x, y, wrong)
    (dx,) = torch.autograd.grad(penalty.sum(), x, retain_graph=True)
    # not vacuous: the penalty depends on x through the graph, and its gradient is far above gradcheck's atol
    assert bool((penalty > 0.1).all()) and dx.abs().max() > 0.1
    assert torch.autograd.gradcheck(lambda inp: rbr_penalty(net, inp, y, wrong), (x,))
    grads = torch.autograd.grad(penalty.sum(), list(net.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)  # every layer's weights get a gradient (triple backprop)


class ZeroLogit(nn.Module):
    """Logits (0, z): a binary logistic model p(y=1) = sigmoid(z) written as a two-class softmax."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(z), z], 1)


def logistic_setup():
    torch.manual_seed(0)
    net = ExplainableNet(nn.Sequential(nn.Flatten(), nn.Linear(4, 1)), nn.Identity(), ZeroLogit()).double()
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    wrong = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64).expand(3, 1, 2, 2)
    return net, x, y, wrong


def logistic_by_hand(net, x, y, wrong):
    """Per sample: the parameter gradient of CE is (p - y) x for w and (p - y) for b, so s = (p - y)(sum(x) + 1)
    and d s/dx_d = p (1 - p) w_d (sum(x) + 1) + (p - y); the input gradient of log(1 - p) + log p is (1 - 2p) w."""
    lin = net.features[1]
    w, b = lin.weight.detach()[0], lin.bias.detach()[0]
    flat = x.flatten(1)  # (B, 4)
    p = torch.sigmoid(flat @ w + b)[:, None]  # (B, 1)
    yf = y.double()[:, None]
    influence = p * (1 - p) * w * (flat.sum(1, keepdim=True) + 1) + (p - yf)
    grad = (1 - 2 * p) * w
    return influence.view_as(x), ((wrong.flatten(1) * influence * grad) ** 2).sum(1)


def test_influence_and_penalty_of_a_logistic_model_by_hand():
    net, x, y, wrong = logistic_setup()
    influence, expected = logistic_by_hand(net, x, y, wrong)
    xg = x.clone().requires_grad_(True)
    got = influence_input_gradient(net(xg), xg, y, list(net.parameters()))
    assert torch.allclose(got, influence, atol=1e-12)
    assert torch.allclose(rbr_penalty(net, x, y, wrong), expected, atol=1e-14, rtol=1e-10)
    assert bool((expected > 0).all())


def test_the_logged_term_is_the_mean_over_the_batch_of_the_masked_samples_penalties():
    net, x, y, wrong = logistic_setup()
    has = torch.tensor([True, False, True])
    _, expected = logistic_by_hand(net, x, y, wrong)
    with torch.no_grad():
        ce = nn.functional.cross_entropy(net(x), y)
    logs = build(net, lam=5.0).update(Batch(x, y, 1 - wrong, has))  # wrong reasons: the complement
    assert logs["rbr_penalty"] == pytest.approx(float(expected[has].sum() / 3), rel=1e-10)
    assert logs["ce"] == pytest.approx(float(ce), rel=1e-12)  # both from the model before the step


def test_a_softmax_linear_model_has_no_influence_term():
    # the gradient of a final linear layer sums to zero under softmax cross-entropy: sum_k (p_k - y_k) = 0
    torch.manual_seed(0)
    net = ExplainableNet(nn.Flatten(), nn.Identity(), nn.Linear(4, 3)).double()
    x = torch.rand(5, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    influence = influence_input_gradient(net(x), x, torch.tensor([0, 1, 2, 0, 1]), list(net.parameters()))
    assert influence.abs().max() < 1e-12


def test_samples_without_a_mask_contribute_no_term(tiny):
    flags = torch.tensor([True, False] * 4)
    clean = fixed_batch(tiny, has=flags)
    garbage = clean.mask.clone()
    garbage[~flags] = float("nan")  # the masks of the samples without one are never read
    noisy = Batch(clean.x, clean.y, garbage, flags)
    torch.manual_seed(0)
    a = build(small_cnn(tiny.input_shape, 2), lam=1e6)
    b = copy.deepcopy(a)
    logs = a.update(clean)
    assert logs["rbr_penalty"] > 0 and logs == b.update(noisy)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    # no mask in the batch: a plain cross-entropy step, and no term logged
    torch.manual_seed(0)
    m = build(small_cnn(tiny.input_shape, 2), lam=1e6)
    torch.manual_seed(0)
    std = METHODS.get("standard")(small_cnn(tiny.input_shape, 2), METHODS.get("standard").HParams(), 1)
    none = fixed_batch(tiny, has=torch.zeros(8, dtype=torch.bool))
    assert "rbr_penalty" not in m.update(none)
    std.update(none)
    for k, v in std.model.state_dict().items():
        assert torch.equal(v, m.model.state_dict()[k])


def test_a_few_steps_with_a_large_lam_lower_the_term(tiny):
    batch = fixed_batch(tiny)
    wrong, has = wrong_reasons(batch)
    torch.manual_seed(0)
    method = build(small_cnn(tiny.input_shape, 2), lam=1e8)

    def term():
        return float(rbr_penalty(method.model, batch.x, batch.y, wrong)[has].mean().detach())

    before = term()
    for _ in range(5):
        method.update(batch)
    after = term()
    torch.manual_seed(0)
    method = build(small_cnn(tiny.input_shape, 2), lam=0.0)  # label-only steps from the same start raise it
    for _ in range(5):
        method.update(batch)
    assert after < 0.1 * before and after < 0.1 * term()


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="method 'rbr': lam must be >= 0, got -1"):
        from_dict(RBRHParams, {"lam": -1.0}, "hparams")
    assert from_dict(RBRHParams, {"lam": "0"}, "hparams").lam == 0.0
    assert METHODS.get("rbr").uses_masks
