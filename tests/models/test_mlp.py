import copy

import pytest
import torch

from explearn import ConfigError, datasets, train
from explearn.losses import AlignmentLoss
from explearn.methods import METHODS, Batch
from explearn.models import MODELS, MLPOptions, make_mapping, mlp, run_parts


def test_default_mlp_is_the_ross_et_al_network():
    net = mlp((1, 8, 8), 3)
    out = run_parts(net, torch.rand(5, 1, 8, 8))
    assert out.features.shape == (5, 50) and out.mapped.shape == (5, 50) and out.logits.shape == (5, 3)
    assert torch.allclose(out.mapped, out.features)  # the mapping layer starts as the identity
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(net.features) == 64 * 50 + 50
    assert count(net.mapping) == 50 * 50 + 50
    assert count(net.classifier) == 50 * 30 + 30 + 30 * 3 + 3
    assert MODELS.get("mlp") == (mlp, MLPOptions)


def test_feature_layers_sets_where_f_ends():
    net = mlp((2, 4, 4), 2, MLPOptions(hidden=(7, 5, 3), feature_layers=2, mapping="mlp"))
    out = run_parts(net, torch.rand(4, 2, 4, 4))
    assert out.features.shape == (4, 5) and out.logits.shape == (4, 2)
    assert torch.allclose(out.mapped, out.features)


@pytest.mark.parametrize("kind", ["linear", "mlp", "identity"])
def test_vector_mappings_start_as_the_identity(kind):
    m = make_mapping(kind, (6,))
    z = torch.randn(4, 6)
    assert torch.allclose(m(z), z, atol=1e-6)


def test_conv1x1_on_vectors_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"'conv1x1' needs feature maps \(C, H, W\), got features of shape \(6,\)"):
        make_mapping("conv1x1", (6,))
    with pytest.raises(ConfigError, match="model 'mlp': mapping 'conv1x1' needs feature maps"):
        MLPOptions(mapping="conv1x1")
    with pytest.raises(ConfigError, match="feature_layers must lie in"):
        MLPOptions(feature_layers=3)


def test_spatial_alignment_axis_needs_a_map_but_flat_works_on_vectors():
    z = torch.randn(3, 5)
    assert AlignmentLoss("kl", "softmax", "flat")(z, z).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="use 'flat'"):
        AlignmentLoss("kl", "softmax", "spatial")(z, z)


def _changed(before, after, prefix):
    return [k for k in after if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_two_stage_on_the_mlp_changes_only_the_mapping_in_stage_two(tiny):
    torch.manual_seed(0)
    cls = METHODS.get("two_stage")
    method = cls(mlp(tiny.input_shape, 2), cls.HParams(), batches_per_epoch=1)
    d = tiny.train
    batch = Batch(d.x[:8], d.y[:8], d.mask[:8], d.has_mask[:8])
    before = copy.deepcopy(method.model.state_dict())
    logs = method.stage_two(batch)
    after = copy.deepcopy(method.model.state_dict())
    assert logs["align_loss"] > 0
    assert _changed(before, after, "mapping.")
    assert not _changed(before, after, "features.") and not _changed(before, after, "classifier.")
    method.stage_one(batch)
    for part in ("features.", "mapping.", "classifier."):
        assert _changed(after, method.model.state_dict(), part)


@pytest.mark.parametrize("method", ["standard", "two_stage", "two_stage_no_mapping", "joint", "rrr",
                                    "counterexamples"])
def test_vector_methods_train_the_mlp(method, tiny):
    result = train(tiny, method, model="mlp", model_options={"hidden": (20, 10)}, epochs=1, quiet=True)
    assert result.config["model"] == {"name": "mlp", "options": {
        "hidden": [20, 10], "feature_layers": 1, "mapping": "linear", "mapping_hidden": 256, "mapping_depth": 1}}
    assert 0.0 <= result.metrics["test/acc"] <= 1.0 and 0.0 <= result.metrics["test/align"] <= 1.0
    assert all(r["value"] == r["value"] for r in result.history if r["split"] == "train")  # no NaN logs


@pytest.mark.parametrize("method", ["rrr_gradcam", "hint"])
def test_grad_cam_methods_fail_clearly_on_the_mlp(method):
    data = datasets.triangles(n_train=8, seed=0, n_val=4, n_test=4, image_size=16)
    with pytest.raises(ConfigError, match=r"Grad-CAM needs a spatial feature map.*\(50,\).*small_cnn"):
        train(data, method, model="mlp", epochs=1, quiet=True)
