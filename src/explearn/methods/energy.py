"""Model guidance with the Energy loss (Rao, Böhle, Parchami-Araghi and Schiele, "Studying How to Efficiently and
Effectively Guide Models with Explanations", ICCV 2023): cross-entropy plus a localisation loss on the true class's
attribution map and the right-reason mask, and the paper's L1 and per-pixel cross-entropy (PPCE) baselines.

Source of the definitions: the authors' code, github.com/sukrutrao/Model-Guidance (``losses.py``:
``EnergyPointingGameBBMultipleLoss``, ``GradiaBBMultipleLoss``, ``HAICSBBMultipleLoss``; ``attribution_methods.py``:
which losses clamp the map to its positive part and scale it by its maximum, and that the map is upsampled last);
the paper states them in its section on localisation losses, whose equation numbers were not checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from explearn.config import check, setting
from explearn.explain.gradcam import grad_cam_from, mapped_forward, reduce_channels, upsample_map
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, label_loss, right_reasons, step
from explearn.models.base import logits as model_logits

Attribution = Literal["input_x_gradient", "gradcam"]
Variant = Literal["energy", "l1", "ppce"]

#: default ``eps`` of ``energy_loss``: keeps the Energy quotient, the max-normalisation and PPCE's log finite
GUIDANCE_EPS = 1e-6


@dataclass(frozen=True)
class EnergyHParams(OptimHParams):
    """Settings of model guidance (Rao et al. 2023).

    ``lam`` = 0.1 by default, from the scale of the terms at initialisation on the triangle benchmark (small_cnn
    defaults, 32x32 images, 3 seeds, the whole training split as one batch, one torch thread), measured with::

        for s in 0, 1, 2:
            d = datasets.triangles(n_train=500, seed=s, image_size=32).train
            batch = Batch(d.x, d.y, d.mask, d.has_mask, d.wrong_mask, d.has_wrong_mask)
            torch.manual_seed(s)
            method = Energy(small_cnn((1, 32, 32), 2), EnergyHParams(attribution=attribution), 1)
            logits, attr = method.attribution_forward(batch, True)
            for term in label_loss(logits, d.y), energy_loss(attr, right_reasons(batch)[0], variant).mean():
                grads = torch.autograd.grad(term, list(method.model.parameters()), retain_graph=True)

    The cross-entropy is 0.69-0.70 with gradient norm 0.05-0.12. With input x gradient the Energy term is
    0.82-0.86 (the triangle, 3 % of the pixels, holds 14-18 % of the positive attribution) and its gradient norm
    is 7-14 times the cross-entropy's; L1 is 0.05 (gradient 0.5-1.1 times), PPCE 7.4-8.4 (600-2000 times). With
    Grad-CAM the Energy term is 0.98-0.99 (gradient 2-23 times), L1 0.23-0.38 (40-310 times), PPCE 2.8-7.3
    (130-6200 times). lam = 0.1 puts the Energy term's gradient at the order of the cross-entropy's and its value
    well under it; lam = 1 lets the term dominate (a 2-seed, 20-epoch check at 500 samples, input x gradient,
    ``train(data, "energy", s, hparams={"lam": lam}, epochs=20)``: validation accuracy 0.81 at lam 0.03, 0.78
    at 0.1, 0.72 at 0.3, 0.61 at 1, 0.59 at 10; label-only 0.73). The L1 and PPCE variants have other scales:
    choose ``lam`` for them anew (PPCE's steep log wants a much smaller one).

    ``attribution`` = input_x_gradient by default: it works with every model, also one whose m(f(x)) is a vector.
    """

    lam: float = setting(0.1, "weight of the localisation loss in CE + lam * L_loc")
    attribution: Attribution = setting(
        "input_x_gradient", "attribution of the true class: input_x_gradient (sum over channels of x * d logit_y / "
                            "dx) or gradcam (Grad-CAM on m(f(x)), upsampled to the input)")
    variant: Variant = setting("energy", "localisation loss: energy (1 - EPG), l1 or ppce (per-pixel cross-entropy)")

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "method 'energy'"
        check(self.lam >= 0, where, f"lam must be >= 0, got {self.lam}")
        check(self.attribution in get_args(Attribution), where,
              f"attribution must be one of {', '.join(get_args(Attribution))}, got {self.attribution!r}")
        check(self.variant in get_args(Variant), where,
              f"variant must be one of {', '.join(get_args(Variant))}, got {self.variant!r}")


def energy_loss(attribution: torch.Tensor, mask: torch.Tensor, variant: Variant = "energy",
                eps: float = GUIDANCE_EPS) -> torch.Tensor:
    """Per-sample localisation loss of an attribution map against a right-reason mask (Rao et al. 2023, sec. 3).

    With A+ = max(A, 0) and M the mask reduced over channels (max; soft masks weigh pixels):

    - ``energy``: 1 - sum(M * A+) / (sum(A+) + eps), one minus the energy-based pointing game (EPG) score;
      0 when all positive attribution lies inside the mask, 1 when none does (or there is none).
    - ``l1``: mean over pixels of |M - A^|, with A^ = A+ / (max A+ + eps) the map scaled to [0, 1].
    - ``ppce``: -sum(M * log(A^ + eps)) / sum(M), the cross-entropy of A^ against 1 on the mask's pixels.

    A map coarser than the mask (Grad-CAM) is clamped and, for l1 and ppce, scaled first, then upsampled
    bilinearly to the mask's size (the order of the authors' code). Where the authors' code special-cases an
    all-zero map (energy) or clamps the log at -100 (ppce, ``BCELoss``), this function adds ``eps``.

    Args:
        attribution: the attribution of the true class, e.g. input x gradient or Grad-CAM.
        mask: the right-reason mask M (1 where the model should look).
        variant: "energy", "l1" or "ppce".
        eps: keeps the quotient, the scaling and the log finite; a sample with an empty mask gets 1 (energy),
            mean(A^) (l1) or 0 (ppce).

    Returns:
        The loss of each sample, differentiable in ``attribution``.

    Raises:
        ValueError: an unknown ``variant``.

    Shape:
        attribution (B, H, W) or coarser (B, h, w), mask (B, 1|C, H, W) -> (B,)
    """
    if variant not in get_args(Variant):
        raise ValueError(f"unknown localisation loss {variant!r}; known: {', '.join(get_args(Variant))}")
    m = reduce_channels(mask)  # (B, H, W)
    positive = attribution.clamp(min=0)
    if variant != "energy":
        positive = positive / (positive.amax(dim=(-2, -1), keepdim=True) + eps)  # A^ in [0, 1]
    if positive.shape[-2:] != m.shape[-2:]:
        positive = upsample_map(positive, tuple(m.shape[-2:]))
    if variant == "energy":
        inside = (m * positive).flatten(1).sum(1)
        return 1.0 - inside / (positive.flatten(1).sum(1) + eps)
    if variant == "l1":
        return (m - positive).abs().flatten(1).mean(1)
    cross_entropy = -(m * torch.log(positive + eps)).flatten(1).sum(1)
    return cross_entropy / m.flatten(1).sum(1).clamp(min=eps)


def input_x_gradient(logits: torch.Tensor, x: torch.Tensor, target: torch.Tensor,
                     create_graph: bool = False) -> torch.Tensor:
    """Input x gradient of the ``target`` logit, summed over the input's channels: sum_c x_c * d logit_y / d x_c
    (the IxG attribution of Rao et al. 2023 at the input layer).

    Args:
        logits: the model's logits on ``x``, computed with ``x.requires_grad`` on.
        x: the inputs that produced ``logits``.
        target: the class explained for each sample (the label).
        create_graph: keep the graph so that a loss on the map trains the weights (double backprop); else the
            map is detached.

    Shape:
        logits (B, K), x (B, C, H, W), target (B,) -> (B, H, W)
    """
    with torch.enable_grad():
        score = logits.gather(1, target.view(-1, 1).long()).sum()  # samples are independent: sum = per-sample
        (grad,) = torch.autograd.grad(score, x, create_graph=create_graph)
        attribution = (x * grad).sum(1)
    return attribution if create_graph else attribution.detach()


@METHODS.register("energy")
class Energy(Method):
    """Model guidance (Rao et al., ICCV 2023): CE + lam * mean over samples with a right-reason mask of
    L_loc(attribution of the true class, mask), L_loc the Energy loss (default), L1 or PPCE (``energy_loss``).

    The attribution is input x gradient at the input or Grad-CAM on m(f(x)) upsampled to the input, of the true
    class's logit, kept differentiable in the weights (``create_graph=True``) and taken from the forward that
    gives the cross-entropy. The right-reason mask is the complement of the wrong-reason mask where only that is
    given. Not a ``GradCAMTerm``: the input x gradient needs the input in the graph, not m(f(x)).

    Caveat (Grad-CAM): a map that the relu makes zero everywhere gets the Energy term's largest value, 1, but no
    gradient, so a too large step can leave it there (on 16x16 triangles with a 4x4 map, lam 100, lr 0.01: the
    mean term went 0.97, 0.90, then 0.998 and stayed); the input x gradient has no such dead end.

    Raises:
        ConfigError: (on update) ``attribution="gradcam"`` with a model whose m(f(x)) is not a feature map.
    """

    HParams = EnergyHParams
    uses_masks = True

    def __init__(self, model: nn.Module, hparams: EnergyHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def attribution_forward(self, batch: Batch, explain: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward: the logits and, if ``explain``, the differentiable attribution map of the true class.

        Raises:
            ConfigError: ``attribution="gradcam"`` and m(f(x)) is not a feature map (B, C, h, w).

        Shape:
            logits (B, K), attribution (B, H, W) (input x gradient) or (B, h, w) (Grad-CAM)
        """
        if self.hparams.attribution == "gradcam":
            mapped, out = mapped_forward(self.model, batch.x, who="method 'energy' with attribution='gradcam'",
                                         advice="or attribution='input_x_gradient'")
            return out, grad_cam_from(mapped, out, batch.y, create_graph=True) if explain else None
        if not explain:
            return model_logits(self.model, batch.x), None
        x = batch.x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model_logits(self.model, x)
            return out, input_x_gradient(out, x, batch.y, create_graph=True)

    def update(self, batch: Batch) -> dict[str, float]:
        mask, has = right_reasons(batch)
        explain = bool(has.any())
        out, attribution = self.attribution_forward(batch, explain)
        ce = label_loss(out, batch.y)
        loss, logs = ce, {"ce": ce.item()}
        if attribution is not None:
            hp = self.hparams
            value = energy_loss(attribution[has], mask[has], hp.variant).mean()  # samples without a mask: no term
            loss = ce + hp.lam * value
            logs["guidance_loss"] = value.item()
        logs["grad_norm"] = step(self.optimizer, loss, self.params)
        return logs
