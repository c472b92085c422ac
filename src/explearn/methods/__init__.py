"""Training methods, one file per family, each registered by name in ``METHODS``."""

from explearn.methods import counterexamples, hint, joint, rrr, rrr_gradcam, standard, two_stage  # noqa: F401
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, masked_input
from explearn.methods.counterexamples import Counterexamples, CounterexamplesHParams
from explearn.methods.hint import HINT, HINTHParams, hint_loss
from explearn.methods.joint import Joint, JointHParams
from explearn.methods.rrr import RRR, RRRHParams, input_gradient_penalty, rrr_forward, rrr_objective, rrr_penalty
from explearn.methods.rrr_gradcam import RRRGradCAM, RRRGradCAMHParams, gradcam_penalty
from explearn.methods.standard import Standard
from explearn.methods.two_stage import AlternationSchedule, TwoStage, TwoStageHParams, TwoStageNoMapping

__all__ = [
    "METHODS", "AlternationSchedule", "Batch", "Counterexamples", "CounterexamplesHParams", "HINT", "HINTHParams",
    "Joint", "JointHParams", "Method", "OptimHParams", "RRR", "RRRGradCAM", "RRRGradCAMHParams", "RRRHParams",
    "Standard", "TwoStage", "TwoStageHParams", "TwoStageNoMapping", "gradcam_penalty", "hint_loss",
    "input_gradient_penalty", "masked_input", "rrr_forward", "rrr_objective", "rrr_penalty",
]
