import pytest
import torch
import torch.nn.functional as F

from explearn.errors import ConfigError
from explearn.losses import AXES, DIVERGENCES, NORMALIZATIONS, AlignmentLoss, alignment_loss

VALID = [
    (loss, norm, axis)
    for loss in DIVERGENCES.names()
    for norm in NORMALIZATIONS.names()
    for axis in AXES.names()
    if (not DIVERGENCES.get(loss).needs_distribution or norm == "softmax")
    and (DIVERGENCES.get(loss).axes is None or axis in DIVERGENCES.get(loss).axes)
]


def test_kl_softmax_matches_a_hand_computation():
    pred, target = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    p = torch.softmax(target.flatten(1), 1)  # target distribution first: KL(target || prediction)
    q = torch.softmax(pred.flatten(1), 1)
    by_hand = (p * (p.log() - q.log())).sum(1).mean()
    assert torch.allclose(alignment_loss(pred, target), by_hand, atol=1e-6)
    # torch's kl_div(input=log q, target=p) is the same quantity
    assert torch.allclose(by_hand, F.kl_div(q.log(), p, reduction="batchmean"), atol=1e-6)


def test_axes_group_as_documented():
    pred, target = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    spatial = AlignmentLoss(axis="spatial")(pred, target)
    p = torch.softmax(target.flatten(2), -1)
    q = torch.softmax(pred.flatten(2), -1)
    assert torch.allclose(spatial, (p * (p.log() - q.log())).sum(-1).mean(), atol=1e-6)
    channel = AlignmentLoss(axis="channel")(pred, target)
    p = torch.softmax(target, 1)
    q = torch.softmax(pred, 1)
    assert torch.allclose(channel, (p * (p.log() - q.log())).sum(1).mean(), atol=1e-6)


@pytest.mark.parametrize("loss, norm, axis", VALID)
def test_every_loss_is_nonnegative_zero_on_equal_and_finite_on_edges(loss, norm, axis):
    fn = AlignmentLoss(loss, norm, axis)
    z = torch.randn(4, 3, 2, 2)
    assert float(fn(z, z)) == pytest.approx(0.0, abs=1e-5)
    assert float(fn(torch.zeros_like(z), torch.zeros_like(z))) == pytest.approx(0.0, abs=1e-5)
    assert float(fn(1e4 * z, 1e4 * z)) == pytest.approx(0.0, abs=1e-5)
    assert float(fn(z, torch.randn_like(z))) >= -1e-6
    one_hot = torch.zeros(4, 3, 2, 2)
    one_hot[:, 0, 0, 0] = 1
    for a, b in [(torch.zeros_like(z), z), (one_hot, z), (1e4 * z, -1e4 * z)]:
        assert torch.isfinite(fn(a, b))


@pytest.mark.parametrize("loss, norm, axis", VALID)
def test_every_loss_passes_gradcheck(loss, norm, axis):
    fn = AlignmentLoss(loss, norm, axis)
    pred = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 2, 2, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: fn(p, target), (pred,))


def test_sliced_wasserstein_matches_a_hand_computation_and_moves_mass_by_distance():
    from explearn.losses.alignment import _sliced_wasserstein, Normalized

    # all mass at the top-left corner vs all mass at the top-right corner of a 3 x 3 grid: the positions are
    # (0, 0) and (0, 1) after scaling, so on direction (cos t, sin t) the mass moves by |sin t|, squared
    def point(index: int) -> Normalized:
        v = torch.zeros(1, 1, 9, dtype=torch.float64)
        v[0, 0, index] = 1
        return Normalized(v, None, True, (3, 3))

    got = _sliced_wasserstein(point(0), point(2), projections=16)
    angles = torch.arange(16, dtype=torch.float64) * torch.pi / 16
    assert torch.allclose(got, (angles.sin() ** 2).mean().reshape(1, 1))
    # farther is costlier: the centre is closer to the corner than the opposite corner is
    assert float(_sliced_wasserstein(point(0), point(4))) < float(_sliced_wasserstein(point(0), point(8)))
    with pytest.raises(ConfigError, match="'wasserstein' is defined on axis 'spatial', not 'flat'"):
        AlignmentLoss("wasserstein")


def test_distribution_losses_refuse_non_distributions():
    with pytest.raises(ConfigError, match="'kl' compares probability distributions.*'none'"):
        AlignmentLoss("kl", "none")
    with pytest.raises(ConfigError, match="unknown alignment loss 'kll'"):
        AlignmentLoss("kll")
    with pytest.raises(ConfigError, match="unknown feature axis"):
        AlignmentLoss(axis="pixel")


def test_flat_axis_accepts_vectors_and_others_need_maps():
    assert torch.isfinite(AlignmentLoss()(torch.randn(3, 5), torch.randn(3, 5)))
    with pytest.raises(ConfigError, match="axis 'spatial' needs feature maps"):
        AlignmentLoss(axis="spatial")(torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ConfigError, match="differ"):
        AlignmentLoss()(torch.randn(3, 5), torch.randn(3, 4))
