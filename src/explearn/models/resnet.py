"""A small residual network for RGB photos larger than the toy 32x32 images (e.g. dermoscopy at 72x96): a
downsampling stem and the first ``feature_stages`` stages of basic residual blocks form f, then a mapping layer m, then the
remaining stages, global average pooling and a linear layer form the classifier c."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from explearn.config import check, setting
from explearn.models.base import ExplainableNet, eval_mode
from explearn.models.mapping import MAPPINGS, check_mlp_size, make_mapping

Norm = Literal["batch", "group", "none"]

#: GroupNorm uses gcd(channels, GROUPS) groups, so any width works (8 groups for the default widths)
GROUPS = 8


@dataclass(frozen=True)
class SmallResNetOptions:
    """Options of ``small_resnet``."""

    widths: tuple[int, ...] = setting(
        (16, 32, 64), "channels of each stage; every stage after the first halves H and W (the stem halves them too)"
    )
    blocks: int = setting(1, "basic residual blocks per stage (two 3x3 convs with norm and ReLU, plus a shortcut)")
    feature_stages: int | None = setting(
        None, "how many stages form f after the stem (where f ends; 0 = stem only); None = all stages"
    )
    mapping: str = setting(
        "conv1x1", "mapping layer kind: conv1x1, linear, mlp or identity; linear is dense on the flattened map "
        "(a 64x9x12 map at 72x96 input gives about 48M weights), so conv1x1 is the default"
    )
    mapping_hidden: int = setting(256, "hidden width of the mlp mapping layer")
    mapping_depth: int = setting(1, "hidden layers of the mlp mapping layer")
    norm: Norm = setting("batch", f"normalisation after each conv: batch, group (gcd(C, {GROUPS}) groups) or none")
    downsample: Literal["pool", "stride"] = setting(
        "pool", "how the stem and each later stage halve H and W: pool = 2x2 average pooling before a stride-1 conv "
        "(every pixel gets an input gradient), stride = stride-2 convs (cheaper; input gradients show a grid)"
    )

    def __post_init__(self) -> None:
        where = "model 'small_resnet'"
        check(len(self.widths) >= 1 and all(w >= 1 for w in self.widths), where, f"bad widths {self.widths}")
        check(self.blocks >= 1, where, f"blocks must be >= 1, got {self.blocks}")
        check(self.feature_stages is None or 0 <= self.feature_stages <= len(self.widths), where,
              f"feature_stages must lie in [0, {len(self.widths)}] or be None, got {self.feature_stages}")
        check(self.norm in ("batch", "group", "none"), where, f"norm must be batch, group or none, got {self.norm!r}")
        check_mlp_size(self.mapping_hidden, self.mapping_depth, where)
        MAPPINGS.get(self.mapping)  # unknown kinds fail here, with suggestions

    @property
    def n_feature_stages(self) -> int:
        """``feature_stages`` with None resolved to all stages."""
        return len(self.widths) if self.feature_stages is None else self.feature_stages


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """The normalisation after a conv: BatchNorm2d, GroupNorm or nothing. Shape: (B, C, H, W) -> same."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, GROUPS), channels)
    return nn.Identity()


def conv3x3(c_in: int, c_out: int, stride: int, norm: Norm) -> nn.Conv2d:
    # a bias right before a norm layer is cancelled by its mean subtraction, so only "none" gets one
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none")


class BasicBlock(nn.Module):
    """The ResNet basic block (He et al., CVPR 2016): relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)), the
    shortcut a strided 1x1 conv + norm when the shape changes, else the identity.

    Shape:
        (B, c_in, H, W) -> (B, c_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm, downsample: str = "pool") -> None:
        super().__init__()
        pool = stride != 1 and downsample == "pool"
        self.conv1 = (nn.Sequential(avg_pool(stride), conv3x3(c_in, c_out, 1, norm)) if pool
                      else conv3x3(c_in, c_out, stride, norm))
        self.norm1 = norm_layer(norm, c_out)
        self.conv2 = conv3x3(c_out, c_out, 1, norm)
        self.norm2 = norm_layer(norm, c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                avg_pool(stride) if pool else nn.Identity(),
                nn.Conv2d(c_in, c_out, 1, stride=1 if pool else stride, bias=norm == "none"), norm_layer(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def stage(c_in: int, c_out: int, blocks: int, stride: int, norm: Norm, downsample: str = "pool") -> nn.Sequential:
    """``blocks`` basic blocks; the first one changes the width and applies the stride."""
    return nn.Sequential(*[BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, norm, downsample)
                           for i in range(blocks)])


def avg_pool(stride: int) -> nn.Module:
    return nn.AvgPool2d(stride, ceil_mode=True) if stride > 1 else nn.Identity()


def init_weights(net: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, as torchvision), norms at (1, 0), and the last norm of every residual branch
    at 0, so that each block starts as its shortcut and the untrained network is a shallow, stable chain
    (Goyal et al. 2017). Without norms the branch's last conv is scaled down instead of zeroed, so that its first
    conv still gets gradients."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in net.modules():
        if isinstance(m, BasicBlock):
            if isinstance(m.norm2, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.zeros_(m.norm2.weight)
            else:
                with torch.no_grad():
                    m.conv2.weight.mul_(0.1)


def small_resnet(input_shape: tuple[int, int, int], n_classes: int,
                 options: SmallResNetOptions | None = None) -> ExplainableNet:
    """Build the small ResNet for images of shape (C, H, W) and ``n_classes`` classes.

    The stem (3x3 conv, norm, ReLU, 2x2 average pooling) halves H and W before any residual block runs; stage 1
    keeps the size and each later stage halves it again. Halving by average pooling before a stride-1 conv rather
    than by a stride-2 3x3 conv (``downsample="stride"``) costs about 1.3x the time per epoch but gives every input
    pixel a share of the gradient: with strides, input-gradient maps of a trained model show a grid of period 8
    (74 % of their spectral energy on PH2, against 0.4 % with pooling).

    Args:
        input_shape: (C, H, W) of one image.
        n_classes: K, the number of classes.
        options: the settings (defaults: widths 16, 32, 64, one block per stage, f = all stages, conv1x1 mapping).

    Returns:
        An ExplainableNet with features = stem + the first ``feature_stages`` stages, a mapping layer on their
        output, and classifier = the remaining stages + global average pooling + linear.

    Shape:
        x (B, C, H, W) -> f: (B, widths[k-1], ~H / 2^k, ~W / 2^k) with k = feature_stages >= 1 (stem only: widths[0],
        ~H / 2, ~W / 2) -> logits (B, n_classes). At 72x96 with the defaults: f (B, 64, 9, 12).
    """
    opts = options or SmallResNetOptions()
    w = opts.widths
    ds = opts.downsample
    if ds == "pool":  # conv at full resolution, then average: every input pixel gets a gradient (no 8-pixel grid)
        stem = nn.Sequential(conv3x3(input_shape[0], w[0], 1, opts.norm), norm_layer(opts.norm, w[0]), nn.ReLU(),
                             avg_pool(2))
    else:
        stem = nn.Sequential(conv3x3(input_shape[0], w[0], 2, opts.norm), norm_layer(opts.norm, w[0]), nn.ReLU())
    stages = [stage(w[max(i - 1, 0)], width, opts.blocks, 1 if i == 0 else 2, opts.norm, ds)
              for i, width in enumerate(w)]
    k = opts.n_feature_stages
    features = nn.Sequential(stem, *stages[:k])
    classifier = nn.Sequential(*stages[k:], nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[-1], n_classes))
    init_weights(features)
    init_weights(classifier)
    with torch.no_grad(), eval_mode(features):  # eval: no BatchNorm statistics from the dummy input
        feature_shape = tuple(features(torch.zeros(1, *input_shape)).shape[1:])
    mapping = make_mapping(opts.mapping, feature_shape, hidden=opts.mapping_hidden, depth=opts.mapping_depth)
    return ExplainableNet(features, mapping, classifier)
