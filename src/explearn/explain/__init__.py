"""Differentiable input gradients and Grad-CAM for training, and attribution metrics for evaluation."""

from explearn.explain.attribution import (ATTRIBUTION, ATTRIBUTION_SAMPLES, WRONG_SCORE_ATTRIBUTION, Estimate,
                                          alignment_estimate, explanation_alignment, wrong_score_estimate,
                                          mask_mass_share, normalized_attribution, wrong_reason_score,
                                          wrong_score_from)
from explearn.explain.captum_attributions import (EVALUATION_ATTRIBUTIONS, alignment_under, attribution_summary,
                                                  mass_share_of, occlusion_window, pixel_magnitude)
from explearn.explain.gradcam import (downsample_mask, grad_cam, grad_cam_from, mapped_forward, normalize_cam,
                                      reduce_channels, upsample_map)
from explearn.explain.gradients import input_gradients, log_prob_gradients

__all__ = [
    "EVALUATION_ATTRIBUTIONS", "alignment_under", "attribution_summary", "mass_share_of", "occlusion_window",
    "pixel_magnitude",
    "ATTRIBUTION", "ATTRIBUTION_SAMPLES", "Estimate", "WRONG_SCORE_ATTRIBUTION", "alignment_estimate",
    "wrong_score_estimate", "downsample_mask", "explanation_alignment", "grad_cam",
    "grad_cam_from", "input_gradients", "log_prob_gradients", "mapped_forward", "mask_mass_share", "normalize_cam", "normalized_attribution",
    "reduce_channels", "upsample_map", "wrong_reason_score", "wrong_score_from",
]
