"""The defining properties of model guidance with the Energy loss (Rao et al., ICCV 2023) and its L1 and PPCE
variants: the losses by hand, their gradients, and how the method uses masks."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from explearn import ConfigError, ExplanationDataset, Splits, datasets, train
from explearn.config import from_dict
from explearn.explain import upsample_map
from explearn.methods import METHODS, Batch
from explearn.methods.energy import EnergyHParams, energy_loss, input_x_gradient
from explearn.models import ExplainableNet, SmallCNNOptions, small_cnn

VARIANTS = ("energy", "l1", "ppce")
ATTRIBUTIONS = ("input_x_gradient", "gradcam")


def build(model, **hp):
    cls = METHODS.get("energy")
    return cls(model, cls.HParams(**hp), batches_per_epoch=1)


def fixed_batch(tiny, n=8, has=None):
    d = tiny.train
    return Batch(d.x[:n], d.y[:n], d.mask[:n], d.has_mask[:n] if has is None else has)


# --- the losses by hand -----------------------------------------------------------------------------------------


def two_maps():
    """The same 2x2 map twice, positive mass 3 + 1 = 4 (the -5 does not count), against two masks."""
    a = torch.tensor([[3.0, -5.0], [1.0, 0.0]], dtype=torch.float64).expand(2, 2, 2)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]], [[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    return a, mask


def test_energy_is_one_minus_the_share_of_positive_attribution_inside_the_mask():
    a, mask = two_maps()
    # sample 0: 3 of the 4 units of positive mass inside -> 1 - 3/4; sample 1: all of it inside -> 0
    assert energy_loss(a, mask, "energy").tolist() == pytest.approx([0.25, 0.0], abs=1e-6)


def test_l1_compares_the_map_scaled_to_its_maximum_with_the_mask():
    a, mask = two_maps()
    # A^ = [[1, 0], [1/3, 0]]; sample 0: |0| + |1| + |1/3| + |0| over 4; sample 1: |0| + |0| + |2/3| + |0| over 4
    assert energy_loss(a, mask, "l1").tolist() == pytest.approx([1 / 3, 1 / 6], abs=1e-6)


def test_ppce_is_the_mean_cross_entropy_on_the_mask_pixels():
    a, mask = two_maps()
    two_channels = torch.cat([mask, torch.zeros_like(mask)], 1)  # reduced by the channel maximum
    eps = 1e-6
    # sample 0: -(log 1 + log(0 + eps)) / 2; sample 1: -(log 1 + log 1/3) / 2
    expected = [-math.log(eps) / 2, math.log(3) / 2]
    assert energy_loss(a, two_channels, "ppce", eps).tolist() == pytest.approx(expected, rel=1e-5)


def test_a_coarse_map_is_upsampled_to_the_mask_after_clamping_and_scaling():
    torch.manual_seed(0)
    coarse = torch.randn(3, 2, 2, dtype=torch.float64) + 0.5
    mask = (torch.rand(3, 1, 4, 4) > 0.5).double()
    up = upsample_map(coarse.clamp(min=0), (4, 4))
    energy = 1 - (mask[:, 0] * up).sum((1, 2)) / up.sum((1, 2))
    assert torch.allclose(energy_loss(coarse, mask, "energy"), energy, atol=1e-6)
    scaled = coarse.clamp(min=0) / coarse.clamp(min=0).amax((1, 2), keepdim=True)
    l1 = (mask[:, 0] - upsample_map(scaled, (4, 4))).abs().mean((1, 2))
    assert torch.allclose(energy_loss(coarse, mask, "l1"), l1, atol=1e-6)


def test_empty_masks_and_all_zero_maps_stay_finite():
    a = torch.rand(2, 3, 3)
    empty = torch.zeros(2, 1, 3, 3)
    assert energy_loss(a, empty, "energy").tolist() == pytest.approx([1.0, 1.0])
    assert energy_loss(a, empty, "ppce").tolist() == [0.0, 0.0]
    for variant in VARIANTS:
        assert torch.isfinite(energy_loss(torch.zeros(2, 3, 3), torch.ones(2, 1, 3, 3), variant)).all()
    with pytest.raises(ValueError, match="unknown localisation loss 'dice'"):
        energy_loss(a, empty, "dice")


# --- gradients --------------------------------------------------------------------------------------------------


def smooth_net() -> ExplainableNet:
    """A float64 CNN with smooth activations (so that finite differences see no ReLU kink)."""
    return ExplainableNet(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Softplus()), nn.Conv2d(3, 3, 1),
                          nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 3))).double()


class GuidanceTerm(nn.Module):
    """The method's term as a module, so that ``functional_call`` can feed it the weights under test."""

    def __init__(self, method, variant):
        super().__init__()
        self.net, self.method, self.variant = method.model, method, variant

    def forward(self, batch):
        _, attribution = self.method.attribution_forward(batch, True)
        return energy_loss(attribution, batch.mask, self.variant)


def guidance_setup(attribution):
    """A smooth float64 model and a batch on which every sample has positive attribution inside and outside its
    mask, away from the points where it is all zero (and the Energy term has no gradient)."""
    gen = torch.Generator().manual_seed(3)
    for seed in range(50):
        torch.manual_seed(seed)
        method = build(smooth_net(), attribution=attribution)
        x = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64)
        mask = (torch.rand(3, 1, 4, 4, generator=gen) > 0.5).double()
        batch = Batch(x, torch.tensor([0, 1, 2]), mask, torch.ones(3, dtype=torch.bool))
        _, attr = method.attribution_forward(batch, True)
        positive = upsample_map(attr.clamp(min=0), (4, 4)) if attr.shape[-1] != 4 else attr.clamp(min=0)
        inside = (positive * mask[:, 0]).sum((1, 2))
        outside = (positive * (1 - mask[:, 0])).sum((1, 2))
        share = inside / (inside + outside)
        if bool(((inside + outside) > 1e-3).all() and (share > 0.1).all() and (share < 0.9).all()):
            return method, batch
    raise AssertionError("no seed with positive attribution inside and outside every mask")


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_guidance_term_passes_gradcheck_in_the_weights(attribution, variant):
    method, batch = guidance_setup(attribution)
    term = GuidanceTerm(method, variant)
    names = ("net.features.0.weight", "net.mapping.weight", "net.classifier.1.weight")
    weights = tuple(dict(term.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)

    def loss(*w):
        return functional_call(term, dict(zip(names, w)), (batch,))

    assert torch.autograd.gradcheck(loss, weights)
    grads = torch.autograd.grad(loss(*weights).sum(), weights)
    assert all(g.abs().sum() > 0 for g in grads)  # the term trains f, m and c (double backprop)


def test_input_x_gradient_is_the_channel_sum_of_input_times_the_logit_gradient():
    torch.manual_seed(0)
    net = smooth_net()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2, 0])
    out = net(x)
    expected = []
    for i in range(2):
        (g,) = torch.autograd.grad(out[i, y[i]], x, retain_graph=True)
        expected.append((x[i] * g[i]).sum(0))
    got = input_x_gradient(out, x, y)
    assert torch.allclose(got, torch.stack(expected)) and not got.requires_grad


# --- the method -------------------------------------------------------------------------------------------------


def test_the_logged_term_is_the_loss_on_the_true_class_input_x_gradient(tiny):
    torch.manual_seed(0)
    net = small_cnn(tiny.input_shape, 2)
    has = torch.tensor([True, False] * 4)
    batch = fixed_batch(tiny, has=has)
    x = batch.x.clone().requires_grad_(True)
    out = net(x)
    attribution = input_x_gradient(out, x, batch.y)
    ce = nn.functional.cross_entropy(out, batch.y)
    expected = energy_loss(attribution[has], batch.mask[has]).mean()
    logs = build(net, lam=3.0).update(batch)
    assert logs["ce"] == pytest.approx(ce.item(), rel=1e-6)
    assert logs["guidance_loss"] == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
def test_samples_without_a_mask_contribute_no_term(attribution, tiny):
    flags = torch.tensor([True] * 4 + [False] * 4)
    clean = fixed_batch(tiny, has=flags)
    garbage = clean.mask.clone()
    garbage[4:] = float("nan")  # the masks of the samples without one are never read
    noisy = Batch(clean.x, clean.y, garbage, flags)
    torch.manual_seed(0)
    a = build(small_cnn(tiny.input_shape, 2), lam=100.0, attribution=attribution)
    b = copy.deepcopy(a)
    logs = a.update(clean)
    assert logs["guidance_loss"] == b.update(noisy)["guidance_loss"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    # no mask in the batch: a plain cross-entropy step, and no term logged
    torch.manual_seed(0)
    m = build(small_cnn(tiny.input_shape, 2), lam=100.0, attribution=attribution)
    torch.manual_seed(0)
    std = METHODS.get("standard")(small_cnn(tiny.input_shape, 2), METHODS.get("standard").HParams(), 1)
    none = fixed_batch(tiny, has=torch.zeros(8, dtype=torch.bool))
    assert "guidance_loss" not in m.update(none)
    std.update(none)
    for k, v in std.model.state_dict().items():
        assert torch.equal(v, m.model.state_dict()[k])


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
def test_a_few_steps_with_a_large_lam_lower_the_energy(attribution, tiny):
    batch = fixed_batch(tiny)
    torch.manual_seed(0)
    net = small_cnn(tiny.input_shape, 2, SmallCNNOptions(feature_blocks=1))  # Grad-CAM on an 8x8 map
    method = build(net, lam=100.0, attribution=attribution)

    def energy():
        _, attr = method.attribution_forward(batch, True)
        return float(energy_loss(attr, batch.mask).mean().detach())

    before = energy()
    for _ in range(5):
        method.update(batch)
    assert energy() < before - 0.1


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="method 'energy': lam must be >= 0"):
        EnergyHParams(lam=-1.0)
    with pytest.raises(ConfigError, match="attribution must be one of input_x_gradient, gradcam, got 'saliency'"):
        EnergyHParams(attribution="saliency")
    with pytest.raises(ConfigError, match="variant must be one of energy, l1, ppce, got 'dice'"):
        EnergyHParams(variant="dice")
    with pytest.raises(ConfigError, match="'variant'"):
        from_dict(EnergyHParams, {"variant": "L1"}, "method 'energy'")
    assert from_dict(EnergyHParams, {"variant": "ppce", "attribution": "gradcam"}, "method 'energy'").lam == 0.1


def test_gradcam_needs_a_feature_map_but_input_x_gradient_trains_an_mlp():
    data = datasets.triangles(n_train=8, seed=0, n_val=4, n_test=4, image_size=16)
    result = train(data, "energy", model="mlp", epochs=1, quiet=True)
    assert any(r["split"] == "train" and r["metric"] == "guidance_loss" for r in result.history)
    with pytest.raises(ConfigError, match=r"method 'energy' with attribution='gradcam' needs a spatial feature map"
                                          r".*\(50,\).*attribution='input_x_gradient'"):
        train(data, "energy", model="mlp", hparams={"attribution": "gradcam"}, epochs=1, quiet=True)


def test_no_masks_at_all_is_a_clear_error(tiny):
    nomask = Splits(ExplanationDataset(tiny.train.x, tiny.train.y, None), tiny.val, tiny.test)
    with pytest.raises(ConfigError, match="method 'energy' needs explanation masks"):
        train(nomask, "energy", epochs=1, quiet=True)
