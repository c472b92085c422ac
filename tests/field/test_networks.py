"""User networks as people write them (issue 12, item 5): in-place activations at the cut, networks that return
more than logits, code that assumes the default memory layout, and images too small for a registered model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explearn import ExplanationDataset, Splits, datasets, train
from explearn.errors import ConfigError
from explearn.explain.gradcam import grad_cam
from explearn.losses.alignment import AlignmentLoss
from explearn.methods.two_stage import alignment_target, mapped_features
from explearn.models import ExplainableNet, from_backbone, run_parts
from explearn.models.mapping import make_mapping

SHAPE = (1, 8, 8)


def sequential(inplace: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def pair(make):
    """The same network twice, once with in-place operations and once without, with equal weights."""
    torch.manual_seed(0)
    plain = make(False)
    other = make(True)
    other.load_state_dict(plain.state_dict())
    return plain, other


def test_inplace_relu_after_the_cut_changes_nothing():
    # jacobgil/pytorch-grad-cam#147 (field case01): the cut after conv "2" puts ReLU(inplace=True) first in c
    plain, inplace = pair(sequential)
    a, b = from_backbone(plain, "2", SHAPE), from_backbone(inplace, "2", SHAPE)
    x, y = torch.randn(5, *SHAPE), torch.tensor([0, 1, 0, 1, 1])
    oa, ob = run_parts(a, x), run_parts(b, x)
    assert oa.mapped.min() < 0  # the map has negative values, which an in-place ReLU would have zeroed
    assert torch.equal(oa.mapped, ob.mapped) and torch.equal(oa.logits, ob.logits)
    assert torch.equal(grad_cam(a, x, y), grad_cam(b, x, y))
    # the two-stage alignment loss sees the same features
    loss = AlignmentLoss("kl", "softmax", "flat")
    mask = torch.ones_like(x)
    assert torch.equal(loss(mapped_features(a, x), alignment_target(a, x, mask, 0.0)),
                       loss(mapped_features(b, x), alignment_target(b, x, mask, 0.0)))
    assert not any(getattr(m, "inplace", False) for m in b.modules())


class Functional(nn.Module):
    """In-place code in a traced forward: F.relu(inplace=True), x.relu_(), x += ... right after the cut."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv1(x)
        if self.inplace:
            x = F.relu(x, inplace=True)
            x = self.conv2(x)
            x += 0.5
            x.relu_()
        else:
            x = F.relu(x)
            x = self.conv2(x)
            x = x + 0.5
            x = x.relu()
        return self.fc(x.mean((2, 3)))


def test_inplace_functions_in_a_traced_network_are_rewritten():
    plain, inplace = pair(Functional)
    a, b = from_backbone(plain, "conv2", SHAPE), from_backbone(inplace, "conv2", SHAPE)
    x = torch.randn(4, *SHAPE)
    oa, ob = run_parts(a, x), run_parts(b, x)
    assert torch.equal(oa.mapped, ob.mapped) and torch.equal(oa.logits, ob.logits)
    assert oa.mapped.min() < -0.5  # "+= 0.5" and "relu_" would both have changed it
    assert torch.equal(grad_cam(a, x), grad_cam(b, x))


class HiddenInplace(nn.Module):
    """A head whose own forward rectifies its input in place: no flag or graph explearn can rewrite."""

    def forward(self, z):
        return z.relu_().mean((2, 3))


def test_inplace_code_explearn_cannot_rewrite_is_an_error():
    torch.manual_seed(0)
    net = ExplainableNet(nn.Conv2d(1, 3, 3, padding=1), make_mapping("conv1x1", (3, 8, 8)), HiddenInplace())
    with pytest.raises(ConfigError, match="modifies its input m\\(f\\(x\\)\\) in place"):
        run_parts(net, torch.randn(2, *SHAPE))
    with pytest.raises(ConfigError, match="in place"):
        grad_cam(net, torch.randn(2, *SHAPE))


class TupleNet(nn.Module):
    """Logits and an auxiliary output, as many detection/segmentation and Inception-style networks return."""

    def __init__(self, container: str = "tuple") -> None:
        super().__init__()
        self.container = container
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        logits = self.fc(self.conv(x).relu().mean((2, 3)))
        if self.container == "dict":
            return {"logits": logits, "aux": logits.detach() * 0}
        return logits, logits.detach() * 0


def test_a_network_returning_a_tuple_is_refused_with_what_it_returned():
    with pytest.raises(ConfigError, match=r"returns a tuple of 2 \(\[0\] a tensor of shape \(2, 4\).*output="):
        from_backbone(TupleNet(), "conv", SHAPE)


class AuxHead(nn.Module):
    """Inception-style: logits in eval mode, (logits, auxiliary logits) in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, z):
        logits = self.fc(z.mean((2, 3)))
        return (logits, logits * 0) if self.training else logits


def test_outputs_only_in_train_mode_are_caught_too():
    # training would hit the tuple first, in a method's update, with an unrelated error
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), AuxHead())
    with pytest.raises(ConfigError, match=r"returns a tuple of 2 .* in train mode"):
        from_backbone(net, "1", SHAPE)
    model = from_backbone(net, "1", SHAPE, output=0)
    x = torch.randn(3, *SHAPE)
    assert torch.equal(model.train()(x), model.eval()(x))


@pytest.mark.parametrize("container, output", [("tuple", 0), ("dict", "logits")])
def test_output_selects_the_logits_and_the_model_trains(container, output):
    torch.manual_seed(0)
    net = TupleNet(container)
    model = from_backbone(net, "conv", (1, 16, 16), output=output)
    x = torch.randn(4, 1, 16, 16)
    ref = net(x)
    ref = ref[0] if container == "tuple" else ref["logits"]
    assert torch.equal(model(x), ref)
    data = datasets.triangles(n_train=12, seed=0, n_val=8, n_test=8, image_size=16, n_classes=4)
    result = train(data, "rrr", 0, model=model, epochs=1, batch_size=4, quiet=True)
    assert result.metrics["selected_epoch"] in (0, 1)
    with pytest.raises(ConfigError, match="has no part 'scores'"):
        from_backbone(TupleNet(container), "conv", SHAPE, output="scores")


class ViewNet(nn.Module):
    """Written for the default memory layout: ``view`` after the convolutions (fails on a channels-last map)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.mapping = nn.Identity()
        self.classifier = Flattener()


class Flattener(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4 * 16 * 16, 2)

    def forward(self, z):
        return self.fc(z.view(z.size(0), -1))


def test_a_network_that_assumes_the_default_layout_trains():
    data = datasets.triangles(n_train=12, seed=0, n_val=8, n_test=8, image_size=16)
    torch.manual_seed(0)
    net = ViewNet()
    before = net.classifier.fc.weight.detach().clone()
    for method in ("standard", "two_stage", "rrr", "rrr_gradcam"):
        train(data, method, 0, model=net, epochs=1, batch_size=4, quiet=True)
    assert not torch.equal(before, net.classifier.fc.weight)
    # the same network split by from_backbone (traced), as `explearn fit --backbone` does
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), Flattener())
    train(data, "hint", 0, model=from_backbone(plain, "1", (1, 16, 16)), epochs=1, batch_size=4, quiet=True)


def test_images_too_small_for_the_model_are_a_clear_error(monkeypatch):
    x = torch.rand(6, 1, 4, 4)
    ds = ExplanationDataset(x, torch.tensor([0, 1] * 3), torch.ones_like(x))
    data = Splits(ds, ds, ds)
    with pytest.raises(ConfigError, match=r"'small_cnn'.*at least 8x8 pixels, got 4x4; use 2 block\(s\) \(--model-opt widths=16,32 --model-opt feature_blocks=2\)"):
        train(data, "standard", 0, epochs=1, quiet=True)
    # fewer blocks, as the message says, fit
    result = train(data, "standard", 0, model_options={"widths": [16, 32], "feature_blocks": 2}, epochs=1, quiet=True)
    assert result.metrics["selected_epoch"] in (0, 1)
    # any registered model that fails on the input shape is reported as such, not as torch's traceback
    from explearn.models import MODELS, SmallCNNOptions

    def fragile(input_shape, n_classes, options):
        return torch.nn.functional.max_pool2d(torch.zeros(1, *input_shape), 8)

    monkeypatch.setitem(MODELS._items, "fragile", (fragile, SmallCNNOptions))
    with pytest.raises(ConfigError, match=r"model 'fragile' cannot take images of shape \(C, H, W\) = \(1, 4, 4\)"):
        train(data, "standard", 0, model="fragile", epochs=1, quiet=True)


AUX_NETWORK = '''
import torch
from torch import nn


class Net(nn.Module):
    """Returns (logits, auxiliary logits), as Inception and many detection heads do."""

    def __init__(self, n_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x):
        logits = self.fc(self.body(x).mean((2, 3)))
        return {"logits": logits, "aux": logits * 0.5}


def build(n_classes):
    return Net(n_classes)
'''


def test_fit_and_predict_a_network_with_several_outputs(tmp_path, monkeypatch, capsys):
    from explearn.cli import main
    from tests.test_practice import _make_folder

    root = _make_folder(tmp_path / "d", n=12, size=(16, 16))
    (tmp_path / "explearn_aux_nets.py").write_text(AUX_NETWORK)
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "m.pt"
    common = ["--backbone", "explearn_aux_nets:build", "--feature-layer", "body", "--epochs", "1", "--quiet"]
    assert main(["fit", str(root), *common, "--out", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "returns a dict with keys 'logits', 'aux'" in err and "--backbone-output" in err and not ckpt.exists()
    assert main(["fit", str(root), *common, "--backbone-output", "logits", "--out", str(ckpt)]) == 0
    capsys.readouterr()
    # the checkpoint remembers where the logits are
    assert main(["predict", str(ckpt), str(root / "images"), "--backbone", "explearn_aux_nets:build"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 13
    assert main(["fit", str(root), "--backbone-output", "logits"]) == 2
    assert "--backbone-output goes with --backbone" in capsys.readouterr().err


class MNISTStyle(nn.Module):
    """PyTorch's MNIST example: functional dropout whose flag is the module's mode, and an auxiliary output in
    train mode only, both read from ``self.training`` in forward (torch.fx fixes it when it traces)."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        self.aux = aux
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.layer1 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.layer1(F.relu(self.conv1(x)))
        x = F.dropout(x, 0.5, training=self.training)
        logits = self.fc(x.mean((2, 3)))
        if self.aux and self.training:
            return logits, logits * 0
        return logits


def test_code_that_reads_the_training_flag_keeps_both_modes():
    # found by a newcomer: the split network kept dropout on in eval mode, so predictions were random
    torch.manual_seed(0)
    net = MNISTStyle()
    model = from_backbone(net, "layer1", SHAPE)
    x = torch.randn(3, *SHAPE)
    model.eval()
    net.eval()
    assert torch.equal(model(x), net(x)) and torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    net.train()
    assert torch.equal(a, net(x)) and not torch.equal(model(x), model(x))  # dropout on in train mode only
    assert len(model.state_dict()) == len(net.state_dict()) + 2  # each weight once, plus the mapping layer's two
    # the tuple appears in train mode only, and the message says so
    with pytest.raises(ConfigError, match=r"returns a tuple of 2 .* in train mode"):
        from_backbone(MNISTStyle(aux=True), "layer1", SHAPE)
    data = datasets.triangles(n_train=12, seed=0, n_val=8, n_test=8, image_size=16, n_classes=4)
    train(data, "two_stage", 0, model=from_backbone(MNISTStyle(aux=True), "layer1", (1, 16, 16), output=0),
          epochs=1, batch_size=4, quiet=True)


def test_images_of_another_float_type_train_in_the_models_type():
    # found by a newcomer: ExplanationDataset accepts float64 images (documented), but training then failed with
    # "Input type (double) and bias type (float) should be the same"; float16 likewise
    data = datasets.triangles(n_train=12, seed=0, n_val=8, n_test=8, image_size=16)
    ref = train(data, "rrr", 0, epochs=1, batch_size=4, quiet=True)
    for dtype in (torch.float64, torch.float16):
        cast = Splits(*(ExplanationDataset(d.x.to(dtype), d.y, d.mask) for d in (data.train, data.val, data.test)))
        result = train(cast, "rrr", 0, epochs=1, batch_size=4, quiet=True)
        assert next(result.model.parameters()).dtype == torch.float32
        if dtype == torch.float64:  # float64 -> float32 is exact for these images: the same run
            assert result.history == ref.history


@pytest.mark.parametrize("method", ["standard", "two_stage", "rrr", "two_stage_no_mapping", "counterexamples",
                                    "joint", "hint", "rrr_gradcam"])
def test_hidden_inplace_code_is_named_by_every_method(method):
    # a newcomer's case: with an identity mapping, a classifier whose forward calls z.relu_() ended in autograd's
    # "modified by an inplace operation" for most methods; every method now names the in-place code
    torch.manual_seed(0)
    net = ExplainableNet(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()), nn.Identity(), HiddenInplace())
    data = datasets.triangles(n_train=12, seed=0, n_val=8, n_test=8, image_size=16)
    with pytest.raises(ConfigError, match="modifies its input m\\(f\\(x\\)\\) in place"):
        train(data, method, 0, model=net, epochs=1, batch_size=4, quiet=True)


def test_a_wrong_input_shape_is_named():
    # a newcomer's case: from_backbone(net, ..., (3, 32, 32)) for a one-channel network gave the raw conv error
    with pytest.raises(ConfigError, match=r"fails on images of shape \(C, H, W\) = \(3, 8, 8\).*check input_shape"):
        from_backbone(sequential(False), "2", (3, 8, 8))
