"""The constrained two-stage variant: the Lagrangian step, the multiplier's dual ascent, which parts the
constraint reaches, and its settings."""

import copy

import pytest
import torch

from explearn.config import from_dict
from explearn.errors import ConfigError
from explearn.methods import METHODS, Batch
from explearn.methods.two_stage import alignment_target, mapped_features
from explearn.models import small_cnn


def build(tiny, **hp):
    torch.manual_seed(0)
    cls = METHODS.get("two_stage_constrained")
    return cls(small_cnn(tiny.input_shape, tiny.n_classes), cls.HParams(**hp), batches_per_epoch=3)


def batch_of(tiny, n=8, has_mask=None):
    ds = tiny.train
    return Batch(ds.x[:n], ds.y[:n], ds.mask[:n], ds.has_mask[:n] if has_mask is None else has_mask)


def misalignment(method, batch):
    with torch.no_grad():
        target = alignment_target(method.model, batch.x, batch.mask, 0.0)
        return float(method.align(mapped_features(method.model, batch.x), target))


def test_first_step_raises_the_multiplier_by_dual_lr_times_the_relative_violation(tiny):
    method = build(tiny, epsilon=1e-5, dual_lr=0.5)
    batch = batch_of(tiny)
    expected = max(0.0, 0.5 * (misalignment(method, batch) / 1e-5 - 1.0))  # lambda_0 = 0, projected ascent
    logs = method.update(batch)
    assert method.multiplier == pytest.approx(expected, rel=1e-5)
    assert logs["multiplier"] == method.multiplier
    assert logs["slack"] == pytest.approx(1e-5 - logs["align_loss"])
    assert logs["align_loss"] == pytest.approx(misalignment(build(tiny, epsilon=1e-5), batch), rel=1e-5)


def test_a_loose_bound_keeps_the_multiplier_at_zero_and_equals_standard(tiny):
    """With the constraint met from the start lambda stays 0, so the weights follow plain label-loss steps."""
    method = build(tiny, epsilon=10.0)
    standard = METHODS.get("standard")
    torch.manual_seed(0)
    plain = standard(small_cnn(tiny.input_shape, tiny.n_classes), standard.HParams(), batches_per_epoch=3)
    for _ in range(3):
        logs = method.update(batch_of(tiny))
        plain.update(batch_of(tiny))
    assert method.multiplier == 0.0 and logs["slack"] > 0
    for (name, a), b in zip(method.model.state_dict().items(), plain.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("constraint_on, reached", [("mapping", {"mapping."}),
                                                     ("features_and_mapping", {"mapping.", "features."})])
def test_the_constraint_reaches_only_the_parts_it_names(tiny, constraint_on, reached):
    method = build(tiny, constraint_on=constraint_on)
    state = method.problem.compute_cmp_state(batch_of(tiny))
    (violation,) = [s.violation for s in state.observed_constraints.values()]
    method.model.zero_grad(set_to_none=True)
    violation.sum().backward()
    with_grad = {name.split(".")[0] + "." for name, p in method.model.named_parameters()
                 if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    assert with_grad == reached


def test_a_batch_without_masks_is_a_label_loss_step_and_leaves_the_multiplier(tiny):
    method = build(tiny, epsilon=1e-6)
    method.update(batch_of(tiny))
    multiplier = method.multiplier
    assert multiplier > 0
    before = copy.deepcopy(method.model.state_dict())
    logs = method.update(batch_of(tiny, has_mask=torch.zeros(8, dtype=torch.bool)))
    assert "slack" not in logs and "align_loss" not in logs
    assert method.multiplier == multiplier
    assert any(not torch.equal(before[k], v) for k, v in method.model.state_dict().items())


def test_a_large_multiplier_lowers_the_misalignment_more_than_label_loss_alone(tiny):
    """The Lagrangian term trains m towards the target: with features_and_mapping and a tight bound, the
    misalignment after a few steps is below that of the same steps without the constraint."""
    batch = batch_of(tiny, n=24)
    tight, loose = build(tiny, epsilon=1e-7, constraint_on="features_and_mapping"), build(tiny, epsilon=10.0)
    for _ in range(15):
        tight.update(batch)
        loose.update(batch)
    assert tight.multiplier > 0
    assert misalignment(tight, batch) < misalignment(loose, batch)


@pytest.mark.parametrize("bad", [{"epsilon": 0.0}, {"epsilon": -1.0}, {"epsilon": 1e-30}, {"dual_lr": 0.0},
                                 {"constraint_on": "classifier"}, {"dual_lr": 1e39}])
def test_bad_settings_raise(bad):
    """As every method's settings are read (specs, CLI, train(hparams=...)): unknown choices and bad values stop."""
    with pytest.raises(ConfigError):
        from_dict(METHODS.get("two_stage_constrained").HParams, bad, "hparams")


def test_the_violation_is_the_relative_misalignment_and_passes_gradcheck(tiny):
    """The observed violation equals misalignment / epsilon - 1 computed by hand (stage 2's target and prediction);
    float64 gradcheck of that function of the prediction m(f(x))."""
    method = build(tiny, epsilon=0.01)
    batch = batch_of(tiny, n=4)
    state = method.problem.compute_cmp_state(batch)
    (constraint,) = state.observed_constraints.values()
    assert float(constraint.violation.detach()) == pytest.approx(misalignment(method, batch) / 0.01 - 1.0, rel=1e-5)

    with torch.no_grad():
        target = alignment_target(method.model, batch.x, batch.mask, 0.0).double()[:2, :2]
        prediction = mapped_features(method.model, batch.x).double()[:2, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: method.align(p, target) / 0.01 - 1.0, (prediction,))


def test_divergence_advice_names_the_methods_own_settings():
    from explearn.train import divergence_advice

    assert divergence_advice("two_stage_constrained") == (
        "lower the learning rate (--hp lr=...), or lower dual_lr, or raise epsilon")
    assert divergence_advice("standard") == "lower the learning rate (--hp lr=...)"
    assert divergence_advice("two_stage") == "lower the learning rate (--hp lr=...), or lower lr_ratio"
    assert "lower lam" in divergence_advice("energy")
