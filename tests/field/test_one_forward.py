"""One forward per batch, and every batch a data order can produce trains (issue 12, item 6; field case03)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explearn import ExplanationDataset, Splits, train
from explearn.config import from_dict
from explearn.methods import METHODS, Batch
from explearn.methods.base import wrong_reasons
from explearn.models import ExplainableNet, make_mapping, run_parts
from explearn.train import batch_bounds


def bn_model() -> ExplainableNet:
    torch.manual_seed(0)
    f = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    c = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return ExplainableNet(f, make_mapping("conv1x1", (4, 8, 8)), c)


def a_batch() -> Batch:
    torch.manual_seed(1)
    x = torch.randn(8, 1, 8, 8)
    mask = (torch.rand(8, 1, 8, 8) > 0.5).float()
    return Batch(x, torch.randint(0, 2, (8,)), mask, torch.ones(8, dtype=torch.bool))


def method(name: str, net: nn.Module):
    cls = METHODS.get(name)
    return cls(net, from_dict(cls.HParams, {}, name), 1)


@pytest.mark.parametrize("name", METHODS.names())
def test_batchnorm_statistics_advance_once_per_batch(name):
    # every registered method (new ones included): one train-mode forward per update, so the running mean after
    # one update from fresh statistics is 0.1 (the momentum) x the batch mean of what the method forwarded
    batch = a_batch()
    reference = bn_model()
    algo = method(name, bn_model())
    algo.model.train()
    torch.manual_seed(2)
    forwarded = algo.augment(batch)[0] if name == "counterexamples" else batch.x  # with its noisy copies
    with torch.no_grad():
        expect = 0.1 * reference.features[0](forwarded).mean(dim=(0, 2, 3))
    torch.manual_seed(2)  # the same noise again
    algo.update(batch)
    algo.end_epoch()
    bn = algo.model.features[1]
    assert int(bn.num_batches_tracked) == 1
    assert torch.allclose(bn.running_mean, expect, atol=1e-6)


def test_rrr_terms_come_from_one_forward_with_the_right_values():
    # the logged cross-entropy and penalty equal a hand computation on the model before the step
    torch.manual_seed(0)
    net = ExplainableNet(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh()), make_mapping("conv1x1", (3, 8, 8)),
                         nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 2)))
    batch = a_batch()
    x = batch.x.clone().requires_grad_(True)
    logits = net(x)
    ce = F.cross_entropy(logits, batch.y)
    (g,) = torch.autograd.grad(F.log_softmax(logits, 1).sum(), x)
    wrong, _ = wrong_reasons(batch)
    penalty = ((wrong * g) ** 2).flatten(1).sum(1).mean()
    cls = METHODS.get("rrr")
    logs = cls(net, cls.HParams(lam=3.0), 1).update(batch)
    assert logs["ce"] == pytest.approx(ce.item(), rel=1e-6)
    assert logs["rrr_penalty"] == pytest.approx(penalty.item(), rel=1e-5)


def test_dropout_draws_one_mask_per_batch():
    # RRR with dropout: the penalty differentiates the very forward whose cross-entropy is minimised, so the
    # random stream advances by one dropout draw per update, like label-only training
    def net():
        torch.manual_seed(0)
        return ExplainableNet(nn.Conv2d(1, 3, 3, padding=1), make_mapping("conv1x1", (3, 8, 8)),
                              nn.Sequential(nn.Dropout(0.5), nn.Flatten(), nn.Linear(3 * 64, 2)))

    batch = a_batch()
    states = []
    for name in ("standard", "rrr"):
        algo = method(name, net())
        algo.model.train()
        torch.manual_seed(5)
        algo.update(batch)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])


@pytest.mark.parametrize("n, size, expect", [
    (64, 32, [(0, 32), (32, 64)]),
    (65, 32, [(0, 32), (32, 65)]),    # a last batch of one joins the one before
    (33, 32, [(0, 33)]),
    (66, 32, [(0, 32), (32, 64), (64, 66)]),
    (1, 32, [(0, 1)]),
    (3, 1, [(0, 1), (1, 2), (2, 3)]),  # batch_size 1 is the user's choice: left as it is
])
def test_batch_bounds(n, size, expect):
    assert batch_bounds(n, size) == expect


def bn1d_data(n_train: int) -> Splits:
    torch.manual_seed(0)

    def split(n):
        x = torch.rand(n, 1, 8, 8)
        return ExplanationDataset(x, torch.arange(n) % 2, (torch.rand(n, 1, 8, 8) > 0.7).float())

    return Splits(split(n_train), split(6), split(6))


@pytest.mark.parametrize("name", METHODS.names())
def test_a_remainder_of_one_sample_trains_with_batchnorm(name):
    # 9 samples in batches of 4: the last batch would hold one sample, on which BatchNorm1d in train mode fails
    torch.manual_seed(0)
    f = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    c = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net = ExplainableNet(f, make_mapping("conv1x1", (4, 8, 8)), c)
    result = train(bn1d_data(9), name, 0, model=net, epochs=2, batch_size=4, select="last", quiet=True)
    assert int(net.classifier[2].num_batches_tracked) == 2 * 2  # two batches per epoch: 4 and 5 samples
    assert result.metrics["selected_epoch"] == 2


def test_stacked_training_cuts_batches_the_same_way(one_torch_thread):
    from explearn.vectorized import train_many
    from tests.test_vectorized import assert_same_run

    data = bn1d_data(9)
    for name in ("standard", "rrr", "two_stage"):
        many = train_many(data, [0, 1], name, model="mlp", epochs=2, batch_size=4)
        for seed, result in zip([0, 1], many):
            ref = train(data, name, seed, model="mlp", epochs=2, batch_size=4, quiet=True)
            assert_same_run(result, ref)


def test_run_parts_is_one_pass():
    net = bn_model().train()
    run_parts(net, a_batch().x)
    assert int(net.features[1].num_batches_tracked) == 1
