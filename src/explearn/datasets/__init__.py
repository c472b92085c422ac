"""Benchmarks with explanation masks. Each dataset is a pure function of (size, data seed, options) -> Splits."""

from explearn.datasets.base import ExplanationDataset, Splits
from explearn.datasets.triangles import TriangleOptions, triangles
from explearn.registry import Registry

#: name -> (builder(seed=..., **options) -> Splits, options dataclass)
DATASETS: Registry = Registry("dataset")
DATASETS.register("triangles")((triangles, TriangleOptions))


def load(name: str, seed: int = 0, **options) -> Splits:
    """Build the registered dataset ``name`` with the data seed and options."""
    builder, _ = DATASETS.get(name)
    return builder(seed=seed, **options)


__all__ = ["DATASETS", "ExplanationDataset", "Splits", "TriangleOptions", "load", "triangles"]
