"""The default network: a small CNN whose first blocks are the features f, then a mapping layer m, then the
remaining blocks and a linear layer as the classifier c."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from explearn.config import check, setting
from explearn.errors import ConfigError
from explearn.models.base import ExplainableNet
from explearn.models.mapping import MAPPINGS, check_mlp_size, make_mapping


@dataclass(frozen=True)
class SmallCNNOptions:
    """Options of ``small_cnn``."""

    widths: tuple[int, ...] = setting((16, 32, 32), "output channels of each conv block (3x3 conv, ReLU, 2x2 max-pool)")
    feature_blocks: int = setting(3, "how many of the blocks form f (where f ends); the rest belong to c")
    mapping: str = setting("linear", "mapping layer kind: linear, conv1x1, mlp or identity")
    mapping_hidden: int = setting(256, "hidden width of the mlp mapping layer")
    mapping_depth: int = setting(1, "hidden layers of the mlp mapping layer")

    def __post_init__(self) -> None:
        where = "model 'small_cnn'"
        check(len(self.widths) >= 1 and all(w >= 1 for w in self.widths), where, f"bad widths {self.widths}")
        check(1 <= self.feature_blocks <= len(self.widths), where,
              f"feature_blocks must lie in [1, {len(self.widths)}], got {self.feature_blocks}")
        MAPPINGS.get(self.mapping)  # unknown kinds fail here, with suggestions
        check_mlp_size(self.mapping_hidden, self.mapping_depth, where)


def small_cnn(input_shape: tuple[int, int, int], n_classes: int, options: SmallCNNOptions | None = None) -> ExplainableNet:
    """Build the small CNN for images of shape (C, H, W) and ``n_classes`` classes.

    Shape:
        x (B, C, H, W) -> f: (B, widths[k-1], H / 2^k, W / 2^k) with k = feature_blocks -> logits (B, n_classes)

    Raises:
        ConfigError: H or W is smaller than 2^len(widths) (a pooling step would leave no pixel).
    """
    opts = options or SmallCNNOptions()
    need = 2 ** len(opts.widths)  # every block's 2x2 max-pool halves H and W
    if min(input_shape[1:]) < need:
        fits = max(1, min(input_shape[1:]).bit_length() - 1)  # blocks whose pooling leaves at least one pixel
        widths = ",".join(map(str, opts.widths[:fits]))
        raise ConfigError(
            f"model 'small_cnn' halves the image {len(opts.widths)} times (a 2x2 max-pool per block), so it needs "
            f"images of at least {need}x{need} pixels, got {input_shape[1]}x{input_shape[2]}; use {fits} block(s) "
            f"(--model-opt widths={widths} --model-opt feature_blocks={min(fits, opts.feature_blocks)}) or larger "
            "images"
        )
    blocks = []
    channels = input_shape[0]
    for width in opts.widths:
        blocks.append(nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)))
        channels = width
    features = nn.Sequential(*blocks[: opts.feature_blocks])
    with torch.no_grad():
        feature_shape = tuple(features(torch.zeros(1, *input_shape)).shape[1:])
        head_in = nn.Sequential(*blocks[opts.feature_blocks:])(torch.zeros(1, *feature_shape)).numel()
    mapping = make_mapping(opts.mapping, feature_shape, hidden=opts.mapping_hidden, depth=opts.mapping_depth)
    classifier = nn.Sequential(*blocks[opts.feature_blocks:], nn.Flatten(), nn.Linear(head_in, n_classes))
    return ExplainableNet(features, mapping, classifier)
