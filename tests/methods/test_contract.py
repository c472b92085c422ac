"""One contract test over every registered method, and the properties that define each one."""

import copy
import math

import pytest
import torch

from explearn.methods import METHODS, AlternationSchedule, Batch, TwoStageHParams, rrr_penalty
from explearn.models import SmallCNNOptions, small_cnn


def batch_of(splits, n=8, has_mask=None):
    ds = splits.train
    return Batch(ds.x[:n], ds.y[:n], ds.mask[:n], ds.has_mask[:n] if has_mask is None else has_mask)


def build(name, tiny, **hp):
    torch.manual_seed(0)
    model = small_cnn(tiny.input_shape, tiny.n_classes)
    cls = METHODS.get(name)
    return cls(model, cls.HParams(**hp), batches_per_epoch=3)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_and_predicts(name, tiny):
    method = build(name, tiny)
    before = copy.deepcopy(method.model.state_dict())
    logs = {}
    for _ in range(3):
        logs.update(method.update(batch_of(tiny)))
    logs.update(method.end_epoch())
    assert logs and all(math.isfinite(v) for v in logs.values())
    assert any(not torch.equal(before[k], v) for k, v in method.model.state_dict().items())
    out = method.predict(tiny.test.x)
    assert out.shape == (len(tiny.test), tiny.n_classes) and not out.requires_grad
    assert issubclass(method.HParams, object) and method.hparams.lr > 0


def _changed(before, after, prefix):
    return [k for k in after if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_stage_two_updates_only_mapping_layer(tiny):
    method = build("two_stage", tiny)
    before = copy.deepcopy(method.model.state_dict())
    logs = method.stage_two(batch_of(tiny))
    after = method.model.state_dict()
    assert logs["align_loss"] > 0 and logs["grad_norm_stage2"] > 0
    assert _changed(before, after, "mapping.")
    assert not _changed(before, after, "features.") and not _changed(before, after, "classifier.")


def test_stage_one_updates_every_part(tiny):
    method = build("two_stage", tiny)
    before = copy.deepcopy(method.model.state_dict())
    method.stage_one(batch_of(tiny))
    after = method.model.state_dict()
    for part in ("features.", "mapping.", "classifier."):
        assert _changed(before, after, part)


def test_no_mapping_ablation_removes_m_and_updates_f(tiny):
    method = build("two_stage_no_mapping", tiny)
    assert not list(method.model.mapping.parameters())
    before = copy.deepcopy(method.model.state_dict())
    method.stage_two(batch_of(tiny))
    after = method.model.state_dict()
    assert _changed(before, after, "features.") and not _changed(before, after, "classifier.")


def test_samples_without_mask_skip_stage_two(tiny):
    method = build("two_stage", tiny)
    before = copy.deepcopy(method.model.state_dict())
    assert method.stage_two(batch_of(tiny, has_mask=torch.zeros(8, dtype=torch.bool))) == {}
    assert not _changed(before, method.model.state_dict(), "")
    # only the masked samples enter the loss: the same step with garbage in the unmasked rows is identical
    flags = torch.tensor([True] * 4 + [False] * 4)
    a, b = build("two_stage", tiny), build("two_stage", tiny)
    clean = batch_of(tiny, has_mask=flags)
    noisy = Batch(torch.cat([clean.x[:4], torch.rand(4, *clean.x.shape[1:])]), clean.y, clean.mask, flags)
    a.stage_two(clean)
    b.stage_two(noisy)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


def test_stage_two_loss_is_the_papers_kl(tiny):
    method = build("two_stage", tiny)
    net = method.model.double()  # float64, so that the comparison is exact to 1e-10
    b = batch_of(tiny)
    b = Batch(b.x.double(), b.y, b.mask.double(), b.has_mask)
    with torch.no_grad():
        p = torch.softmax(net.features(b.x * b.mask).flatten(1), 1)  # fill 0: x' = x * e
        q = torch.softmax(net.mapping(net.features(b.x)).flatten(1), 1)
        expected = (p * (p / q).log()).sum(1).mean()
    assert method.stage_two(b)["align_loss"] == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("schedule, steps, order", [
    ("batch", 1, [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]),
    ("steps", 2, [(1, 0), (1, 1), (2, 0), (2, 1), (1, 2), (2, 2)]),
    ("epoch", 1, [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]),
])
def test_alternation_schedule(schedule, steps, order):
    sched = AlternationSchedule.from_hparams(TwoStageHParams(schedule=schedule, schedule_steps=steps), 3)
    assert sched.order() == order
    assert [sched.phase(s) for s in range(12)] == [st for st, _ in order] * 2


@pytest.mark.parametrize("schedule", ["batch", "epoch"])
def test_update_runs_stage_two_when_the_schedule_says(schedule, tiny):
    method = build("two_stage", tiny, schedule=schedule)
    logs = [method.update(batch_of(tiny)) for _ in range(3)]
    has_stage_two = ["align_loss" in entry for entry in logs]
    assert has_stage_two == ([True, True, True] if schedule == "batch" else [False, False, True])
    assert method.end_epoch() == {}


def test_stage_two_learning_rate_is_the_ratio_times_eta1(tiny):
    method = build("two_stage", tiny, lr=0.01, lr_ratio=10.0)
    assert method.optimizer.param_groups[0]["lr"] == 0.01
    assert method.stage_two_optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_rrr_penalty_passes_gradcheck_and_reaches_weights():
    """float64 gradcheck of the penalty as a function of the first convolution's weight (what double
    backpropagation trains; ``rrr_forward`` takes x detached, so a gradcheck in x would compare zeros). The weights
    are scaled up so that the penalty (about 1e-6 at the default initialisation) is well above gradcheck's
    tolerance, and the test asserts that it is."""
    torch.manual_seed(0)
    net = small_cnn((1, 16, 16), 2, SmallCNNOptions(widths=(2, 2), feature_blocks=2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4.0)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    wrong = (torch.rand(2, 1, 16, 16) > 0.5).double()
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    weight = conv.weight.detach().clone()
    del conv.weight  # a plain tensor attribute in its place: the penalty becomes a function of it

    def penalty_of(w):
        conv.weight = w
        return rrr_penalty(net, x, wrong)

    assert float(penalty_of(weight).detach().min()) > 1e-2
    assert torch.autograd.gradcheck(penalty_of, (weight.requires_grad_(),))
    (grad,) = torch.autograd.grad(penalty_of(weight).sum(), weight)
    assert grad.abs().sum() > 0


def test_rrr_penalty_ignores_gradients_on_the_right_reasons():
    net = small_cnn((1, 16, 16), 2)
    x = torch.rand(3, 1, 16, 16)
    assert rrr_penalty(net, x, torch.zeros_like(x)).sum().item() == 0.0
    assert rrr_penalty(net, x, torch.ones_like(x)).sum().item() > 0.0


def test_joint_adds_weighted_alignment(tiny):
    zero = build("joint", tiny, lam=0.0)
    std = build("standard", tiny)
    zero.update(batch_of(tiny))
    std.update(batch_of(tiny))
    for k, v in zero.model.state_dict().items():  # lam = 0 is plain cross-entropy
        assert torch.allclose(v, std.model.state_dict()[k], atol=1e-7)
    weighted = build("joint", tiny, lam=5.0)
    weighted.update(batch_of(tiny))
    assert any(not torch.allclose(v, weighted.model.state_dict()[k]) for k, v in std.model.state_dict().items())


def test_methods_take_the_mask_kind_they_need_and_convert_the_other():
    from explearn.methods.base import Batch, right_reasons, wrong_reasons

    right = torch.zeros(3, 1, 4, 4)
    right[:, :, 1:3, 1:3] = 1
    wrong = torch.zeros(3, 1, 4, 4)
    wrong[:, :, 0, 0] = 1
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0])
    # sample 0: both kinds; sample 1: only a right-reason mask; sample 2: only a wrong-reason mask
    batch = Batch(x, y, right, torch.tensor([True, True, False]), wrong, torch.tensor([True, False, True]))
    r, has_r = right_reasons(batch)
    assert has_r.tolist() == [True, True, True]
    assert torch.equal(r[:2], right[:2]) and torch.equal(r[2], 1 - wrong[2])  # converted only where missing
    w, has_w = wrong_reasons(batch)
    assert has_w.tolist() == [True, True, True]
    assert torch.equal(w[0], wrong[0]) and torch.equal(w[1], 1 - right[1]) and torch.equal(w[2], wrong[2])
    # without wrong-reason masks the wrong reasons are everything but the reason (RRR's original reading)
    plain = Batch(x, y, right, torch.tensor([True, False, True]))
    w, has_w = wrong_reasons(plain)
    assert torch.equal(w, 1 - right) and has_w.tolist() == [True, False, True]


def test_mask_methods_train_on_wrong_reason_masks_alone(tiny):
    from explearn import ExplanationDataset, Splits, train

    train_split = tiny.train
    only_wrong = ExplanationDataset(train_split.x, train_split.y, None, None, 2, None, "wrong-only",
                                    1 - train_split.mask, torch.ones(len(train_split), dtype=torch.bool))
    data = Splits(only_wrong, tiny.val, tiny.test)
    for method in ("two_stage", "joint", "rrr"):
        result = train(data, method, seed=0, epochs=1, quiet=True)
        assert 0.0 <= result.metrics["test/acc"] <= 1.0
        logs = result.history
        assert any(r["split"] == "train" and r["metric"] in ("align_loss", "rrr_penalty") and r["value"] > 0
                   for r in logs), method
