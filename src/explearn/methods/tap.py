"""TAP, Targeted Activation Penalty (Zhang, Williams and Toni, "Targeted Activation Penalties Help CNNs Ignore
Spurious Signals", AAAI 2024): cross-entropy plus a penalty on the feature-map activations that fall on the
wrong-reason region. No second-order gradient: the penalty is on activations, not on an explanation.

Source of the definition: the authors' code, github.com/dkaizhang/TAP (``src/loss.py``: ``suppress_at``;
``src/wrapper.py``: CE + tap_lambda * penalty; ``src/model.py``: the penalised activations are block outputs,
e.g. ResNet-18's layer1-layer4); the paper's equation numbers were not checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from explearn.config import check, setting
from explearn.errors import ConfigError
from explearn.explain.gradcam import downsample_mask
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, label_loss, step, wrong_reasons
from explearn.models.base import classify

Layers = Literal["features", "blocks"]


@dataclass(frozen=True)
class TAPHParams(OptimHParams):
    """Settings of TAP.

    ``lam`` = 0.01 by default, from the scale of the terms at initialisation on the triangle benchmark, measured
    as for ``energy.EnergyHParams`` (small_cnn defaults after ``torch.manual_seed(s)``, the whole training split
    of ``datasets.triangles(n_train=500, seed=s, image_size=32)`` as one batch, s = 0, 1, 2, one torch thread),
    with ``activations, logits = activations_forward(model, batch.x, layers)`` and
    ``torch.stack([activation_penalty(a, wrong_reasons(batch)[0]) for a in activations]).mean(0).mean()`` in
    place of the attribution and its term (gradient norms over all weights). These triangles carry no square, so
    W = 1 - the triangle, 97 % of the image. The cross-entropy is 0.69-0.70 (gradient norm 0.05-0.12); the
    penalty on f(x) (32 channels, 4x4) is 23-44 per sample, its gradient norm 350-590, 3,900-7,700 times the
    cross-entropy's. lam = 0.01 puts lam * penalty at 0.23-0.44, just under the cross-entropy, as for RRR-G; the
    penalty is quadratic in the activations, and lam >= 0.03 collapses training (a 2-seed, 20-epoch check at 500
    samples, ``train(data, "tap", s, hparams={"lam": lam}, epochs=20)``: validation accuracy 0.74 at lam 1e-4,
    0.69 at 0.001, 0.72 at 0.003, 0.68 at 0.01, 0.54 at 0.03, 0.51 at 0.1; label-only 0.73). With
    ``layers="blocks"`` the penalty is 380-680 per sample (the mean of the 16x16 map's 730-1740, the 8x8 map's
    250-360 and the 4x4 map's 23-44), so it wants ``lam`` about 0.001. A wrong-reason mask that covers only a
    small spurious region gives a proportionally smaller penalty.
    """

    lam: float = setting(0.01, "weight of the activation penalty in CE + lam * TAP")
    layers: Layers = setting(
        "features", "penalised activations: features (the output of f) or blocks (the output of each direct "
                    "submodule of f, e.g. every conv block of small_cnn)")

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "method 'tap'"
        check(self.lam >= 0, where, f"lam must be >= 0, got {self.lam}")
        check(self.layers in get_args(Layers), where,
              f"layers must be one of {', '.join(get_args(Layers))}, got {self.layers!r}")


def activation_penalty(activation: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Per-sample TAP penalty of one layer: sum over the map's cells of (W_down * sum_c A_c)^2, the squared
    Frobenius norm of the channel-summed activation map masked by W_down, the wrong-reason mask reduced over
    channels (max) and average-pooled to the map's size (each cell: the share of its pixels in the mask).

    Source: the authors' code (github.com/dkaizhang/TAP, ``src/loss.py``, ``suppress_at``), which sums the
    channels before squaring; it also dilates the mask by one pixel (3x3 max-pool) before pooling, which this
    function does not. Summing first means that channels of opposite sign cancel: on maps after a ReLU (all
    of small_cnn's) that cannot happen, and the penalty is 0 exactly when every channel is 0 inside W.

    Args:
        activation: the layer's output A.
        wrong: the wrong-reason mask W (1 where the model must not look).

    Returns:
        The penalty of each sample, differentiable in ``activation``; 0 where W is empty.

    Raises:
        ConfigError: ``activation`` is not a feature map (B, C, h, w).

    Shape:
        activation (B, C, h, w), wrong (B, 1|C, H, W) -> (B,)
    """
    check_activation(activation, "the activation")
    w = downsample_mask(wrong, tuple(activation.shape[-2:]))  # (B, h, w)
    return (w * activation.sum(1)).pow(2).flatten(1).sum(1)


def check_activation(activation: torch.Tensor, name: str) -> None:
    """Raise a ConfigError unless ``activation`` is a spatial feature map (B, C, h, w)."""
    if activation.dim() != 4:
        raise ConfigError(
            f"method 'tap' penalises spatial feature maps (B, C, h, w), but {name} has shape "
            f"{tuple(activation.shape[1:])} per sample (a vector model such as 'mlp'?); use a convolutional model "
            "such as 'small_cnn', or a method on input gradients (e.g. 'rrr')"
        )


def activations_forward(model: nn.Module, x: torch.Tensor, layers: Layers) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One forward of the model: the penalised activations and the logits.

    ``layers="features"``: [f(x)]. ``layers="blocks"``: the output of each direct submodule of f, in the order
    they run (forward hooks), e.g. small_cnn's conv blocks (conv, ReLU, 2x2 max-pool; the last is f(x)) or
    small_resnet's stem and stages; f itself if it has no submodules.

    Raises:
        ConfigError: a penalised activation is not a feature map (B, C, h, w) (e.g. an MLP), or the classifier
            modifies m(f(x)) in place.

    Shape:
        x (B, C_in, H, W) -> activations [(B, C_l, h_l, w_l)], logits (B, K)
    """
    captured: list[tuple[str, torch.Tensor]] = []
    children = list(model.features.named_children()) if layers == "blocks" else []
    hooks = [child.register_forward_hook(lambda _m, _i, out, name=name: captured.append((name, out)))
             for name, child in children]
    try:
        z = model.features(x)
    finally:
        for hook in hooks:
            hook.remove()
    check_activation(z, "f(x)")
    if not captured:
        captured = [("f(x)", z)]
    for name, activation in captured:
        if not isinstance(activation, torch.Tensor):
            raise ConfigError(f"method 'tap': submodule {name!r} of f returns {type(activation).__name__}, "
                              "not a feature map; use layers='features'")
        check_activation(activation, f"the output of f's submodule {name!r}")
    return [a for _, a in captured], classify(model, model.mapping(z))


@METHODS.register("tap")
class TAP(Method):
    """TAP (Zhang, Williams and Toni, AAAI 2024): CE + lam * mean over samples with a wrong-reason mask of the
    mean over the penalised layers of ``activation_penalty`` (sum over cells of (W_down * sum_c A_c)^2).

    The activations come from the forward that gives the cross-entropy; W is the complement of the right-reason
    mask where only that is given. Raises a ConfigError (on update) for a model without spatial feature maps.
    """

    HParams = TAPHParams
    uses_masks = True

    def __init__(self, model: nn.Module, hparams: TAPHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: Batch) -> dict[str, float]:
        wrong, has = wrong_reasons(batch)
        activations, out = activations_forward(self.model, batch.x, self.hparams.layers)
        ce = label_loss(out, batch.y)
        loss, logs = ce, {"ce": ce.item()}
        if bool(has.any()):
            # samples without a mask: no term; layers weigh equally, as in the authors' code
            per_layer = torch.stack([activation_penalty(a[has], wrong[has]) for a in activations])  # (L, B')
            value = per_layer.mean(0).mean()
            loss = ce + self.hparams.lam * value
            logs["tap_penalty"] = value.item()
        logs["grad_norm"] = step(self.optimizer, loss, self.params)
        return logs
