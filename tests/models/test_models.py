import pytest
import torch
from torch import nn

from explearn.errors import ConfigError
from explearn.models import MAPPINGS, ExplainableNet, SmallCNNOptions, check_model, make_mapping, run_parts, small_cnn


@pytest.mark.parametrize("kind", MAPPINGS.names())
def test_every_mapping_starts_as_the_identity(kind):
    m = make_mapping(kind, (4, 3, 3))
    z = torch.randn(5, 4, 3, 3)
    assert torch.allclose(m(z), z, atol=1e-6)
    if kind != "identity":
        assert sum(p.numel() for p in m.parameters()) > 0


def test_mapping_parameter_counts():
    assert sum(p.numel() for p in make_mapping("linear", (2, 2, 2)).parameters()) == 8 * 8 + 8
    assert sum(p.numel() for p in make_mapping("conv1x1", (2, 2, 2)).parameters()) == 2 * 2 + 2


@pytest.mark.parametrize("blocks, shape", [(3, (32, 4, 4)), (2, (32, 8, 8)), (1, (16, 16, 16))])
def test_small_cnn_split_point_sets_feature_shape(blocks, shape):
    net = small_cnn((1, 32, 32), 2, SmallCNNOptions(feature_blocks=blocks))
    out = run_parts(net, torch.rand(3, 1, 32, 32))
    assert out.features.shape == (3, *shape) and out.mapped.shape == out.features.shape
    assert out.logits.shape == (3, 2)
    assert torch.allclose(net(torch.rand(2, 1, 32, 32)).sum(), net(torch.rand(2, 1, 32, 32)).sum()) is not None


def test_small_cnn_rejects_bad_options():
    with pytest.raises(ConfigError, match="feature_blocks must lie in"):
        SmallCNNOptions(feature_blocks=4)
    with pytest.raises(ConfigError, match="unknown mapping layer 'conv1x'"):
        SmallCNNOptions(mapping="conv1x")


def test_models_without_three_parts_are_rejected_with_advice():
    with pytest.raises(ConfigError, match="lacks the submodule.*mapping, classifier.*ExplainableNet"):
        check_model(nn.Sequential(nn.Flatten()))
    net = ExplainableNet(nn.Flatten(), nn.Identity(), nn.Linear(4, 2))
    assert check_model(net) is net
