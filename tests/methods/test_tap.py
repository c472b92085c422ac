"""The defining properties of TAP, the targeted activation penalty (Zhang, Williams and Toni, AAAI 2024): the
penalty by hand, its gradient, the penalised layers, and how the method uses masks."""

import copy

import pytest
import torch

from explearn import ConfigError, ExplanationDataset, Splits, datasets, train
from explearn.config import from_dict
from explearn.methods import METHODS, Batch
from explearn.methods.tap import TAPHParams, activation_penalty, activations_forward
from explearn.models import SmallCNNOptions, small_cnn


def build(model, **hp):
    cls = METHODS.get("tap")
    return cls(model, cls.HParams(**hp), batches_per_epoch=1)


def standard(model):
    cls = METHODS.get("standard")
    return cls(model, cls.HParams(), batches_per_epoch=1)


def wrong_batch(tiny, n=8, has_wrong=None):
    """Only wrong-reason masks (W = 1 - the triangle); no right-reason mask is read."""
    d = tiny.train
    has = torch.ones(n, dtype=torch.bool) if has_wrong is None else has_wrong
    return Batch(d.x[:n], d.y[:n], torch.zeros_like(d.mask[:n]), torch.zeros(n, dtype=torch.bool),
                 1.0 - d.mask[:n], has)


def assert_same_weights(a, b):
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


# --- the penalty ------------------------------------------------------------------------------------------------


def test_penalty_of_known_activations_and_mask():
    activation = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, -1.0]]]])  # (1, 2, 2, 2)
    wrong = torch.zeros(1, 1, 4, 4)
    wrong[:, :, :2, :2] = 1  # the top-left cell entirely
    wrong[:, :, 0, 2:] = 1  # half of the top-right cell
    # channel sum [[1, 3], [3, 3]], W_down [[1, 0.5], [0, 0]]: (1 * 1)^2 + (0.5 * 3)^2
    assert activation_penalty(activation, wrong).tolist() == [3.25]
    assert activation_penalty(activation, torch.zeros(1, 3, 4, 4)).tolist() == [0.0]
    assert activation_penalty(activation, torch.ones(1, 3, 4, 4)).tolist() == [1 + 9 + 9 + 9]


def test_penalty_passes_gradcheck_in_the_activations():
    torch.manual_seed(0)
    activation = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    wrong = torch.rand(3, 2, 6, 6, dtype=torch.float64)  # soft, two channels
    assert torch.autograd.gradcheck(lambda a: activation_penalty(a, wrong), (activation,))


def test_penalty_refuses_a_vector():
    with pytest.raises(ConfigError, match=r"method 'tap' penalises spatial feature maps.*\(5,\)"):
        activation_penalty(torch.rand(2, 5), torch.ones(2, 1, 4, 4))


# --- the penalised layers ---------------------------------------------------------------------------------------


def test_features_are_f_of_x_and_blocks_every_conv_block(tiny):
    torch.manual_seed(0)
    net = small_cnn(tiny.input_shape, 2)
    x = tiny.train.x[:4]
    acts, logits = activations_forward(net, x, "features")
    assert len(acts) == 1 and torch.equal(acts[0], net.features(x))
    assert torch.equal(logits, net(x))
    blocks, _ = activations_forward(net, x, "blocks")
    assert [tuple(a.shape[1:]) for a in blocks] == [(16, 8, 8), (32, 4, 4), (32, 2, 2)]  # 16x16 images
    assert torch.equal(blocks[0], net.features[0](x)) and torch.equal(blocks[-1], acts[0])
    assert all(not block._forward_hooks for block in net.features)  # the hooks are removed


# --- the method -------------------------------------------------------------------------------------------------


def test_the_logged_penalty_is_the_mean_over_masked_samples_and_layers(tiny):
    torch.manual_seed(0)
    net = small_cnn(tiny.input_shape, 2, SmallCNNOptions(feature_blocks=2))
    has = torch.tensor([True, True, False, True, False, True, True, False])
    batch = wrong_batch(tiny, has_wrong=has)
    w = batch.wrong_mask[has]
    with torch.no_grad():
        first = net.features[0](batch.x)
        second = net.features[1](first)
        expected_features = activation_penalty(second[has], w).mean()
        expected_blocks = ((activation_penalty(first[has], w) + activation_penalty(second[has], w)) / 2).mean()
    one = copy.deepcopy(net)
    assert build(net).update(batch)["tap_penalty"] == pytest.approx(expected_features.item(), rel=1e-6)
    assert build(one, layers="blocks").update(batch)["tap_penalty"] == pytest.approx(expected_blocks.item(), rel=1e-6)


@pytest.mark.parametrize("layers", ["features", "blocks"])
def test_samples_without_a_mask_contribute_no_term(layers, tiny):
    flags = torch.tensor([True] * 4 + [False] * 4)
    clean = wrong_batch(tiny, has_wrong=flags)
    garbage = clean.wrong_mask.clone()
    garbage[4:] = float("nan")  # the masks of the samples without one are never read
    noisy = Batch(clean.x, clean.y, clean.mask, clean.has_mask, garbage, flags)
    torch.manual_seed(0)
    a = build(small_cnn(tiny.input_shape, 2), lam=10.0, layers=layers)
    b = copy.deepcopy(a)
    assert a.update(clean)["tap_penalty"] == b.update(noisy)["tap_penalty"]
    assert_same_weights(a, b)
    # no mask in the batch, or only empty ones: a plain cross-entropy step
    for batch in (wrong_batch(tiny, has_wrong=torch.zeros(8, dtype=torch.bool)),
                  Batch(clean.x, clean.y, clean.mask, clean.has_mask, torch.zeros_like(garbage), ~flags | flags)):
        torch.manual_seed(0)
        tap = build(small_cnn(tiny.input_shape, 2), lam=1000.0, layers=layers)
        torch.manual_seed(0)
        std = standard(small_cnn(tiny.input_shape, 2))
        logs = tap.update(batch)
        std.update(batch)
        assert logs.get("tap_penalty", 0.0) == 0.0
        assert_same_weights(std, tap)


def test_right_reason_masks_alone_penalise_everything_but_the_reason(tiny):
    d = tiny.train
    batch = Batch(d.x[:8], d.y[:8], d.mask[:8], torch.ones(8, dtype=torch.bool))
    torch.manual_seed(0)
    net = small_cnn(tiny.input_shape, 2)
    with torch.no_grad():
        expected = activation_penalty(net.features(batch.x), 1.0 - batch.mask).mean()
    assert build(net).update(batch)["tap_penalty"] == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("layers", ["features", "blocks"])
def test_a_few_steps_with_a_large_lam_lower_the_penalty(layers, tiny):
    batch = wrong_batch(tiny)
    torch.manual_seed(0)
    method = build(small_cnn(tiny.input_shape, 2), lam=10.0, layers=layers)

    def penalty():
        with torch.no_grad():
            acts, _ = activations_forward(method.model, batch.x, layers)
            return float(torch.stack([activation_penalty(a, batch.wrong_mask) for a in acts]).mean())

    before = penalty()
    assert before > 0
    for _ in range(5):
        method.update(batch)
    assert penalty() < 0.75 * before


def test_an_mlp_is_a_clear_error():
    data = datasets.triangles(n_train=8, seed=0, n_val=4, n_test=4, image_size=16)
    with pytest.raises(ConfigError, match=r"method 'tap' penalises spatial feature maps.*f\(x\) has shape \(50,\)"):
        train(data, "tap", model="mlp", epochs=1, quiet=True)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="method 'tap': lam must be >= 0"):
        TAPHParams(lam=-0.5)
    with pytest.raises(ConfigError, match="layers must be one of features, blocks, got 'all'"):
        TAPHParams(layers="all")
    with pytest.raises(ConfigError, match="'layers'"):
        from_dict(TAPHParams, {"layers": "block"}, "method 'tap'")
    assert from_dict(TAPHParams, {"layers": "blocks"}, "method 'tap'").lam == 0.01


def test_trains_on_both_mask_kinds_and_refuses_none(tiny):
    result = train(tiny, "tap", seed=0, epochs=1, quiet=True)
    assert any(r["split"] == "train" and r["metric"] == "tap_penalty" and r["value"] > 0 for r in result.history)
    nomask = Splits(ExplanationDataset(tiny.train.x, tiny.train.y, None), tiny.val, tiny.test)
    with pytest.raises(ConfigError, match="method 'tap' needs explanation masks"):
        train(nomask, "tap", epochs=1, quiet=True)
