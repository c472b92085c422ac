"""The order of the two stages within a batch (issue 13): stage 2 first, sharing one forward of f(x)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from explearn.config import from_dict
from explearn.errors import ConfigError
from explearn.losses.alignment import AlignmentLoss
from explearn.methods import METHODS, Batch
from explearn.methods.two_stage import alignment_target
from explearn.models import SmallCNNOptions, small_cnn


def batch_of(tiny, n=8, has_mask=None):
    ds = tiny.train
    return Batch(ds.x[:n], ds.y[:n], ds.mask[:n], ds.has_mask[:n] if has_mask is None else has_mask)


def two_stage(tiny, **hp):
    torch.manual_seed(0)
    model = small_cnn(tiny.input_shape, tiny.n_classes, SmallCNNOptions(mapping="conv1x1"))
    cls = METHODS.get("two_stage")
    return cls(model, from_dict(cls.HParams, hp, "two_stage"), batches_per_epoch=3)


def test_stage2_first_is_stage_two_on_f_then_stage_one_with_the_new_m(tiny):
    """The right values by hand: Adam on m with the misalignment of m(f(x)) (f in train mode, detached) against
    f(x') (eval mode), then Adam on everything with the cross-entropy of c(m'(f(x))) on the same forward of f."""
    method = two_stage(tiny, order="stage2_first")
    ref = copy.deepcopy(method.model)
    batch = batch_of(tiny, has_mask=torch.tensor([True, False] * 4))
    # by hand
    keep = batch.has_mask
    opt_m = torch.optim.Adam(ref.mapping.parameters(), lr=1e-3)
    opt_all = torch.optim.Adam(ref.parameters(), lr=1e-3)
    z = ref.features(batch.x)
    target = alignment_target(ref, batch.x[keep], batch.mask[keep], 0.0)
    align = AlignmentLoss("kl", "softmax", "flat")(ref.mapping(z.detach()[keep]), target)
    opt_m.zero_grad()
    align.backward()
    opt_m.step()
    ce = F.cross_entropy(ref.classifier(ref.mapping(z)), batch.y)
    opt_all.zero_grad()
    ce.backward()
    opt_all.step()
    # the method
    logs = method.update(batch)
    assert logs["align_loss"] == pytest.approx(align.item(), rel=1e-6)
    assert logs["ce"] == pytest.approx(ce.item(), rel=1e-6)
    for (name, p), q in zip(method.model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name


def test_stage2_first_runs_f_once_on_x(tiny):
    calls = {"stage1_first": 0, "stage2_first": 0}
    for order in calls:
        method = two_stage(tiny, order=order)
        method.model.features.register_forward_hook(lambda *_: calls.__setitem__(order, calls[order] + 1))
        method.update(batch_of(tiny))
    assert calls == {"stage1_first": 3, "stage2_first": 2}  # f(x) twice or once, and f(x') for the target


def test_stage2_first_needs_the_per_batch_schedule_and_a_mapping_layer(tiny):
    with pytest.raises(ConfigError, match="order='stage2_first' shares one forward.*schedule='epoch'"):
        two_stage(tiny, order="stage2_first", schedule="epoch")
    cls = METHODS.get("two_stage_no_mapping")
    with pytest.raises(ConfigError, match="unknown setting 'order'"):
        from_dict(cls.HParams, {"order": "stage2_first"}, "method 'two_stage_no_mapping'")
