"""A multilayer perceptron on the flattened image, split into features f (the first hidden layers), a mapping
layer m on the feature vector, and a classifier c (the remaining hidden layers and the output layer). Its
default widths are those of the MLP of Ross et al. 2017 (two hidden layers of 50 and 30 units)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from explearn.config import check, setting
from explearn.models.base import ExplainableNet
from explearn.models.mapping import MAPPINGS, check_mlp_size, make_mapping


@dataclass(frozen=True)
class MLPOptions:
    """Options of ``mlp``."""

    hidden: tuple[int, ...] = setting((50, 30), "width of each hidden layer (Linear, ReLU); Ross et al. 2017: 50, 30")
    feature_layers: int = setting(1, "how many hidden layers form f (where f ends); the rest belong to c")
    mapping: str = setting("linear", "mapping layer kind on the feature vector: linear, mlp or identity")
    mapping_hidden: int = setting(256, "hidden width of the mlp mapping layer")
    mapping_depth: int = setting(1, "hidden layers of the mlp mapping layer")

    def __post_init__(self) -> None:
        where = "model 'mlp'"
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), where, f"bad hidden widths {self.hidden}")
        check(1 <= self.feature_layers <= len(self.hidden), where,
              f"feature_layers must lie in [1, {len(self.hidden)}], got {self.feature_layers}")
        MAPPINGS.get(self.mapping)  # unknown kinds fail here, with suggestions
        check_mlp_size(self.mapping_hidden, self.mapping_depth, where)
        check(self.mapping != "conv1x1", where,
              "mapping 'conv1x1' needs feature maps (C, H, W) but the mlp's features are vectors; "
              "use 'linear', 'mlp' or 'identity'")


def mlp(input_shape: tuple[int, int, int], n_classes: int, options: MLPOptions | None = None) -> ExplainableNet:
    """Build the MLP for images of shape (C, H, W) and ``n_classes`` classes.

    Shape:
        x (B, C, H, W) -> f: (B, hidden[k-1]) with k = feature_layers -> logits (B, n_classes)
    """
    opts = options or MLPOptions()
    layers = []
    width = math.prod(input_shape)
    for h in opts.hidden:
        layers.append(nn.Sequential(nn.Linear(width, h), nn.ReLU()))
        width = h
    k = opts.feature_layers
    features = nn.Sequential(nn.Flatten(), *layers[:k])
    mapping = make_mapping(opts.mapping, (opts.hidden[k - 1],), hidden=opts.mapping_hidden, depth=opts.mapping_depth)
    classifier = nn.Sequential(*layers[k:], nn.Linear(width, n_classes))
    return ExplainableNet(features, mapping, classifier)
