"""Saliency guided training: the masking, the KL term, the settings and one training step."""

import copy
import math

import pytest
import torch
from torch import nn

from explearn.errors import ConfigError
from explearn.methods import METHODS, Batch
from explearn.methods.saliency_guided import (SaliencyGuidedHParams, masked_count, saliency_kl, saliency_map,
                                              saliency_mask_input)
from explearn.models import ExplainableNet, make_mapping, small_cnn


def build(tiny, **hp):
    torch.manual_seed(0)
    cls = METHODS.get("saliency_guided")
    return cls(small_cnn(tiny.input_shape, tiny.n_classes), cls.HParams(**hp), batches_per_epoch=3)


def unmasked_batch(tiny, n=8):
    ds = tiny.train
    return Batch(ds.x[:n], ds.y[:n], torch.zeros_like(ds.mask[:n]), torch.zeros(n, dtype=torch.bool))


def test_exactly_the_least_salient_pixels_are_replaced_within_the_range():
    x = torch.rand(2, 1, 4, 4) * 3.0 - 1.0  # values in [-1, 2)
    saliency = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    saliency[1] = saliency[1].flip(-1)  # the second image ranks its rows right to left
    out = saliency_mask_input(x, saliency, 0.25)  # k = 4 of 16 pixels
    changed = out != x
    expect = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    expect[0, 0, 0, :] = True  # saliency 0..3: the first row
    expect[1, 0, 0, :] = True  # flipped: still the first row, the values 3..0
    assert torch.equal(changed, expect)
    for i in range(2):
        low, high = x[i].min(), x[i].max()
        assert bool(((out[i][changed[i]] >= low) & (out[i][changed[i]] < high)).all())


def test_signed_saliency_ranks_negative_gradients_lowest():
    x = torch.rand(1, 1, 2, 2)
    saliency = torch.tensor([[[[0.0, -5.0], [1.0, 0.5]]]])
    out = saliency_mask_input(x, saliency, 0.25)  # k = 1: the pixel with -5
    assert (out != x).view(-1).tolist() == [False, True, False, False]
    out = saliency_mask_input(x, saliency.abs(), 0.25)  # by magnitude: the pixel with 0
    assert (out != x).view(-1).tolist() == [True, False, False, False]


def test_a_chosen_pixel_is_replaced_in_every_channel_within_that_channels_range():
    torch.manual_seed(0)
    x = torch.stack([torch.rand(3, 3), 10 + torch.rand(3, 3), -10 + torch.rand(3, 3)]).unsqueeze(0)  # (1, 3, 3, 3)
    saliency = torch.ones(1, 3, 3, 3)
    saliency[0, 0, 1, 1] = -30.0  # the channel mean decides: pixel (1, 1), though only channel 0 is low
    out = saliency_mask_input(x, saliency, 0.2)  # k = max(1, int(1.8)) = 1
    changed = out != x
    assert changed[0, :, 1, 1].all() and int(changed.sum()) == 3
    for c in range(3):
        assert x[0, c].min() <= out[0, c, 1, 1] < x[0, c].max()


def test_same_seed_same_masked_input():
    x, saliency = torch.rand(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    torch.manual_seed(3)
    a = saliency_mask_input(x, saliency, 0.5)
    torch.manual_seed(3)
    b = saliency_mask_input(x, saliency, 0.5)
    c = saliency_mask_input(x, saliency, 0.5)
    assert torch.equal(a, b) and not torch.equal(b, c)  # the global generator advanced
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(saliency_mask_input(x, saliency, 0.5, g1), saliency_mask_input(x, saliency, 0.5, g2))


def test_masked_count_and_bad_arguments():
    assert masked_count(0.5, 256) == 128 and masked_count(0.001, 16) == 1
    with pytest.raises(ValueError, match="fraction"):
        saliency_mask_input(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        saliency_mask_input(torch.rand(2, 1, 4, 4), torch.rand(1, 1, 4, 4), 0.5)


def test_kl_is_zero_for_equal_logits_and_matches_a_hand_computation():
    logits = torch.randn(5, 3)
    assert torch.allclose(saliency_kl(logits, logits.clone()), torch.zeros(5), atol=1e-7)
    assert torch.allclose(saliency_kl(logits, logits + 4.0), torch.zeros(5), atol=1e-6)  # softmax ignores shifts
    p_logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # p = (1/4, 3/4)
    q_logits = torch.zeros(1, 2, dtype=torch.float64)  # q = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert saliency_kl(p_logits, q_logits).item() == pytest.approx(expected, rel=1e-12)
    assert saliency_kl(q_logits, p_logits).item() != pytest.approx(expected, rel=1e-3)  # the direction matters


def test_kl_passes_gradcheck():
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(saliency_kl, (a, b))


def test_saliency_is_the_label_log_probability_gradient_in_eval_mode():
    torch.manual_seed(0)
    net = ExplainableNet(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.5), nn.Tanh()),
                         make_mapping("conv1x1", (4, 6, 6)), nn.Sequential(nn.Flatten(), nn.Linear(4 * 36, 3)))
    x, y = torch.rand(2, 3, 6, 6, requires_grad=True), torch.tensor([0, 2])
    net.eval()  # no dropout: the saliency is taken in eval mode
    log_p = torch.log_softmax(net(x), 1)
    (grad,) = torch.autograd.grad(log_p[[0, 1], y].sum(), x)
    net.train()
    s = saliency_map(net, x, y)
    assert s.shape == (2, 1, 6, 6) and not s.requires_grad and net.training  # the mode is restored
    assert torch.allclose(s, grad.mean(1, keepdim=True), atol=1e-6)
    assert torch.allclose(saliency_map(net, x, y, absolute=True), s.abs())


@pytest.mark.parametrize("values", [{"mask_fraction": 0.0}, {"mask_fraction": 1.0}, {"mask_fraction": -0.1},
                                    {"mask_fraction": 1.5}, {"lam": -1.0}, {"lr": 0.0}])
def test_settings_out_of_range_raise(values):
    with pytest.raises(ConfigError):
        SaliencyGuidedHParams(**values)


def test_trains_without_any_mask_and_logs_the_papers_loss(tiny):
    method = build(tiny, lam=2.0)
    assert not method.uses_masks
    batch = unmasked_batch(tiny)
    before = copy.deepcopy(method.model)
    torch.manual_seed(5)
    logs = method.update(batch)
    assert all(math.isfinite(v) for v in logs.values()) and logs["saliency_kl"] > 0 and logs["grad_norm"] > 0
    assert any(not torch.equal(p, q) for p, q in zip(before.parameters(), method.model.parameters()))
    # the logged terms are those of the model before the step, on the same random values
    torch.manual_seed(5)
    masked = saliency_mask_input(batch.x, saliency_map(before, batch.x, batch.y), 0.5)
    with torch.no_grad():
        out, masked_out = before(batch.x), before(masked)
    assert logs["ce"] == pytest.approx(torch.nn.functional.cross_entropy(out, batch.y).item(), rel=1e-6)
    assert logs["saliency_kl"] == pytest.approx(saliency_kl(out, masked_out).mean().item(), rel=1e-5)


def test_lam_zero_is_label_only_training(tiny):
    zero = build(tiny, lam=0.0)
    std = METHODS.get("standard")(copy.deepcopy(build(tiny).model), METHODS.get("standard").HParams(), 3)
    zero.update(unmasked_batch(tiny))
    std.update(unmasked_batch(tiny))
    for (name, p), q in zip(zero.model.named_parameters(), std.model.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name


def test_batchnorm_statistics_advance_once_on_the_clean_batch():
    # as tests/field/test_one_forward.py asks of every method: the masked forward leaves the running statistics
    torch.manual_seed(0)
    f = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    c = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    net = ExplainableNet(f, make_mapping("conv1x1", (4, 8, 8)), c)
    reference = copy.deepcopy(net)
    x = torch.randn(8, 1, 8, 8)
    batch = Batch(x, torch.randint(0, 2, (8,)), torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.bool))
    cls = METHODS.get("saliency_guided")
    method = cls(net, cls.HParams(), 1)
    method.model.train()
    logs = method.update(batch)
    with torch.no_grad():
        expect = 0.1 * reference.features[0](x).mean(dim=(0, 2, 3))
    bn = method.model.features[1]
    assert int(bn.num_batches_tracked) == 1 and math.isfinite(logs["saliency_kl"])
    assert torch.allclose(bn.running_mean, expect, atol=1e-6)
