"""Training methods, one file per family, each registered by name in ``METHODS``."""

from explearn.methods import joint, rrr, standard, two_stage  # noqa: F401  (registration)
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, masked_input
from explearn.methods.joint import Joint, JointHParams
from explearn.methods.rrr import RRR, RRRHParams, rrr_penalty
from explearn.methods.standard import Standard
from explearn.methods.two_stage import AlternationSchedule, TwoStage, TwoStageHParams, TwoStageNoMapping

__all__ = [
    "METHODS", "AlternationSchedule", "Batch", "Joint", "JointHParams", "Method", "OptimHParams", "RRR",
    "RRRHParams", "Standard", "TwoStage", "TwoStageHParams", "TwoStageNoMapping", "masked_input", "rrr_penalty",
]
