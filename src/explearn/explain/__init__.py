"""Differentiable input gradients for training, and attribution metrics for evaluation."""

from explearn.explain.attribution import ATTRIBUTION, explanation_alignment, mask_mass_share
from explearn.explain.gradients import input_gradients

__all__ = ["ATTRIBUTION", "explanation_alignment", "input_gradients", "mask_mass_share"]
