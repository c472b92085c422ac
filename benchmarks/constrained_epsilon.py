"""The scale of the feature misalignment, to set the default bound ``epsilon`` of ``two_stage_constrained``.

Measures the two-stage method's misalignment KL(softmax(f(x')) || softmax(m(f(x)))) (its default alignment loss,
eval mode, every training sample) at initialisation and after 10 epochs of ``standard``, ``two_stage`` and
``two_stage_constrained`` (the latter at two bounds epsilon, its constraint on m alone or on f and m, with its
multiplier's mean over the last epoch), on triangles (500 training samples, 32x32), small_cnn, seeds 0-2.
Single-threaded; one process.

    OMP_NUM_THREADS=1 python benchmarks/constrained_epsilon.py
"""

from __future__ import annotations

import torch

from explearn import datasets
from explearn.methods import TwoStageHParams
from explearn.methods.two_stage import alignment_target, mapped_features
from explearn.models import small_cnn
from explearn.train import train


EPSILONS = (0.0003, 0.001)


def misalignment(model, ds) -> float:
    align = TwoStageHParams().alignment()
    keep = ds.has_mask
    with torch.no_grad():
        target = alignment_target(model, ds.x[keep], ds.mask[keep], 0.0)
        model.eval()
        return float(align(mapped_features(model, ds.x[keep]), target))


RUNS = [("standard", {}), ("two_stage", {})] + [
    ("two_stage_constrained", {"epsilon": e, "constraint_on": on}) for on in ("mapping", "features_and_mapping")
    for e in EPSILONS]


def main() -> None:
    torch.set_num_threads(1)
    names = " | ".join(m if not hp else f"{hp['constraint_on']} eps={hp['epsilon']:g}" for m, hp in RUNS)
    print(f"| seed | init | {names} | multipliers (mean over the last epoch) | test acc (same order) |")
    print("|---" * (len(RUNS) + 4) + "|")
    for seed in range(3):
        data = datasets.triangles(n_train=500, seed=seed, image_size=32)
        torch.manual_seed(seed)
        init = misalignment(small_cnn(data.input_shape, data.n_classes), data.train)
        row, accs, mult = [], [], []
        for method, hp in RUNS:
            result = train(data, method, seed, epochs=10, select="last", quiet=True, hparams=hp)
            row.append(misalignment(result.model, data.train))
            accs.append(result.metrics["test/acc"])
            if method == "two_stage_constrained":
                mult.append([r["value"] for r in result.history
                             if r["split"] == "train" and r["metric"] == "multiplier"][-1])
        print(f"| {seed} | {init:.5f} | " + " | ".join(f"{v:.5f}" for v in row)
              + " | " + " / ".join(f"{v:.2f}" for v in mult) + " | " + " / ".join(f"{a:.3f}" for a in accs) + " |")


if __name__ == "__main__":
    main()
