"""explearn: training classifiers from labels plus explanations (Tao and Shokri, "Machine Learning from
Explanations", arXiv 2507.04788), with baselines, benchmarks and metrics."""

from explearn.version import __version__  # noqa: E402
from explearn import datasets, explain, losses, methods, metrics, models  # noqa: E402
from explearn.datasets import ExplanationDataset, Splits  # noqa: E402
from explearn.errors import ConfigError, DataError  # noqa: E402
from explearn.run_config import TrainConfig  # noqa: E402
from explearn.train import TrainResult, train  # noqa: E402
from explearn.vectorized import train_many  # noqa: E402

__all__ = [
    "ConfigError", "DataError", "ExplanationDataset", "Splits", "TrainConfig", "TrainResult", "__version__", "datasets",
    "explain", "losses", "methods", "metrics", "models", "train", "train_many",
]
