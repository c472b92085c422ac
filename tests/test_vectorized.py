"""Seed-vectorised training: ``train_many`` gives each seed the model, history, selection and metrics that
``train`` gives it.

With one torch thread on CPU we find the results bit-identical, not merely close: the stacked model runs each
convolution with the kernels, shapes and (channels-last) memory layouts ``train`` uses, linear layers as one
``baddbmm`` (the same numbers as ``F.linear`` per model), each model's loss reduced on its own, and Adam/SGD with
``torch.optim``'s expressions. With more threads the matrix products split their sums by thread, differently for
``baddbmm`` and ``F.linear`` and differently on different CPUs (a mapping weight 3.9e-5 apart after three epochs
on a 2-core Xeon), so every test here pins one thread, as sweeps do. The tests still assert ``allclose`` (rtol
1e-4, atol 1e-5) as the contract, since another platform (a GPU's grouped convolutions) may sum in another order;
the assertion messages report the largest difference.
"""

from __future__ import annotations

import math

import pytest
import torch

from explearn import ConfigError, DataError, datasets, train
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.vectorized import train_many, vectorizable, why_not_vectorizable
from explearn.methods.stacked_optim import StackedAdam, StackedSGD

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEDS = [0, 1, 2]
# 24 training samples: 3 batches per epoch. On CPU, convolutional models are trained one at a time unless
# models_at_once says otherwise: these tests stack every model.
RUN = {"epochs": 3, "batch_size": 8}
ALL = {"models_at_once": 100}


def assert_same_run(many, ref) -> None:
    """One result of train_many against train(): parameters, history, selection, predictions, metrics, config."""
    mine, theirs = many.model.state_dict(), ref.model.state_dict()
    assert mine.keys() == theirs.keys()
    for name in theirs:
        diff = (mine[name] - theirs[name]).abs().max().item()
        assert torch.allclose(mine[name], theirs[name], rtol=1e-4, atol=1e-5), f"{name}: max abs diff {diff:.3g}"
    assert [(r["epoch"], r["split"], r["metric"]) for r in many.history] == \
           [(r["epoch"], r["split"], r["metric"]) for r in ref.history]
    a = torch.tensor([r["value"] for r in many.history], dtype=torch.float64)
    b = torch.tensor([r["value"] for r in ref.history], dtype=torch.float64)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True), f"history: max diff {(a - b).abs().max():.3g}"
    assert many.metrics["selected_epoch"] == ref.metrics["selected_epoch"]
    assert many.predictions == ref.predictions
    for key, value in ref.metrics.items():
        if not key.startswith("time/"):
            assert many.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), key
    assert many.config == ref.config  # run ids and stored results are interchangeable
    assert many.protocols.keys() == ref.protocols.keys()
    for name, theirs in ref.protocols.items():
        mine = many.protocols[name]
        assert (mine["selected_epoch"], mine["tied_epochs"]) == (theirs["selected_epoch"], theirs["tied_epochs"])
        assert mine["metrics"].keys() == theirs["metrics"].keys()
        for key, value in theirs["metrics"].items():
            assert mine["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), (name, key)


@pytest.mark.parametrize("method, hparams", [
    ("standard", {}),
    ("two_stage", {}),
    ("two_stage", {"schedule": "epoch", "lr_ratio": 10, "axis": "spatial"}),
    ("two_stage", {"order": "stage2_first"}),
    ("two_stage", {"order": "stage1_first"}),
    ("rrr", {"lam": 10}),
])
def test_each_model_equals_its_own_train_run(tiny, method, hparams):
    results = train_many(tiny, SEEDS, method, hparams=hparams, **ALL, **RUN)
    assert len(results) == len(SEEDS)
    for seed, result in zip(SEEDS, results):
        assert_same_run(result, train(tiny, method, seed, hparams=hparams, quiet=True, **RUN))


@pytest.mark.parametrize("method", ["standard", "rrr"])
def test_selection_protocols_equal_train(method):
    data = datasets.triangles(n_train=24, seed=0, n_val=16, n_test=16, image_size=16, spurious_rate=0.9,
                              n_val_oracle=16, masks="both")
    results = train_many(data, [0, 1], method, **ALL, **RUN)
    for seed, result in zip([0, 1], results):
        assert set(result.protocols) == {"train_like", "oracle", "explanation"}
        assert_same_run(result, train(data, method, seed, quiet=True, **RUN))


@pytest.mark.parametrize("mapping", ["conv1x1", "mlp", "identity"])
def test_every_mapping_layer_kind(tiny, mapping):
    options = {"mapping": mapping, "mapping_hidden": 16}
    results = train_many(tiny, [3, 4], "two_stage", model_options=options, **ALL, **RUN)
    for seed, result in zip([3, 4], results):
        assert_same_run(result, train(tiny, "two_stage", seed, model_options=options, quiet=True, **RUN))


@pytest.mark.parametrize("method, hparams", [
    ("two_stage_no_mapping", {"schedule": "steps", "schedule_steps": 2}),
    ("standard", {"optimizer": "sgd", "weight_decay": 0.01, "lr": 0.05}),
])
def test_other_method_settings(tiny, method, hparams):
    results = train_many(tiny, [0, 1], method, hparams=hparams, select="last", curves="val", **ALL, **RUN)
    for seed, result in zip([0, 1], results):
        ref = train(tiny, method, seed, hparams=hparams, select="last", curves="val", quiet=True, **RUN)
        assert_same_run(result, ref)


def test_partial_masks_skip_stage_two_per_model():
    # a third of the samples have a mask and batches of 2: some models' batches have none (stage 2 skips them
    # alone, and their stage-2 optimiser does not count the step) while other models' have one
    data = datasets.triangles(n_train=24, seed=0, n_val=16, n_test=16, image_size=16, mask_fraction=0.34)
    run = {"epochs": 2, "batch_size": 2}
    results = train_many(data, SEEDS, "two_stage", **ALL, **run)
    for seed, result in zip(SEEDS, results):
        assert_same_run(result, train(data, "two_stage", seed, quiet=True, **run))


def test_one_training_set_per_seed(tiny):
    datas = [tiny, datasets.triangles(n_train=24, seed=1, n_val=16, n_test=32, image_size=16)]
    results = train_many(datas, [5, 6], "rrr", **ALL, **RUN)
    for data, seed, result in zip(datas, [5, 6], results):
        assert result.config["data"] == dict(data.info)
        assert_same_run(result, train(data, "rrr", seed, quiet=True, **RUN))


def test_a_single_seed(tiny):
    (result,) = train_many(tiny, [7], "two_stage", attributions=2, **RUN)
    ref = train(tiny, "two_stage", 7, attributions=2, quiet=True, **RUN)
    assert_same_run(result, ref)
    assert result.examples == ref.examples


def test_timings_are_shares_of_the_whole(tiny):
    results = train_many(tiny, [0, 1], "standard", epochs=1, curves="val", models_at_once=2)
    for result in results:
        assert result.metrics["time/vectorized"] == 2
        assert 0 < result.metrics["time/epoch_s"] <= result.metrics["time/total_s"]


def test_groups_of_models_give_the_same_results(tiny):
    # the default on CPU for a convolutional model: one at a time; any grouping trains the same models
    default = train_many(tiny, SEEDS, "two_stage", **RUN)
    grouped = train_many(tiny, SEEDS, "two_stage", models_at_once=2, **RUN)
    assert [r.metrics["time/vectorized"] for r in default] == [1, 1, 1]
    assert [r.metrics["time/vectorized"] for r in grouped] == [2, 2, 1]
    for a, b in zip(default, grouped):
        assert_same_run(a, b)


def decoy_like(n: int, seed: int) -> Splits:
    """Random 28x28 images with a 4x4 corner patch as the wrong reason (the shape of Decoy-MNIST)."""
    g = torch.Generator().manual_seed(seed)

    def split(m: int, name: str) -> ExplanationDataset:
        x = torch.rand(m, 1, 28, 28, generator=g)
        y = torch.randint(0, 3, (m,), generator=g)
        wrong = torch.zeros(m, 1, 28, 28)
        wrong[:, :, :4, :4] = 1.0
        x[:, :, :4, :4] = y.view(-1, 1, 1, 1) / 3.0  # the decoy gives the label away
        return ExplanationDataset(x, y, n_classes=3, wrong_mask=wrong, name=f"decoy_like/{name}")

    return Splits(split(n, "train"), split(16, "val"), split(16, "test"), info={"dataset": "decoy_like"})


@pytest.mark.parametrize("method", ["rrr", "two_stage"])
def test_mlp_on_decoy_like_data(method):
    data = decoy_like(24, seed=0)
    results = train_many(data, SEEDS, method, model="mlp", **RUN)
    for seed, result in zip(SEEDS, results):
        assert_same_run(result, train(data, method, seed, model="mlp", quiet=True, **RUN))


@pytest.mark.parametrize("method", ["rrr", "two_stage"])
def test_the_gpu_code_path_on_cpu(tiny, monkeypatch, method):
    # on a GPU, convolutions run as one grouped convolution and per-model losses under vmap: the same models up to
    # float rounding (checked here on CPU, where that path is not the default)
    from explearn.methods import stacking
    from explearn.vectorized import stacked

    monkeypatch.setattr(stacked.StackedConv2d, "grouped", True)
    monkeypatch.setattr(stacking, "_vmap", lambda first: True)
    results = train_many(tiny, SEEDS, method, **ALL, **RUN)
    for seed, result in zip(SEEDS, results):
        assert_same_run(result, train(tiny, method, seed, quiet=True, **RUN))


def test_batchnorm_models_are_refused(tiny):
    assert not vectorizable("standard", "small_resnet")
    assert "BatchNorm" in why_not_vectorizable("standard", "small_resnet")
    with pytest.raises(ConfigError, match="BatchNorm"):
        train_many(tiny, SEEDS, "standard", model="small_resnet", epochs=1)


def test_methods_without_a_vectorised_form_are_refused(tiny):
    assert vectorizable("two_stage") and vectorizable("rrr", "mlp")
    assert not vectorizable("hint")
    with pytest.raises(ConfigError, match="'hint' has no vectorised implementation.*train\\(\\)"):
        train_many(tiny, SEEDS, "hint", epochs=1)
    with pytest.raises(ConfigError, match="unknown setting"):
        train_many(tiny, SEEDS, "two_stage", hparams={"lr_ration": 2}, epochs=1)


def test_datasets_of_different_layouts_are_refused(tiny):
    other = datasets.triangles(n_train=24, seed=1, n_val=8, n_test=32, image_size=16)
    with pytest.raises(DataError, match="split sizes|splits"):
        train_many([tiny, other], [0, 1], "standard", epochs=1)
    with pytest.raises(ConfigError, match="2 datasets for 3 seeds"):
        train_many([tiny, tiny], SEEDS, "standard", epochs=1)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_stacked_optimizers_update_each_model_as_torch_optim(optimizer):
    # four models, the second and third of which skip some steps: each slice must follow its own torch.optim
    torch.manual_seed(0)
    shapes = [(5, 3), (7,)]
    init = [torch.randn(4, *shape) for shape in shapes]
    stacked = [t.clone().requires_grad_(True) for t in init]
    opt = (StackedAdam if optimizer == "adam" else StackedSGD)(stacked, 0.01, 0.1, 4)
    singles = [[t[i].clone().requires_grad_(True) for t in init] for i in range(4)]
    kind, extra = (torch.optim.Adam, {}) if optimizer == "adam" else (torch.optim.SGD, {"momentum": 0.9})
    refs = [kind(params, lr=0.01, weight_decay=0.1, **extra) for params in singles]
    for step in range(6):
        grads = [torch.randn(4, *shape) for shape in shapes]
        active = torch.tensor([True, step % 2 == 0, step > 2, True])
        opt.step(grads, active)
        for i in range(4):
            if active[i]:
                for p, g in zip(singles[i], grads):
                    p.grad = g[i].clone()
                refs[i].step()
    for i in range(4):
        for p, q in zip(stacked, singles[i]):
            assert torch.equal(p[i], q)
    assert opt.steps == [6, 3, 3, 6]
    assert math.isfinite(float(stacked[0].detach().sum()))
