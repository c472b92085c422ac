"""Training methods, one file per family, each registered by name in ``METHODS`` (and, where it has one, its
stacked form for seed-vectorised training in ``stacking.STACKED_METHODS``). Every module of this package is
imported here, so a new method is one file: its class, settings and stacked form, registered where they are
defined (docs/design.md, "Methods")."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from explearn.methods.base import METHODS, Batch, Method, OptimHParams, masked_input  # noqa: E402
from explearn.methods.counterexamples import Counterexamples, CounterexamplesHParams  # noqa: E402
from explearn.methods.energy import Energy, EnergyHParams, energy_loss  # noqa: E402
from explearn.methods.hint import HINT, HINTHParams, hint_loss  # noqa: E402
from explearn.methods.joint import Joint, JointHParams  # noqa: E402
from explearn.methods.rbr import RBR, RBRHParams, rbr_penalty  # noqa: E402
from explearn.methods.rrr import (RRR, RRRHParams, input_gradient_penalty, rrr_forward, rrr_objective,  # noqa: E402
                                  rrr_penalty)
from explearn.methods.rrr_gradcam import RRRGradCAM, RRRGradCAMHParams, gradcam_penalty  # noqa: E402
from explearn.methods.saliency_guided import SaliencyGuided, SaliencyGuidedHParams  # noqa: E402
from explearn.methods.standard import Standard  # noqa: E402
from explearn.methods.tap import TAP, TAPHParams, activation_penalty  # noqa: E402
from explearn.methods.two_stage import (AlternationSchedule, TwoStage, TwoStageHParams,  # noqa: E402
                                        TwoStageNoMapping)
from explearn.methods.two_stage_constrained import ConstrainedHParams, TwoStageConstrained  # noqa: E402

__all__ = [
    "METHODS", "RBR", "RBRHParams", "TAP", "AlternationSchedule", "Batch", "ConstrainedHParams", "Counterexamples",
    "CounterexamplesHParams", "Energy", "EnergyHParams", "HINT", "HINTHParams", "Joint", "JointHParams", "Method",
    "OptimHParams", "RRR", "RRRGradCAM", "RRRGradCAMHParams", "RRRHParams", "SaliencyGuided",
    "SaliencyGuidedHParams", "Standard", "TAPHParams", "TwoStage", "TwoStageConstrained", "TwoStageHParams",
    "TwoStageNoMapping", "activation_penalty", "energy_loss", "gradcam_penalty", "hint_loss",
    "input_gradient_penalty", "masked_input", "rbr_penalty", "rrr_forward", "rrr_objective", "rrr_penalty",
]
