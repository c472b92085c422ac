"""Model selection protocols, computed after training from the same runs (as DomainBed does, Gulrajani and
Lopez-Paz 2021, "In search of lost domain generalization"): training is identical under every protocol, so
contrasts between protocols are paired and cost nothing, and run ids do not depend on them.

A run records, after every epoch, what each protocol reads, and keeps the model of each protocol's chosen epoch:

- ``train_like``: the epoch with the best score (accuracy, or balanced accuracy under ``select=
  "best_val_balanced"``) on the validation split, drawn like the training data; the earliest on ties. What a
  practitioner has; explearn's ``select="best_val"``.
- ``oracle``: the last epoch (no early stopping), its hyperparameters chosen on ``val_oracle``, a validation split
  drawn like the test distribution and disjoint from it (DomainBed's test-domain validation). An upper bound a
  practitioner would not have. Present where the data have ``val_oracle``.
- ``explanation``: a criterion only masks make possible, on train-like data: among the epochs whose validation
  score is within ``DELTA`` of the best, the one with the lowest **intervention reliance**, the validation
  score minus the same score on ``val_intervened`` (each validation image's wrong-reason region, together with
  the other image's, replaced by that of an image of another class; ``intervene``). Ties: the higher score, then
  the earlier epoch. It reads accuracies, not attributions, which methods trained on attributions could game. It
  sees only the annotated shortcut (the wrong-reason masks of the validation split), so it is present only where
  the validation split has wrong-reason masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from explearn.datasets.base import ExplanationDataset

#: the protocols, in report order
PROTOCOLS = ("train_like", "oracle", "explanation")
#: the explanation protocol's accuracy window: candidates score at least best - DELTA (pre-registered in
#: docs/verdicts.md, the smallest accuracy difference of interest)
DELTA = 0.02
#: accuracies are float32 means: an epoch exactly DELTA below the best must not fall out of the window by rounding
TOLERANCE = 1e-6
#: the seed of the intervention's pairing of validation images
INTERVENTION_SEED = 0


def intervene(ds: ExplanationDataset, seed: int = INTERVENTION_SEED) -> ExplanationDataset:
    """The intervention behind the ``explanation`` protocol: each image i that has a wrong-reason mask W_i gets,
    on U = W_i or W_j, the pixels of an image j of another class (j drawn uniformly among them, with ``seed``;
    W_j = 0 where j has none). A shortcut in the wrong-reason region then points to j's class: i's own is
    removed, j's is carried over. Images without a wrong-reason mask, or whose class is the only one present, are
    unchanged. Labels and masks stay i's.

    Shape: ``ds.x`` (N, C, H, W); the result has the same shape. Source: issue 14 of explearn (the intervention
    criterion of its selection protocols), after the swapped-shortcut tests of Decoy-MNIST (Ross et al. 2017).
    """
    gen = torch.Generator().manual_seed(seed)
    y = ds.y.cpu()
    partner = torch.arange(len(y))
    for i in torch.nonzero(ds.has_wrong_mask.cpu()).flatten().tolist():
        others = torch.nonzero(y != y[i]).flatten()
        if len(others):
            partner[i] = others[torch.randint(len(others), (1,), generator=gen)]
    partner = partner.to(ds.x.device)
    wrong = ds.wrong_mask * ds.has_wrong_mask[:, None, None, None]
    region = torch.maximum(wrong, wrong[partner]).clamp(0, 1)
    x = ds.x * (1 - region) + ds.x[partner] * region
    return replace(ds, x=x.to(ds.x.dtype), name=f"{ds.name} (intervened)")


def has_intervention(ds: ExplanationDataset) -> bool:
    """Whether the ``explanation`` protocol applies: the validation split has wrong-reason masks."""
    return bool(ds.has_wrong_mask.any())


@dataclass
class _Candidate:
    epoch: int
    score: float
    reliance: float
    state: dict[str, torch.Tensor]

    def key(self) -> tuple[float, float, int]:
        return self.reliance, -self.score, self.epoch


@dataclass
class Tracker:
    """Per-run bookkeeping of the protocols during training: call ``observe`` after every epoch with that
    epoch's validation scores and a function that copies the model's state; ``chosen`` gives each protocol's
    epoch and state at the end. Keeps at most the states that can still be chosen: the train-like best, and for
    the explanation protocol the epochs not dominated by another (a higher or equal score and a smaller
    selection key) and within ``DELTA`` of the best score.

    Args:
        metric: the validation score's name (``acc`` or ``balanced_acc``).
        explanation: whether the explanation protocol applies (``has_intervention``).
        oracle: whether ``val_oracle`` exists.
        keep_best: keep the train-like best state (False when the caller keeps it already).
    """

    metric: str
    explanation: bool
    oracle: bool
    keep_best: bool = True
    best: tuple[float, int] = (-1.0, 0)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    keys: list[tuple[float, float, int]] = field(default_factory=list)
    candidates: list[_Candidate] = field(default_factory=list)
    last: int = 0

    def observe(self, epoch: int, scores: dict[str, dict[str, float]],
                state: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Record epoch ``epoch`` (1, 2, ...): ``scores[split][metric]`` of the curve splits."""
        score = scores["val"][self.metric]
        self.scores.append(score)
        self.last = epoch
        if score > self.best[0]:
            self.best = (score, epoch)
            if self.keep_best:
                self.best_state = state()
        if not self.explanation:
            return
        reliance = score - scores["val_intervened"][self.metric]  # the same validation score on both
        self.keys.append((reliance, -score, epoch))
        best = max(self.scores)
        new = _Candidate(epoch, score, reliance, {})
        pool = [c for c in self.candidates + [new] if c.score >= best - DELTA - TOLERANCE]
        kept = [c for c in pool if not any(o is not c and o.score >= c.score and o.key() < c.key() for o in pool)]
        if any(c is new for c in kept):
            new.state = state()
        self.candidates = kept

    def chosen(self) -> dict[str, dict[str, Any]]:
        """Each protocol's ``selected_epoch``, ``tied_epochs`` (epochs sharing the winning selection value: all
        of them means the protocol could not tell the epochs apart; None for ``oracle``, which compares none) and ``state`` (None for ``oracle``, the last
        epoch's model, and for ``train_like`` without ``keep_best``: the caller holds them)."""
        out: dict[str, dict[str, Any]] = {
            "train_like": {"selected_epoch": self.best[1], "tied_epochs": self.scores.count(self.best[0]),
                           "state": self.best_state if self.keep_best else None},
        }
        if self.oracle:
            out["oracle"] = {"selected_epoch": self.last, "tied_epochs": None, "state": None}  # no value compared
        if self.explanation:
            best = max(self.scores)
            window = [k for k in self.keys if -k[1] >= best - DELTA - TOLERANCE]
            win = min(window)
            pick = next(c for c in self.candidates if c.epoch == win[2])
            out["explanation"] = {"selected_epoch": pick.epoch,
                                  "tied_epochs": sum(1 for k in window if k[:2] == win[:2]), "state": pick.state}
        return out


def score_metric(select: str) -> str:
    """The validation metric that ``select`` ranks epochs by."""
    return "balanced_acc" if select == "best_val_balanced" else "acc"
