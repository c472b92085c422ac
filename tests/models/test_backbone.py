import copy
import io
import math

import pytest
import torch
from torch import nn

from explearn.errors import ConfigError
from explearn.methods import METHODS, Batch
from explearn.models import from_backbone, from_parts, run_parts

SHAPE = (3, 16, 16)


class Block(nn.Module):
    """A torchvision-style basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    """The layout of torchvision's ResNet, a few channels wide."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(Block(4, 4, 1))
        self.layer2 = nn.Sequential(Block(4, 8, 2))
        self.layer3 = nn.Sequential(Block(8, 8, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def trained_stats(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and norm weights, so that a wrong split would show in the logits."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _batch(n=4, k=3):
    mask = torch.zeros(n, 1, *SHAPE[1:])
    mask[:, :, 2:9, 3:12] = 1
    return Batch(torch.rand(n, *SHAPE), torch.arange(n) % k, mask, torch.ones(n, dtype=torch.bool))


def test_split_model_gives_the_networks_logits():
    net = trained_stats(TinyResNet())
    model = from_backbone(net, "layer2", SHAPE).eval()
    x = torch.rand(5, *SHAPE)
    assert torch.equal(model(x), net(x))  # the identity conv1x1 adds exact zeros
    out = run_parts(model, x)
    assert out.features.shape == net.layer2(net.layer1(net.relu(net.bn1(net.conv1(x))))).shape == (5, 8, 8, 8)
    assert torch.equal(out.mapped, out.features)


def test_split_model_trains_the_users_own_parameters():
    net = TinyResNet()
    model = from_backbone(net, "layer2", SHAPE)
    mine = {p.data_ptr() for p in net.parameters()}
    split = {p.data_ptr() for p in model.features.parameters()} | {p.data_ptr() for p in model.classifier.parameters()}
    assert split == mine
    assert {id(p) for p in model.parameters()} == {id(p) for p in net.parameters()} | {
        id(p) for p in model.mapping.parameters()}
    assert model.classifier.fc is net.fc and model.features.layer2 is net.layer2
    with torch.no_grad():
        model.classifier.fc.weight.add_(1.0)
    assert torch.equal(net.fc.weight, model.classifier.fc.weight)


def test_split_model_copies_and_saves():
    model = from_backbone(trained_stats(TinyResNet()), "layer1", SHAPE)
    twin = copy.deepcopy(model)
    x = torch.rand(2, *SHAPE)
    assert torch.equal(twin.eval()(x), model.eval()(x))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    fresh = from_backbone(TinyResNet(), "layer1", SHAPE)
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    assert torch.equal(fresh.eval()(x), model(x))


def test_cut_inside_a_residual_block_names_the_problem_and_the_block():
    with pytest.raises(ConfigError, match=r"'layer2.0.conv1' is not a cut point.*skip connection.*'layer2.0'"):
        from_backbone(TinyResNet(), "layer2.0.conv1", SHAPE)


def test_unknown_layer_suggests_close_names():
    with pytest.raises(ConfigError, match=r"no submodule 'layr2'; did you mean 'layer2'"):
        from_backbone(TinyResNet(), "layr2", SHAPE)


def test_layer_called_twice_is_rejected():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))

        def forward(self, x):
            return self.head(self.conv(self.conv(x)))

    with pytest.raises(ConfigError, match="'conv' is called 2 times"):
        from_backbone(Twice(), "conv", SHAPE)


def test_values_computed_from_parameters_alone_may_cross_the_cut():
    class Tempered(nn.Module):
        def __init__(self):
            super().__init__()
            self.log_t = nn.Parameter(torch.tensor(0.3))
            self.body = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

        def forward(self, x):
            t = self.log_t.exp()  # computed before the cut, used after it, but independent of x
            return self.head(self.body(x)) / t

    net = Tempered()
    model = from_backbone(net, "body", SHAPE)
    x = torch.rand(2, *SHAPE)
    assert torch.equal(model(x), net(x))
    assert model.classifier.log_t is net.log_t and sum(p is net.log_t for p in model.parameters()) == 1


def test_untraceable_model_points_to_from_parts():
    class Branchy(TinyResNet):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                return super().forward(x)
            return super().forward(-x)

    with pytest.raises(ConfigError, match="cannot trace.*from_parts"):
        from_backbone(Branchy(), "layer2", SHAPE)


def test_vector_features_need_a_vector_mapping():
    assert from_backbone(TinyResNet(), "avgpool", SHAPE).features(torch.rand(1, *SHAPE)).shape == (1, 8, 1, 1)
    with pytest.raises(ConfigError, match=r"'conv1x1' needs feature maps.*\(3,\).*Cut the network earlier"):
        from_backbone(TinyResNet(), "fc", SHAPE)  # logits (3,) per sample: no map
    model = from_backbone(TinyResNet(), "fc", SHAPE, mapping="linear")
    assert model(torch.rand(2, *SHAPE)).shape == (2, 3)


def test_mapping_options_are_checked():
    with pytest.raises(ConfigError, match="unknown mapping option 'hiden'.*'hidden'"):
        from_backbone(TinyResNet(), "layer2", SHAPE, mapping="mlp", hiden=8)
    model = from_backbone(TinyResNet(), "layer2", SHAPE, mapping="mlp", hidden=8, depth=2)
    z = model.features(torch.rand(2, *SHAPE))
    assert torch.allclose(model.mapping(z), z)


@pytest.mark.parametrize("layer, f_len", [("1", 2), ("3", 4)])
def test_sequential_splits_by_position(layer, f_len):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2))
    model = from_backbone(net, layer, SHAPE)
    assert isinstance(model.features, nn.Sequential) and len(model.features) == f_len
    assert len(model.classifier) == 7 - f_len and model.features[0] is net[0]
    x = torch.rand(2, *SHAPE)
    assert torch.equal(model(x), net(x))


def test_nested_sequential_splits_recursively_and_keeps_names():
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                             nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()))
    net.add_module("head", nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 2)))
    model = from_backbone(net, "features.2", SHAPE)
    assert run_parts(model, torch.rand(1, *SHAPE)).features.shape == (1, 4, 8, 8)
    assert "features.features.0.weight" in model.state_dict()
    assert "classifier.features.3.weight" in model.state_dict() and "classifier.head.1.weight" in model.state_dict()
    x = torch.rand(2, *SHAPE)
    assert torch.equal(model(x), net(x))


def test_from_parts_infers_the_feature_shape_and_restores_modes():
    f = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.BatchNorm2d(5), nn.ReLU())
    c = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
    f.train()
    c.eval()
    model = from_parts(f, c, SHAPE)
    assert f.training and f[1].training and not c.training
    assert int(f[1].num_batches_tracked) == 0  # the dummy forward left the statistics alone
    assert run_parts(model, torch.rand(2, *SHAPE)).features.shape == (2, 5, 8, 8)
    with pytest.raises(ConfigError, match=r"classifier c fails on the features f\(x\) of shape \(5, 8, 8\)"):
        from_parts(f, nn.Linear(7, 2), SHAPE)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_the_split_model(name):
    torch.manual_seed(0)
    net = TinyResNet()
    model = from_backbone(net, "layer2", SHAPE)
    cls = METHODS.get(name)
    method = cls(model, cls.HParams(), batches_per_epoch=2)
    before = copy.deepcopy(net.state_dict())
    logs = {}
    for _ in range(2):
        logs.update(method.update(_batch()))
    logs.update(method.end_epoch())
    assert logs and all(math.isfinite(v) for v in logs.values())
    assert any(not torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the user's network learnt
    assert method.predict(_batch().x).shape == (4, 3)
