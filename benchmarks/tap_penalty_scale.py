"""The scale of TAP's activation penalty on PH2 (with the marker) and small_resnet at initialisation, to size the PH2
specs' TAP grid (experiments/ph2/_defaults.toml): the mean penalty per sample of a batch of 16 training images,
beside the cross-entropy, for seeds 0-2.

    EXPLEARN_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/tap_penalty_scale.py
"""

from __future__ import annotations

import torch

from explearn import datasets
from explearn.config import from_dict
from explearn.methods.base import Batch, label_loss, wrong_reasons
from explearn.methods.tap import activation_penalty, activations_forward
from explearn.models import MODELS
from explearn.train import build_registered


def main() -> None:
    torch.set_num_threads(1)
    builder, options = MODELS.get("small_resnet")
    for seed in range(3):
        data = datasets.load("ph2", seed=seed, marker=True)
        tr = data.train
        batch = Batch(tr.x[:16], tr.y[:16], tr.mask[:16], tr.has_mask[:16], tr.wrong_mask[:16], tr.has_wrong_mask[:16])
        torch.manual_seed(seed)
        model = build_registered("small_resnet", builder, from_dict(options, {}, "model"), data.input_shape,
                                 data.n_classes)
        with torch.no_grad():
            activations, logits = activations_forward(model, batch.x, "features")
            penalty = torch.stack([activation_penalty(a, wrong_reasons(batch)[0]) for a in activations]).mean(0)
        print(f"seed {seed}: images {tuple(batch.x.shape)}, cross-entropy {float(label_loss(logits, batch.y)):.3f}, "
              f"penalty per sample mean {float(penalty.mean()):.0f} (min {float(penalty.min()):.0f}, "
              f"max {float(penalty.max()):.0f})")


if __name__ == "__main__":
    main()
