"""Feature misalignment losses (divergence x normalisation x axis), each part a registry."""

from explearn.losses.alignment import AXES, DIVERGENCES, NORMALIZATIONS, AlignmentLoss, alignment_loss

__all__ = ["AXES", "DIVERGENCES", "NORMALIZATIONS", "AlignmentLoss", "alignment_loss"]
