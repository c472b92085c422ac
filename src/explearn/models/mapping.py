"""Mapping layers m: the part between features f and classifier c that stage 2 of the paper's method trains.

Every kind maps a feature map (B, C, H, W) to the same shape and starts as the identity, so an untrained m
changes nothing and stage 2 learns a correction of f's features rather than a new representation. ``linear``,
``mlp`` and ``identity`` also take feature vectors (B, D) (a model such as ``mlp``); ``conv1x1`` needs a map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from explearn.errors import ConfigError
from explearn.registry import Registry

MAPPINGS: Registry = Registry("mapping layer")


@MAPPINGS.register("linear")
class LinearMapping(nn.Module):
    """A linear layer on the flattened feature map, initialised to the identity (the paper's "simple linear
    layer"). Parameters: (C*H*W)^2 + C*H*W (D^2 + D on vectors).

    Shape:
        (B, C, H, W) -> (B, C, H, W), or (B, D) -> (B, D)
    """

    def __init__(self, feature_shape: tuple[int, ...], **_: object) -> None:
        super().__init__()
        self.feature_shape = tuple(feature_shape)
        d = math.prod(feature_shape)
        self.linear = nn.Linear(d, d)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(d))
            self.linear.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1)).view(z.shape)


@MAPPINGS.register("conv1x1")
class Conv1x1Mapping(nn.Module):
    """A 1x1 convolution (the same linear map of the channels at every position), initialised to the identity.
    Parameters: C^2 + C.

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, feature_shape: tuple[int, ...], **_: object) -> None:
        super().__init__()
        if len(feature_shape) != 3:
            raise ConfigError(
                f"mapping layer 'conv1x1' needs feature maps (C, H, W), got features of shape {tuple(feature_shape)}; "
                "use 'linear', 'mlp' or 'identity' for feature vectors"
            )
        c = feature_shape[0]
        self.conv = nn.Conv2d(c, c, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(c).view(c, c, 1, 1))
            self.conv.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z)


@MAPPINGS.register("mlp")
class MLPMapping(nn.Module):
    """A residual MLP on the flattened feature map, z + W2 relu(W1 z), with W2 and its bias zero so that it starts
    as the identity; ``depth`` hidden layers of width ``hidden``.

    Shape:
        (B, C, H, W) -> (B, C, H, W), or (B, D) -> (B, D)
    """

    def __init__(self, feature_shape: tuple[int, ...], hidden: int = 256, depth: int = 1, **_: object) -> None:
        super().__init__()
        check_mlp_size(hidden, depth, "mapping layer 'mlp'")
        d = math.prod(feature_shape)
        layers: list[nn.Module] = []
        width = d
        for _layer in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        out = nn.Linear(width, d)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.mlp = nn.Sequential(*layers, out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.mlp(z.flatten(1)).view(z.shape)


@MAPPINGS.register("identity")
class IdentityMapping(nn.Identity):
    """No mapping layer (m = identity, no parameters), for the paper's "no mapping layer" ablation."""

    def __init__(self, feature_shape: tuple[int, ...] | None = None, **_: object) -> None:
        super().__init__()


def check_mlp_size(hidden: int, depth: int, where: str) -> None:
    """The size of an ``mlp`` mapping layer: ``hidden`` >= 1 units in each of ``depth`` >= 0 hidden layers.

    Raises:
        ConfigError: naming ``where`` and the setting (``mapping_hidden``, ``mapping_depth`` in model options).
    """
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"{where}: mapping_hidden (the width of its hidden layers) must be an integer >= 1, "
                          f"got {hidden!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"{where}: mapping_depth (its number of hidden layers) must be an integer >= 0, got "
                          f"{depth!r}")


def make_mapping(kind: str, feature_shape: tuple[int, ...], **options: object) -> nn.Module:
    """Build the registered mapping layer ``kind`` for features of shape (C, H, W) or (D,).

    Raises:
        ConfigError: an unknown kind, or a kind that needs feature maps (conv1x1) given vectors.
    """
    return MAPPINGS.get(kind)(tuple(feature_shape), **options)
