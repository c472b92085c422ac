"""Attribution metrics read on a subsample (issue 13): the estimate, its interval and the sample size."""

import math

import pytest
import torch

from explearn import datasets, train
from explearn.explain.attribution import (ATTRIBUTION_SAMPLES, _mean_interval, alignment_estimate,
                                          explanation_alignment, wrong_reason_score, wrong_score_estimate)


def test_mean_interval_by_hand():
    # values 0.2, 0.4, 0.6 read from a split of 10: mean 0.4, sd 0.2, finite-population correction sqrt(7/9),
    # t(0.975, 2) = 4.302653; the interval is cut to [0, 1]
    e = _mean_interval(torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64), 10)
    half = 4.302653 * 0.2 / math.sqrt(3) * math.sqrt(7 / 9)
    assert (e.mean, e.n, e.of) == (pytest.approx(0.4), 3, 10)
    assert e.ci_low == 0.0 and e.ci_high == pytest.approx(0.4 + half, abs=1e-6)
    whole = _mean_interval(torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64), 3)  # every image read: exact
    assert whole.ci_low == whole.ci_high == pytest.approx(0.4)


def test_subsample_estimates_equal_the_whole_split_when_small(tiny):
    model = train(tiny, "standard", 0, epochs=1, quiet=True).model
    e = alignment_estimate(model, tiny.test, limit=ATTRIBUTION_SAMPLES)
    assert e.n == e.of == len(tiny.test) and e.mean == pytest.approx(explanation_alignment(model, tiny.test))
    part = alignment_estimate(model, tiny.test, limit=10)
    assert part.n == 10 and part.of == len(tiny.test)
    assert part.mean == pytest.approx(explanation_alignment(model, tiny.test.subset(range(10))))
    assert 0.0 <= part.ci_low <= part.mean <= part.ci_high <= 1.0


def test_wrong_score_subsample_and_its_bootstrap_interval():
    data = datasets.triangles(n_train=16, seed=0, n_val=8, n_test=40, image_size=16, spurious_rate=1.0,
                              spurious_test="independent")
    # triangles carry no wrong-reason masks of the square yet: give the test split's squares as wrong masks
    test = data.test
    wrong = torch.zeros_like(test.mask)
    wrong[:, :, 1:4, 1:4] = 1.0
    test = type(test)(test.x, test.y, test.mask, wrong_mask=wrong, name="t")
    model = train(data, "standard", 0, epochs=1, quiet=True).model
    whole = wrong_score_estimate(model, test, limit=None)
    assert whole.n == 40 and whole.ci_low == whole.ci_high == pytest.approx(wrong_reason_score(model, test))
    part = wrong_score_estimate(model, test, limit=20)
    assert part.mean == pytest.approx(wrong_reason_score(model, test.subset(range(20))))
    assert part.ci_low <= part.mean <= part.ci_high and part.n == 20
    assert wrong_score_estimate(model, test, limit=20) == part  # a fixed seed: the same interval


def test_gradcam_alignment_is_the_share_of_the_upsampled_map_inside_the_mask(tiny):
    """By hand: Grad-CAM of the predicted class, upsampled to the image, its mass inside the mask over its mass."""
    import torch.nn.functional as F

    from explearn.explain import alignment_estimate, grad_cam
    from explearn.models import small_cnn

    torch.manual_seed(0)
    model = small_cnn(tiny.input_shape, tiny.n_classes).eval()
    ds = tiny.test
    cam = grad_cam(model, ds.x)
    up = F.interpolate(cam[:, None], size=ds.x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    mask = ds.mask.amax(1)
    inside, total = (up * mask).flatten(1).sum(1), up.flatten(1).sum(1)
    keep = ds.has_mask & (total > 0)
    expected = float((inside[keep] / total[keep]).double().mean())
    got = alignment_estimate(model, ds, limit=None, attribution="gradcam")
    assert got.mean == pytest.approx(expected, rel=1e-5) and got.n == int(keep.sum())


def test_runs_record_gradcam_alignment_only_for_models_with_a_feature_map(tiny):
    from explearn.train import train

    cnn = train(tiny, "standard", seed=0, epochs=1, quiet=True).metrics
    mlp = train(tiny, "standard", seed=0, epochs=1, model="mlp", quiet=True).metrics
    assert 0.0 <= cnn["test/align_gradcam"] <= 1.0 and cnn["test/align_gradcam_n"] > 0
    assert "test/align_gradcam" not in mlp and "test/align" in mlp
