"""The evaluation attributions computed with captum: they agree with explearn's own input gradient and Grad-CAM in
float64, every registered one has the input's shape and is finite and deterministic, integrated gradients is
complete, and ``alignment_under`` reads 1 or 0 where the attribution is inside or outside the mask by construction.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from explearn.datasets import ExplanationDataset
from explearn.errors import ConfigError
from explearn.explain import (EVALUATION_ATTRIBUTIONS, alignment_under, attribution_summary, explanation_alignment,
                              grad_cam, input_gradients, occlusion_window, upsample_map)
from explearn.models import (ExplainableNet, SmallCNNOptions, SmallResNetOptions, logits, mlp, small_cnn,
                             small_resnet)

#: float64 agreement of two computations of the same quantity (the differences observed were exactly 0)
ATOL = 1e-10


def spatial_models() -> dict[str, nn.Module]:
    """explearn models whose m(f(x)) is a feature map, float64, in eval mode, on 3x32x32 inputs and 4 classes."""
    torch.manual_seed(0)
    models = {
        "small_cnn": small_cnn((3, 32, 32), 4),  # f = all three blocks, m linear on a 32x4x4 map
        "small_cnn_conv_head": small_cnn((3, 32, 32), 4, SmallCNNOptions(feature_blocks=2, mapping="conv1x1")),
        "small_resnet": small_resnet((3, 32, 32), 4, SmallResNetOptions(widths=(8, 16), feature_stages=1)),
    }
    return {name: model.double().eval() for name, model in models.items()}


def inputs(n: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64), torch.arange(n) % 4


def smooth_model() -> ExplainableNet:
    """A float64 network of analytic functions (tanh, softplus): its logit is smooth along any path, so the
    integral of integrated gradients is taken to the quadrature's precision."""
    torch.manual_seed(2)
    return ExplainableNet(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh()), nn.Identity(),
                          nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Softplus(), nn.Flatten(),
                                        nn.Linear(4 * 32 * 32, 4))).double().eval()


# (a) and (b): captum and explearn agree


def test_input_gradient_is_captum_saliency_of_the_log_probability():
    """explearn differentiates log p_target; captum Saliency differentiates the forward's output, so on a forward
    that returns log_softmax(logits), with abs=False, the two are the same gradient."""
    x, target = inputs()
    for name, model in spatial_models().items():
        ours = input_gradients(model, x, target="label", y=target)
        theirs = Saliency(lambda v: F.log_softmax(logits(model, v), dim=1)).attribute(
            x.clone().requires_grad_(True), target=target, abs=False)
        assert torch.allclose(ours, theirs, rtol=0, atol=ATOL), name


def test_grad_cam_is_captum_layer_grad_cam_on_the_mapping_layer():
    """explearn's grad_cam = captum LayerGradCam on the module whose output is m(f(x)) (model.mapping), with
    relu_attributions=True (captum does not rectify by default), before any upsampling."""
    x, target = inputs()
    for name, model in spatial_models().items():
        ours = grad_cam(model, x, target)  # (B, h, w)
        theirs = LayerGradCam(lambda v: logits(model, v), model.mapping).attribute(
            x, target=target, relu_attributions=True)  # (B, 1, h, w)
        assert theirs.shape == (len(x), 1, *ours.shape[1:]), name
        assert torch.allclose(ours, theirs.squeeze(1), rtol=0, atol=ATOL), name
        assert (ours > 0).any(), name  # not a vacuous comparison of two zero maps


def test_layer_grad_cam_weights_are_the_spatial_mean_of_the_gradient():
    """On c(A) = W vec(A), d logit_t / dA = W_t; captum's channel weights are its mean over positions (Grad-CAM's
    global average pooling), not its sum, checked by hand without the relu."""
    torch.manual_seed(3)
    c, h, w, k = 3, 4, 5, 4
    model = ExplainableNet(nn.Identity(), nn.Identity(), nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k)))
    model = model.double().eval()
    x, target = torch.randn(6, c, h, w, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, 0])
    weight = model.classifier[1].weight.view(k, c, h, w)
    alpha = weight[target].mean(dim=(2, 3))  # (B, C)
    by_hand = (alpha[:, :, None, None] * x).sum(1)  # (B, h, w), both signs
    theirs = LayerGradCam(lambda v: logits(model, v), model.mapping).attribute(x, target=target).squeeze(1)
    assert torch.allclose(theirs, by_hand, rtol=0, atol=ATOL)
    assert (by_hand < 0).any() and (by_hand > 0).any()


def test_registered_gradcam_is_explearn_grad_cam_upsampled():
    x, target = inputs()
    gradcam = EVALUATION_ATTRIBUTIONS.get("gradcam")
    for name, model in spatial_models().items():
        expected = upsample_map(grad_cam(model, x, target), (32, 32))
        assert torch.allclose(gradcam(model, x, target), expected, rtol=0, atol=ATOL), name


def test_registered_input_gradient_is_the_align_metric_attribution():
    x, target = inputs()
    model = spatial_models()["small_cnn"]
    compute = EVALUATION_ATTRIBUTIONS.get("input_gradient")
    assert torch.equal(compute(model, x, None), input_gradients(model, x, target="predicted"))
    assert torch.equal(compute(model, x, target), input_gradients(model, x, target="label", y=target))


# (c): every registered attribution


@pytest.mark.parametrize("name", EVALUATION_ATTRIBUTIONS.names())
def test_every_attribution_has_the_input_shape_and_is_finite_and_deterministic(name):
    x, target = inputs(n=3)
    model = spatial_models()["small_cnn"]
    compute = EVALUATION_ATTRIBUTIONS.get(name)
    first, again = compute(model, x, target), compute(model, x, target)
    assert first.shape == ((3, 32, 32) if name == "gradcam" else (3, 3, 32, 32))
    assert first.dtype == torch.float64 and not first.requires_grad
    assert torch.isfinite(first).all() and first.abs().sum() > 0
    assert torch.equal(first, again)
    assert torch.equal(compute(model, x, None), compute(model, x, logits(model, x).argmax(1)))  # None = predicted
    assert attribution_summary(name) and "\n" not in attribution_summary(name)


@pytest.mark.parametrize("name", EVALUATION_ATTRIBUTIONS.names())
def test_attributions_run_in_eval_mode_and_restore_the_mode(name):
    """A model left in training mode (BatchNorm on batch statistics) is explained as in eval mode, and stays in
    training mode."""
    x, target = inputs(n=3)
    model = spatial_models()["small_resnet"]
    compute = EVALUATION_ATTRIBUTIONS.get(name)
    expected = compute(model, x, target)
    model.train()
    assert torch.equal(compute(model, x, target), expected)
    assert all(m.training for m in model.modules())


def test_integrated_gradients_is_complete_on_a_smooth_model():
    """sum of attributions = logit_t(x) - logit_t(0): to 1e-9 on an analytic model (50 Gauss-Legendre points;
    observed 3e-11 for gaps of 0.01 to 0.05), and captum's convergence delta says the same."""
    model = smooth_model()
    x, target = inputs()
    attribution = EVALUATION_ATTRIBUTIONS.get("integrated_gradients")(model, x, target)
    with torch.no_grad():
        gap = (logits(model, x) - logits(model, torch.zeros_like(x))).gather(1, target.view(-1, 1)).squeeze(1)
    assert gap.abs().min() > 1e-3  # a gap worth explaining
    assert torch.allclose(attribution.sum(dim=(1, 2, 3)), gap, rtol=0, atol=1e-9)
    delta = IntegratedGradients(lambda v: logits(model, v)).compute_convergence_delta(
        attribution, start_point=torch.zeros_like(x), end_point=x, target=target)
    assert delta.abs().max() < 1e-9


def test_integrated_gradients_is_nearly_complete_on_a_relu_network():
    """On small_cnn (ReLU, max-pool) the path integral has kinks: the 50-point quadrature misses the gap by a
    few percent at most (observed: 1.4 % at most on these inputs)."""
    model = spatial_models()["small_cnn"]
    x, target = inputs()
    attribution = EVALUATION_ATTRIBUTIONS.get("integrated_gradients")(model, x, target)
    with torch.no_grad():
        gap = (logits(model, x) - logits(model, torch.zeros_like(x))).gather(1, target.view(-1, 1)).squeeze(1)
    assert ((attribution.sum(dim=(1, 2, 3)) - gap).abs() <= 0.05 * gap.abs() + 1e-6).all()


def test_occlusion_window_is_an_eighth_of_each_side():
    assert occlusion_window(32, 32) == ((4, 4), (2, 2))
    assert occlusion_window(16, 20) == ((2, 3), (1, 1))
    assert occlusion_window(8, 8) == ((1, 1), (1, 1))
    assert occlusion_window(224, 224) == ((28, 28), (14, 14))


# (d): unknown names


def test_an_unknown_name_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'integrated_gradients'"):
        EVALUATION_ATTRIBUTIONS.get("integrated_gradient")
    data = ExplanationDataset(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), torch.ones(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="unknown attribution 'gradcm'.*did you mean 'gradcam'"):
        alignment_under(spatial_models()["small_cnn"].float(), data, "gradcm")


def test_gradcam_on_a_vector_model_is_a_config_error():
    model = mlp((1, 8, 8), 2).eval()
    with pytest.raises(ConfigError, match="feature map"):
        EVALUATION_ATTRIBUTIONS.get("gradcam")(model, torch.rand(2, 1, 8, 8), None)


# (e): alignment_under


class Gate(nn.Module):
    """f(x) = x * region: the model sees only the pixels of a fixed region."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.region


def gated_linear(region: torch.Tensor) -> ExplainableNet:
    """logit_0 = <w, x * region> = -logit_1 with w > 0: every attribution of the predicted class (0, on positive
    images) is zero outside the region, and Grad-CAM's channel weight is positive, so its map is not all zero."""
    c, h, w = region.shape
    lin = nn.Linear(c * h * w, 2, bias=False)
    with torch.no_grad():
        weights = torch.linspace(0.5, 1.5, c * h * w)
        lin.weight.copy_(torch.stack([weights, -weights]))
    return ExplainableNet(Gate(region), nn.Identity(), nn.Sequential(nn.Flatten(), lin)).double()


@pytest.mark.parametrize("name", EVALUATION_ATTRIBUTIONS.names())
def test_alignment_is_one_inside_the_mask_and_zero_outside(name):
    """8x8 images: occlusion's window is one pixel, so no window straddles the mask's border."""
    n, h, w = 6, 8, 8
    mask = torch.zeros(n, 1, h, w, dtype=torch.float64)
    mask[:, :, 2:6, 1:5] = 1
    data = ExplanationDataset(0.1 + torch.rand(n, 3, h, w, dtype=torch.float64), torch.arange(n) % 2,
                              mask.expand(n, 3, h, w).clone())  # a mask per channel: the per-pixel maps use its max
    region = mask[0].expand(3, h, w)
    assert alignment_under(gated_linear(region), data, name) == 1.0
    assert alignment_under(gated_linear(1 - region), data, name) == 0.0
    assert alignment_under(gated_linear(region), data, name, limit=2, batch_size=1) == 1.0


def test_alignment_under_input_gradient_is_explanation_alignment():
    torch.manual_seed(4)
    n = 10
    mask = (torch.rand(n, 1, 32, 32) > 0.7).float()
    data = ExplanationDataset(torch.rand(n, 3, 32, 32), torch.arange(n) % 4, mask,
                              has_mask=torch.arange(n) % 3 != 0)
    model = small_cnn((3, 32, 32), 4)
    assert alignment_under(model, data, "input_gradient", batch_size=4) == explanation_alignment(model, data)
    assert alignment_under(model, data, "input_gradient", limit=3) == explanation_alignment(model, data, limit=3)


def test_alignment_under_without_masks_is_nan():
    data = ExplanationDataset(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    assert math.isnan(alignment_under(small_cnn((3, 32, 32), 4), data, "saliency"))


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": -1}, {"batch_size": 0}])
def test_alignment_under_refuses_limits_below_one(tiny, bad):
    from explearn.errors import ConfigError
    from explearn.explain import alignment_under
    from explearn.models import small_cnn

    with pytest.raises(ConfigError, match=next(iter(bad))):
        alignment_under(small_cnn(tiny.input_shape, tiny.n_classes), tiny.test, "saliency", **bad)


def test_a_gradcam_map_that_is_zero_everywhere_counts_as_share_zero(tiny):
    """A model that switches Grad-CAM off on an image must not score better for it: the share is 0, not left out."""
    import torch.nn as nn

    from explearn.explain import alignment_estimate, alignment_under
    from explearn.models import small_cnn

    model = small_cnn(tiny.input_shape, tiny.n_classes)
    for p in model.classifier.parameters():
        nn.init.zeros_(p)  # every logit 0: every Grad-CAM map is zero
    assert alignment_under(model, tiny.test, "gradcam") == 0.0
    estimate = alignment_estimate(model, tiny.test, limit=None, attribution="gradcam")
    assert estimate.mean == 0.0 and estimate.n == int(tiny.test.has_mask.sum())
