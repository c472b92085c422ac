"""The defining properties of RRR-G, HINT and counterexamples, and their use of the two mask kinds."""

import copy

import pytest
import torch
from torch import nn

from explearn import ConfigError, ExplanationDataset, Splits, datasets, train
from explearn.explain import grad_cam
from explearn.methods import METHODS, Batch, gradcam_penalty, hint_loss
from explearn.models import ExplainableNet, SmallCNNOptions, small_cnn

NEW = ("rrr_gradcam", "hint", "counterexamples")


def build(name, model, **hp):
    cls = METHODS.get(name)
    return cls(model, cls.HParams(**hp), batches_per_epoch=1)


def pooled_linear(channels: int = 1, k: int = 3) -> ExplainableNet:
    """4x4 input -> A = 2x2 average pool (a 2x2 map) -> linear classifier: Grad-CAM by hand is easy."""
    torch.manual_seed(0)
    return ExplainableNet(nn.AvgPool2d(2), nn.Identity(),
                          nn.Sequential(nn.Flatten(), nn.Linear(channels * 4, k))).double()


def hand_cam(net: ExplainableNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """relu(sum_c mean(W_y[c]) A_c) / (max + 1e-8), per sample. Shape: (B, 2, 2)."""
    a = nn.functional.avg_pool2d(x, 2)
    weight = net.classifier[1].weight.detach()
    cams = []
    for i in range(len(x)):
        alpha = weight[y[i]].view(a.shape[1], 4).mean(1)
        cam = torch.relu((alpha.view(-1, 1, 1) * a[i]).sum(0))
        cams.append(cam / (cam.max() + 1e-8))
    return torch.stack(cams)


def block_mean(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1|C, 4, 4) -> (B, 2, 2): channel max, then the mean of each 2x2 block."""
    m = mask.amax(1)
    return m.view(-1, 2, 2, 2, 2).mean(dim=(2, 4))


def positive_cam_batch(net, c: int = 1, n: int = 4):
    """Inputs whose hand-computed map is non-zero for every sample (so the terms are not trivially 0)."""
    gen = torch.Generator().manual_seed(1)
    while True:
        x = torch.rand(n, c, 4, 4, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (n,), generator=gen)
        if (hand_cam(net, x, y).flatten(1).amax(1) > 0.5).all():
            return x, y


# --- RRR-G ------------------------------------------------------------------------------------------------------


def test_rrr_gradcam_penalty_equals_a_hand_computation():
    net = pooled_linear()
    x, y = positive_cam_batch(net)
    wrong = (torch.rand(4, 1, 4, 4) > 0.5).double()
    has = torch.tensor([True, False, True, True])
    expected = ((block_mean(wrong) * hand_cam(net, x, y)).pow(2).flatten(1).sum(1))[has].mean()
    assert expected > 0
    batch = Batch(x, y, torch.zeros_like(wrong), torch.zeros(4, dtype=torch.bool), wrong, has)
    logs = build("rrr_gradcam", net, lam=1.0).update(batch)
    assert logs["gradcam_penalty"] == pytest.approx(float(expected), rel=1e-9)


def test_rrr_gradcam_penalty_is_zero_without_wrong_reasons_and_then_is_plain_cross_entropy(tiny):
    x = tiny.train.x[:8]
    cam = grad_cam(small_cnn(tiny.input_shape, 2), x, tiny.train.y[:8])
    assert gradcam_penalty(cam, torch.zeros_like(x)).abs().sum() == 0
    assert gradcam_penalty(cam + 1.0, torch.ones_like(x)).min() > 0
    torch.manual_seed(0)
    rrrg = build("rrr_gradcam", small_cnn(tiny.input_shape, 2), lam=1000.0)
    torch.manual_seed(0)
    std = build("standard", small_cnn(tiny.input_shape, 2))
    d = tiny.train
    batch = Batch(d.x[:8], d.y[:8], d.mask[:8], d.has_mask[:8], torch.zeros_like(d.mask[:8]),
                  torch.ones(8, dtype=torch.bool))  # every sample: an empty wrong-reason mask
    assert rrrg.update(batch)["gradcam_penalty"] == 0.0
    std.update(batch)
    for k, v in std.model.state_dict().items():
        assert torch.allclose(v, rrrg.model.state_dict()[k], atol=1e-7)


def fixed_batch(tiny, n=8):
    d = tiny.train
    return Batch(d.x[:n], d.y[:n], d.mask[:n], d.has_mask[:n])


def cnn_with_nonzero_cams(tiny, batch, seed=0):
    for s in range(seed, seed + 50):
        torch.manual_seed(s)
        net = small_cnn(tiny.input_shape, 2, SmallCNNOptions(feature_blocks=2))
        if (grad_cam(net, batch.x, batch.y).flatten(1).amax(1) > 0).float().mean() >= 0.5:
            return net
    raise AssertionError("no seed with non-trivial Grad-CAM maps")


def test_one_rrr_gradcam_step_lowers_the_map_inside_the_wrong_reasons(tiny):
    batch = fixed_batch(tiny)
    net = cnn_with_nonzero_cams(tiny, batch)
    wrong = 1.0 - batch.mask

    def penalty(model):
        return float(gradcam_penalty(grad_cam(model, batch.x, batch.y), wrong).mean())

    before = penalty(net)
    assert before > 0
    method = build("rrr_gradcam", net, lam=1000.0)
    method.update(batch)
    assert penalty(method.model) < 0.9 * before


# --- HINT -------------------------------------------------------------------------------------------------------


def test_hint_loss_equals_the_mse_by_hand():
    net = pooled_linear(channels=2)
    x, y = positive_cam_batch(net, c=2)
    right = (torch.rand(4, 2, 4, 4) > 0.7).double()  # two channels: reduced by their maximum
    has = torch.tensor([True, True, False, True])
    interp = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]], dtype=torch.float64)
    up = interp @ hand_cam(net, x, y) @ interp.T  # bilinear 2x2 -> 4x4, per sample
    expected = (up - right.amax(1)).pow(2).flatten(1).mean(1)[has].mean()
    logs = build("hint", net, lam=1.0).update(Batch(x, y, right, has))
    assert logs["hint_loss"] == pytest.approx(float(expected), rel=1e-9)


def test_one_hint_step_lowers_the_mse(tiny):
    batch = fixed_batch(tiny)
    net = cnn_with_nonzero_cams(tiny, batch)

    def mse(model):
        return float(hint_loss(grad_cam(model, batch.x, batch.y), batch.mask).mean())

    before = mse(net)
    method = build("hint", net, lam=1000.0)
    method.update(batch)
    assert mse(method.model) < before


# --- counterexamples --------------------------------------------------------------------------------------------


def test_counterexamples_replace_exactly_the_wrong_pixels_with_noise():
    x = torch.rand(4, 2, 6, 6) * 0.5
    y = torch.tensor([0, 1, 2, 1])
    right = torch.zeros(4, 1, 6, 6)
    right[:, :, 2:4, 2:4] = 1
    wrong = torch.zeros(4, 1, 6, 6)
    wrong[:, :, 0, :3] = 1
    # sample 0: both kinds; 1: right only (W = 1 - R); 2: wrong only; 3: neither (never copied)
    has_right, has_wrong = torch.tensor([True, True, False, False]), torch.tensor([True, False, True, False])
    batch = Batch(x, y, right, has_right, wrong, has_wrong)
    method = build("counterexamples", small_cnn((2, 6, 6), 3, SmallCNNOptions(widths=(2,), feature_blocks=1)), copies=2,
                   noise_range=(2.0, 3.0))
    xa, ya = method.augment(batch)
    assert xa.shape == (4 + 2 * 3, 2, 6, 6) and torch.equal(xa[:4], x)
    assert ya.tolist() == [0, 1, 2, 1] + [0, 1, 2] * 2  # same labels, copy by copy
    expected_w = torch.stack([wrong[0], 1 - right[1], wrong[2]]).expand(3, 2, 6, 6).bool()
    for copy_ in (xa[4:7], xa[7:10]):
        replaced = (copy_ >= 2.0) & (copy_ <= 3.0)
        assert torch.equal(replaced, expected_w)  # noise exactly on W, inside the range
        assert torch.equal(copy_[~expected_w], x[:3][~expected_w])  # R and every other pixel kept
        assert torch.equal(copy_[:, :, 2:4, 2:4], x[:3, :, 2:4, 2:4])
    assert not torch.equal(xa[4:7], xa[7:10])  # each copy has its own noise


def test_counterexamples_step_is_cross_entropy_on_the_augmented_batch(tiny):
    batch = fixed_batch(tiny)
    torch.manual_seed(0)
    ce = build("counterexamples", small_cnn(tiny.input_shape, 2))
    torch.manual_seed(0)
    std = build("standard", small_cnn(tiny.input_shape, 2))
    torch.manual_seed(5)
    logs = ce.update(batch)
    torch.manual_seed(5)
    xa, ya = build("counterexamples", copy.deepcopy(std.model)).augment(batch)  # the same noise
    std.update(Batch(xa, ya, torch.ones_like(xa[:, :1]), torch.ones(len(ya), dtype=torch.bool)))
    assert logs["counterexamples"] == 8 and "ce_counterexamples" in logs
    for k, v in std.model.state_dict().items():
        assert torch.equal(v, ce.model.state_dict()[k])


def test_counterexamples_settings_are_checked():
    with pytest.raises(ConfigError, match="copies must be >= 1"):
        METHODS.get("counterexamples").HParams(copies=0)
    with pytest.raises(ConfigError, match="low <= high"):
        METHODS.get("counterexamples").HParams(noise_range=(1.0, 0.0))


# --- mask kinds -------------------------------------------------------------------------------------------------


def test_wrong_reason_methods_train_on_right_only_masks(tiny):
    assert not bool(tiny.train.has_wrong_mask.any())
    for method, key in (("rrr_gradcam", "gradcam_penalty"), ("counterexamples", "counterexamples")):
        result = train(tiny, method, seed=0, epochs=1, quiet=True)
        assert any(r["split"] == "train" and r["metric"] == key and r["value"] > 0 for r in result.history), method


def test_right_reason_methods_train_on_wrong_only_masks(tiny):
    d = tiny.train
    only_wrong = ExplanationDataset(d.x, d.y, None, None, 2, None, "wrong-only", 1 - d.mask,
                                    torch.ones(len(d), dtype=torch.bool))
    result = train(Splits(only_wrong, tiny.val, tiny.test), "hint", seed=0, epochs=1, quiet=True)
    assert any(r["split"] == "train" and r["metric"] == "hint_loss" and r["value"] > 0 for r in result.history)


@pytest.mark.parametrize("method", NEW)
def test_no_masks_at_all_is_a_clear_error(method, tiny):
    nomask = Splits(ExplanationDataset(tiny.train.x, tiny.train.y, None), tiny.val, tiny.test)
    with pytest.raises(ConfigError, match=f"method '{method}' needs explanation masks"):
        train(nomask, method, epochs=1, quiet=True)


@pytest.mark.parametrize("method", NEW)
def test_samples_without_masks_are_skipped(method, tiny):
    d = tiny.train
    batch = Batch(d.x[:8], d.y[:8], d.mask[:8], torch.zeros(8, dtype=torch.bool))
    torch.manual_seed(0)
    m = build(method, small_cnn(tiny.input_shape, 2))
    torch.manual_seed(0)
    std = build("standard", small_cnn(tiny.input_shape, 2))
    logs = m.update(batch)
    std.update(batch)
    assert not ({"gradcam_penalty", "hint_loss", "ce_counterexamples"} & set(logs))
    for k, v in std.model.state_dict().items():  # no mask anywhere: a plain cross-entropy step
        assert torch.equal(v, m.model.state_dict()[k])


def test_grad_cam_methods_refuse_vector_features():
    data = datasets.triangles(n_train=8, seed=0, n_val=4, n_test=4, image_size=16)
    for method in ("rrr_gradcam", "hint"):
        with pytest.raises(ConfigError, match=r"Grad-CAM needs a spatial feature map.*\(50,\)"):
            train(data, method, model="mlp", epochs=1, quiet=True)
