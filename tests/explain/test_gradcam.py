import pytest
import torch
from torch import nn

from explearn.errors import ConfigError
from explearn.explain import downsample_mask, grad_cam, grad_cam_from, normalize_cam, reduce_channels, upsample_map
from explearn.models import ExplainableNet, SmallCNNOptions, mlp, run_parts, small_cnn


def linear_head(c: int, h: int, w: int, k: int) -> ExplainableNet:
    """A = x itself (f and m identities) and logits = W vec(A) + b: d logit_t / dA = W_t, by hand."""
    torch.manual_seed(0)
    return ExplainableNet(nn.Identity(), nn.Identity(), nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k))).double()


def hand_cam(net: ExplainableNet, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    weight = net.classifier[1].weight  # (K, C*h*w)
    out = []
    for i in range(b):
        alpha = weight[target[i]].view(c, h, w).mean(dim=(1, 2))  # w_c: spatial mean of the gradient
        out.append(torch.relu((alpha.view(c, 1, 1) * x[i]).sum(0)))
    return torch.stack(out)


def test_grad_cam_equals_a_hand_computation():
    net = linear_head(3, 4, 5, 4)
    x = torch.randn(6, 3, 4, 5, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 1, 0])
    cam = grad_cam(net, x, target)
    assert cam.shape == (6, 4, 5)
    assert torch.allclose(cam, hand_cam(net, x, target), atol=1e-12)
    assert (cam > 0).any() and (cam == 0).any()  # the relu is in effect: both signs occur
    assert not cam.requires_grad


def test_grad_cam_without_target_explains_the_predicted_class():
    net = linear_head(2, 3, 3, 3)
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    predicted = net(x).argmax(1)
    assert torch.allclose(grad_cam(net, x), hand_cam(net, x, predicted))


def test_grad_cam_from_a_shared_forward_matches_grad_cam():
    net = small_cnn((1, 16, 16), 3, SmallCNNOptions(widths=(4, 4), feature_blocks=2))
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    out = run_parts(net, x)
    assert torch.allclose(grad_cam_from(out.mapped, out.logits, y), grad_cam(net, x, y))


def test_create_graph_lets_a_loss_on_the_map_train_every_part():
    torch.manual_seed(1)
    net = small_cnn((1, 16, 16), 2, SmallCNNOptions(widths=(4, 4), feature_blocks=1))
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 0, 1])
    cam = grad_cam(net, x, y, create_graph=True)
    assert cam.requires_grad and cam.sum() > 0
    grads = torch.autograd.grad(cam.sum(), list(net.parameters()), allow_unused=True)
    named = dict(zip([n for n, _ in net.named_parameters()], grads))
    for part in ("features.", "mapping.", "classifier."):
        assert any(g is not None and g.abs().sum() > 0 for n, g in named.items() if n.startswith(part)), part
    assert not grad_cam(net, x, y).requires_grad


def test_normalised_grad_cam_passes_gradcheck():
    torch.manual_seed(3)  # a seed whose map is non-zero for both samples (at many seeds relu clips it to 0)
    net = small_cnn((1, 8, 8), 2, SmallCNNOptions(widths=(3, 3), feature_blocks=1)).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert (grad_cam(net, x, y).flatten(1).amax(1) > 0).all()  # a non-trivial map at this seed
    assert torch.autograd.gradcheck(lambda inp: normalize_cam(grad_cam(net, inp, y, create_graph=True)),
                                    (x.requires_grad_(),))


def test_vector_features_are_refused_with_their_shape():
    net = mlp((1, 8, 8), 2)
    with pytest.raises(ConfigError, match=r"Grad-CAM needs a spatial feature map.*\(50,\)"):
        grad_cam(net, torch.rand(2, 1, 8, 8))


def test_normalize_cam_scales_each_sample_to_unit_maximum():
    cam = torch.stack([torch.tensor([[0.0, 2.0], [1.0, 4.0]]), torch.zeros(2, 2)])
    out = normalize_cam(cam)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]), atol=1e-6)
    assert torch.equal(out[1], torch.zeros(2, 2))


def test_resizing_maps_and_masks():
    # bilinear (align_corners=False) from 2 to 4 positions: source coordinates 0, 0.25, 0.75, 1
    interp = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    maps = torch.tensor([[[0.0, 1.0], [0.5, 0.2]]])
    assert torch.allclose(upsample_map(maps, (4, 4))[0], interp @ maps[0] @ interp.T, atol=1e-6)
    mask = torch.zeros(1, 2, 4, 4)
    mask[0, 0, :2, :2] = 1  # top-left block in channel 0
    mask[0, 1, 3, 3] = 1  # one pixel of the bottom-right block in channel 1
    assert torch.equal(reduce_channels(mask)[0], mask[0].amax(0))
    assert torch.allclose(downsample_mask(mask, (2, 2))[0], torch.tensor([[1.0, 0.0], [0.0, 0.25]]))
