"""Right for Better Reasons (RBR; Shao, Skryagin, Stammer, Schramowski and Kersting, "Right for Better Reasons:
Training Differentiable Models by Constraining their Influence Functions", AAAI 2021): cross-entropy plus a
penalty on the input gradient of the influence function, times the input gradient, on the wrong reasons.

Source of the definition: the XIL typology code of Friedrich, Stammer, Schramowski and Kersting (2023; co-authored
by three of RBR's authors), github.com/ml-research/A-Typology-for-Exploring-the-Mitigation-of-Shortcut-Behavior at
commit a7d1235: ``xil_methods/xil_loss.py``, class ``RBRLoss`` (lines 92-178), and ``learner/learner.py`` (how it
is called and weighted, lines 26, 44-110, 237-250). The same class is in ``felifri/XIL_Extended`` and in the
repository's first commit (922a054). The paper's own equations were not available here and were not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explearn.config import check, setting
from explearn.explain.gradients import log_prob_gradients
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, label_loss, step, wrong_reasons
from explearn.models.base import logits as model_logits


@dataclass(frozen=True)
class RBRHParams(OptimHParams):
    """Settings of RBR.

    ``lam`` = 1e4 by default, from the scale of the terms at initialisation on the triangle benchmark (small_cnn
    defaults, 32x32 images, 3 seeds, one torch thread; the whole training split as one batch, and a random batch of
    64; ``benchmarks/rbr_scale.py``), measured with::

        for s in 0, 1, 2:
            d = datasets.triangles(n_train=500, seed=s, image_size=32).train
            batch = Batch(d.x, d.y, d.mask, d.has_mask, d.wrong_mask, d.has_wrong_mask)  # or 64 of them
            torch.manual_seed(s)
            net = small_cnn((1, 32, 32), 2)
            params = [p for p in net.parameters() if p.requires_grad]
            wrong, has = wrong_reasons(batch)
            out, influence, grad = rbr_terms(net, batch.x, batch.y, params)
            for term in label_loss(out, batch.y), influence_penalty(influence, grad, wrong)[has].sum() / len(has):
                grads = torch.autograd.grad(term, params, retain_graph=True)

    The cross-entropy is 0.69-0.70 with gradient norm 0.05-0.12 (whole split; 0.09-0.45 on a batch of 64). The
    RBR term is 3e-8 to 6e-7 (a batch of 64: the same), its gradient norm 8e-5 to 5e-4 times the cross-entropy's
    (3e-5 to 5e-4 on a batch of 64). Of its two factors the influence is not small (mean over samples of
    sum (W * d s/dx)^2: 5-22), the untrained network's input gradient is (sum (W * d sum_k log p_k/dx)^2: 3e-6 to
    3e-5). lam =
    1e4 puts the term's gradient at 0.25-5 times the cross-entropy's and its value (at most 6e-3) well under it.
    The authors' default (normalisation on, rate 1: the weighted term equal to the cross-entropy at the start)
    would be lam = CE / term, 1e6 to 3e7 here. The term grows as the network learns: at lam = 100 it is
    1.5e-4 after 20 epochs, 300 times its initial value. A 2-seed, 20-epoch check at 500 samples
    (``train(data, "rbr", s, hparams={"lam": lam}, epochs=20)``, ``benchmarks/rbr_lam_check.py``): validation
    accuracy (seeds 0, 1) 0.75, 0.74 at lam 1e2; 0.69, 0.58 at 1e3; 0.68, 0.63 at 3e3; 0.76, 0.61 at 1e4; 0.72,
    0.61 at 3e4; 0.62, 0.63 at 1e5; 0.56, 0.57 at 1e6; label-only 0.81, 0.65; RRR (lam 100) 0.79, 0.69. No weight
    beat label-only clearly there (the two seeds of label-only differ by 0.16); a search should span 1e2 to 1e5.
    On other models and image sizes the scale differs: measure it anew.

    Raises:
        ConfigError: lam < 0 (or a bad optimiser setting, ``OptimHParams``).
    """

    lam: float = setting(1e4, "weight of the influence-function penalty in CE + lam * mean penalty")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lam >= 0, "method 'rbr'", f"lam must be >= 0, got {self.lam}")


def influence_input_gradient(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                             params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The input gradient of the influence function with the Hessian replaced by the identity, as in the authors'
    code: d/dx of s = sum over every entry of every parameter of d/dtheta sum_i CE(logits_i, y_i).

    ``xil_loss.py`` lines 137-148: the gradient of the cross-entropy with respect to ``model.parameters()``
    (``create_graph``), the sum of all its entries (lines 142-143: "we need to get the sum of all grads"; a sum, not
    a norm), and the gradient of that scalar with respect to the input (``create_graph``); line 95: "Using identity
    matrix instead of hessian". The authors differentiate the batch-mean cross-entropy (``learner.py`` line 237);
    here the summed one, so that each sample's row is its own loss's (without BatchNorm: d s / d x_i =
    d (1^T grad_theta CE_i) / d x_i); the factor B between the two is absorbed in ``lam`` (see ``RBR``).

    A property of this definition: for the softmax cross-entropy the gradient of a final linear layer (with bias)
    sums to zero, sum_kj (p_k - y_k) h_j + sum_k (p_k - y_k) = 0, so s only sees the layers before it (a linear
    softmax model has no influence term at all).

    Args:
        logits: the model's logits on ``x``, computed with ``x.requires_grad`` (and grad mode) on.
        x: the inputs that produced ``logits``.
        y: the labels.
        params: the parameters theta (the method's trainable parameters).

    Returns:
        d s / d x, differentiable in the weights and in ``x`` (``create_graph``); zeros where s does not depend
        on x.

    Raises:
        RuntimeError: (from autograd) ``logits`` were not computed from ``x`` with grad mode on.

    Shape:
        logits (B, K), x (B, C, H, W), y (B,) -> (B, C, H, W)
    """
    with torch.enable_grad():
        loss = F.cross_entropy(logits, y, reduction="sum")
        grads = torch.autograd.grad(loss, list(params), create_graph=True, allow_unused=True)
        used = [g.sum() for g in grads if g is not None]
        if not used:
            return torch.zeros_like(x)
        total = torch.stack(used).sum()  # s = 1^T grad_theta CE (a scalar)
        if not total.requires_grad:
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(total, x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def influence_penalty(influence: torch.Tensor, grad: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of (W * influence * grad)^2: ``xil_loss.py`` lines 159-160 (``grads = if_grads * ig_grads``,
    ``A_gradX = (E_pnlt * grads) ** 2``) and line 167 (the sum), for each sample.

    Args:
        influence: ``influence_input_gradient``.
        grad: the input gradient of sum_k log p_k (RRR's, ``xil_loss.py`` lines 152-155).
        wrong: the wrong-reason mask W (1 where the model must not look).

    Raises:
        RuntimeError: shapes that do not broadcast.

    Shape:
        influence (B, C, H, W), grad (B, C, H, W), wrong (B, 1 or C, H, W) -> (B,)
    """
    return (wrong * influence * grad).pow(2).flatten(1).sum(1)


def rbr_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              params: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward of the model on x and the two factors of the RBR penalty from it: the logits, the influence
    term d s/dx (``influence_input_gradient``) and the input gradient d sum_k log p_k/dx (RRR's,
    ``xil_loss.py`` lines 152-155), all differentiable in the weights; ``rbr_forward`` combines them.

    Args:
        model, x, y, params: as for ``rbr_forward``.

    Raises:
        ConfigError: the model's classifier modifies m(f(x)) in place (``explearn.models.logits``).

    Shape:
        x (B, C, H, W), y (B,) -> logits (B, K), influence (B, C, H, W), input gradient (B, C, H, W)
    """
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model_logits(model, x)
        influence = influence_input_gradient(out, x, y, params)
        grad = log_prob_gradients(out, x, target="sum_log_prob", create_graph=True)
    return out, influence, grad


def rbr_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wrong: torch.Tensor,
                params: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward of the model on x: its logits and the per-sample RBR penalty from them (the cross-entropy, the
    influence term and the input gradient share the forward, as in the authors' ``learner.py`` lines 234-244, so
    train-mode BatchNorm statistics advance once per batch and dropout draws one mask).

    Args:
        model: a three-part explearn model.
        x: the inputs. If ``x`` already requires grad it is used as it is, so that the penalty is differentiable
            in it (``gradcheck``); otherwise a detached copy that requires grad is used.
        y: the labels (the influence term differentiates the cross-entropy on them).
        wrong: the wrong-reason mask W.
        params: theta for the influence term; default: the model's parameters that require grad.

    Returns:
        logits, and per sample sum((W * d s/dx * d sum_k log p_k/dx)^2) (``influence_penalty``), both
        differentiable in the weights (triple backpropagation when trained on).

    Raises:
        ConfigError: as ``rbr_terms``.

    Shape:
        x (B, C, H, W), y (B,), wrong (B, 1 or C, H, W) -> logits (B, K), penalty (B,)
    """
    out, influence, grad = rbr_terms(model, x, y, params)
    return out, influence_penalty(influence, grad, wrong)


def rbr_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wrong: torch.Tensor,
                params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Per-sample RBR penalty sum((W * d s/dx * d sum_k log p_k/dx)^2), s = 1^T grad_theta sum_i CE_i
    (``rbr_forward`` without the logits); differentiable in the weights and, if ``x`` requires grad, in x.

    Raises:
        ConfigError: as ``rbr_terms``.

    Shape:
        x (B, C, H, W), y (B,), wrong (B, 1 or C, H, W) -> (B,)
    """
    return rbr_forward(model, x, y, wrong, params)[1]


@METHODS.register("rbr")
class RBR(Method):
    """RBR (Shao et al., AAAI 2021), as the XIL typology code implements it (``xil_loss.py``, ``RBRLoss``):
    CE + lam * (sum over samples with a wrong-reason mask W of sum((W * d s/dx * d sum_k log p_k/dx)^2)) / B,
    s = 1^T grad_theta sum_i CE_i (the identity in place of the Hessian; ``influence_input_gradient``), W the
    wrong-reason mask (the complement of the right-reason mask where only that is given), B the batch size.

    Weighting: as RRR here (``rrr_objective``: the penalties of the samples with a mask, summed and divided by
    B). The authors add ``normalization_rate * regularization_rate * sum_i (E_pnlt * if_grads * ig_grads)^2``
    (lines 167-169) with the influence of the batch-mean cross-entropy (1/B times ours), i.e. rate / B^2 times
    the sum of our penalties: their ``normalization_rate * regularization_rate`` is lam * B here. Their
    normalisation rate (``learner.py`` lines 44-110) is computed from the data at initialisation (the sum over
    the training batches of the cross-entropy over that of the penalty, divided by the number of penalties
    used), so that with their default rate 1 the weighted term starts equal to the cross-entropy; here ``lam`` is
    a fixed setting, chosen from a measurement of the same two scales at initialisation (``RBRHParams``: it
    matches the gradients, not the values). Their optional clipping (``rr_clipping``, lines 174-176) is off by
    default and in their training code, and is not implemented. Samples without a mask contribute no term; a
    batch without any mask is a plain cross-entropy step. With BatchNorm in train mode the samples of a batch
    interact, so a sample's influence row also carries the others' losses (as in the authors' code).

    Cost: three levels of backpropagation (the parameter gradient, its input gradient, and the training
    gradient through both). Measured (``benchmarks/rbr_cost.py``: small_cnn defaults, 32x32 triangles, batch 32,
    one CPU thread, the three methods interleaved in one process, median of 40 steps): 62 ms per step against
    11 ms for ``standard`` (x5.7) and 23 ms for ``rrr`` (x2.7); the tensors saved for the training backward take
    60 MiB against 10 and 21 MiB. Slower, but not prohibitive at this size. No stacked (seed-vectorised) form.

    Raises:
        ConfigError: (on update) as ``rbr_terms``.
    """

    HParams = RBRHParams
    uses_masks = True

    def __init__(self, model: nn.Module, hparams: RBRHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: Batch) -> dict[str, float]:
        wrong, has = wrong_reasons(batch)
        if not bool(has.any()):  # no mask in the batch: a plain cross-entropy step, no term logged
            ce = label_loss(model_logits(self.model, batch.x), batch.y)
            return {"ce": ce.item(), "grad_norm": step(self.optimizer, ce, self.params)}
        out, influence, grad = rbr_terms(self.model, batch.x, batch.y, self.params)  # one forward for both terms
        # only the rows with a mask are read, so that whatever the other rows' masks hold never enters the step
        penalty = influence_penalty(influence[has], grad[has], wrong[has]).sum() / len(has)
        ce = label_loss(out, batch.y)
        norm = step(self.optimizer, ce + self.hparams.lam * penalty, self.params)
        return {"ce": ce.item(), "rbr_penalty": penalty.item(), "grad_norm": norm}
