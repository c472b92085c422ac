"""Seed-vectorised training: S runs that differ only in their seeds (and perhaps their training data) trained as
one batched computation, each model equal to the one ``explearn.train`` makes for its seed."""

from explearn.vectorized.trainer import train_many, vectorizable, why_not_vectorizable

__all__ = ["train_many", "vectorizable", "why_not_vectorizable"]
