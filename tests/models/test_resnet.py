import copy
import math

import pytest
import torch

from explearn.errors import ConfigError
from explearn.methods import METHODS, Batch
from explearn.models import MODELS, SmallResNetOptions, run_parts, small_resnet


def tiny_options(**kw):
    return SmallResNetOptions(**{"widths": (4, 8, 8), **kw})


@pytest.mark.parametrize("shape, k", [((3, 72, 96), 3), ((1, 32, 32), 2), ((3, 17, 23), 5), ((2, 8, 8), 4)])
def test_output_shapes(shape, k):
    net = small_resnet(shape, k, tiny_options())
    out = run_parts(net, torch.rand(2, *shape))
    h, w = shape[1:]
    for _ in range(3):  # stem, stage 2 and stage 3 halve H and W (rounding up)
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    assert out.features.shape == (2, 8, h, w) and out.mapped.shape == out.features.shape
    assert out.logits.shape == (2, k)


def test_default_feature_map_at_dermoscopy_size():
    assert MODELS.get("small_resnet") == (small_resnet, SmallResNetOptions)
    net = small_resnet((3, 72, 96), 2)
    assert run_parts(net, torch.rand(1, 3, 72, 96)).features.shape == (1, 64, 9, 12)
    assert sum(p.numel() for p in net.mapping.parameters()) == 64 * 64 + 64  # conv1x1, not a 48M dense layer


@pytest.mark.parametrize("stages, shape", [(0, (4, 16, 16)), (1, (4, 16, 16)), (2, (8, 8, 8)), (3, (8, 4, 4)),
                                           (None, (8, 4, 4))])
def test_feature_stages_sets_where_f_ends(stages, shape):
    net = small_resnet((3, 32, 32), 2, tiny_options(feature_stages=stages, blocks=2))
    out = run_parts(net, torch.rand(2, 3, 32, 32))
    assert out.features.shape == (2, *shape) and out.logits.shape == (2, 2)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("mapping", ["conv1x1", "linear", "mlp", "identity"])
def test_mapping_starts_as_the_identity(norm, mapping):
    net = small_resnet((3, 16, 16), 2, tiny_options(norm=norm, mapping=mapping, mapping_hidden=8))
    net.train()
    z = net.features(torch.rand(4, 3, 16, 16))
    assert torch.allclose(net.mapping(z), z, atol=1e-6)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match=r"feature_stages must lie in \[0, 3\]"):
        SmallResNetOptions(feature_stages=4)
    with pytest.raises(ConfigError, match="bad widths"):
        SmallResNetOptions(widths=(16, 0))
    with pytest.raises(ConfigError, match="blocks must be >= 1"):
        SmallResNetOptions(blocks=0)
    with pytest.raises(ConfigError, match="unknown mapping layer 'conv1x'"):
        SmallResNetOptions(mapping="conv1x")
    with pytest.raises(ConfigError, match="norm must be"):
        SmallResNetOptions(norm="layer")


def _batch(n=6, shape=(3, 24, 32), k=3):
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, *shape[1:])
    mask[:, :, 4:12, 8:20] = 1
    return Batch(torch.rand(n, *shape, generator=gen), torch.arange(n) % k, mask, torch.ones(n, dtype=torch.bool))


def _changed(before, after, prefix):
    return [k for k in after if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_standard_step_is_finite_and_changes_every_part():
    cls = METHODS.get("standard")
    method = cls(small_resnet((3, 24, 32), 3, tiny_options()), cls.HParams(), batches_per_epoch=1)
    before = copy.deepcopy(method.model.state_dict())
    logs = method.update(_batch())
    assert all(math.isfinite(v) for v in logs.values()) and logs["grad_norm"] > 0
    for part in ("features.", "mapping.", "classifier."):
        assert _changed(before, method.model.state_dict(), part), part


def test_two_stage_step_two_changes_only_the_mapping_layer():
    cls = METHODS.get("two_stage")
    method = cls(small_resnet((3, 24, 32), 3, tiny_options()), cls.HParams(), batches_per_epoch=1)
    batch = _batch()
    method.stage_one(batch)  # so that the mapping is no longer exactly the identity's fixed point
    before = copy.deepcopy(method.model.state_dict())
    logs = method.stage_two(batch)
    after = method.model.state_dict()
    assert math.isfinite(logs["align_loss"]) and logs["align_loss"] > 0
    assert _changed(before, after, "mapping.")
    # BatchNorm running statistics included: the stage-2 target and prediction run f in eval mode
    assert not _changed(before, after, "features.") and not _changed(before, after, "classifier.")


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_small_resnet(name):
    torch.manual_seed(0)
    cls = METHODS.get(name)
    method = cls(small_resnet((3, 24, 32), 3, tiny_options()), cls.HParams(), batches_per_epoch=2)
    logs = {}
    for _ in range(2):
        logs.update(method.update(_batch()))
    logs.update(method.end_epoch())
    assert logs and all(math.isfinite(v) for v in logs.values())
    assert method.predict(_batch().x).shape == (6, 3)


def test_train_builds_small_resnet_by_name(tiny):
    from explearn import train

    result = train(tiny, "two_stage", model="small_resnet", model_options={"widths": "4,8", "feature_stages": "none"},
                   epochs=1, quiet=True, device="cpu")
    assert result.config["model"] == {"name": "small_resnet", "options": {
        "widths": [4, 8], "blocks": 1, "feature_stages": None, "mapping": "conv1x1", "mapping_hidden": 256,
        "mapping_depth": 1, "norm": "batch", "downsample": "pool"}}
    assert 0.0 <= result.metrics["test/acc"] <= 1.0


@pytest.mark.parametrize("downsample", ["pool", "stride"])
def test_both_downsampling_modes_halve_the_same_way(downsample):
    net = small_resnet((3, 72, 96), 2, SmallResNetOptions(downsample=downsample))
    assert net.features(torch.zeros(2, 3, 72, 96)).shape == (2, 64, 9, 12)
    strides = [m.stride for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.AvgPool2d)]
    if downsample == "pool":  # no strided conv: every pixel reaches the features through an average
        assert all(s == (1, 1) for s in strides) and len(pools) == 1 + 2 * 2
    else:
        assert (2, 2) in strides and not pools
