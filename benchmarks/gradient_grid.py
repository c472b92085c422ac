"""How much of small_resnet's input-gradient maps is a grid from its downsampling (stride-2 convs vs average
pooling), with test balanced accuracy and time per epoch, on PH2.

Usage: EXPLEARN_DATA=... python benchmarks/gradient_grid.py [--seeds 0 1] [--method standard]

For each downsampling mode and run seed (data seed 0): train 30 epochs (batch 16, best validation balanced
accuracy, 1 torch thread), take |input gradient of the predicted class| summed over channels on 20 test images, and
report the share of its spectral energy (DC excluded) at the frequencies of a period-8 grid (the network's total
stride). A script, not a test.
"""

from __future__ import annotations

import argparse

import torch

from explearn import datasets, train
from explearn.explain.gradients import input_gradients


def grid_share(g: torch.Tensor, period: int = 8) -> float:
    """Share of the 2-D power spectrum (DC excluded) at multiples of 1/period in both axes. Shape: (N, H, W)."""
    power = torch.fft.fft2(g).abs() ** 2
    h, w = g.shape[1:]
    grid = power[:, :: h // period, :: w // period].sum() - power[:, 0, 0].sum()
    return float(grid / (power.sum() - power[:, 0, 0].sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--method", default="standard")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = datasets.load("ph2", seed=0)
    print("| downsample | run seed | test balanced acc | test align | s / epoch | grid share of gradient energy |")
    print("|---|---|---|---|---|---|")
    for mode in ("stride", "pool"):
        for seed in args.seeds:
            r = train(data, args.method, seed, model="small_resnet", model_options={"downsample": mode}, epochs=30,
                      batch_size=16, select="best_val_balanced", curves="val", quiet=True)
            model = r.model.eval().to(memory_format=torch.contiguous_format)
            g = input_gradients(model, data.test.x[:20], target="predicted").abs().sum(1)
            m = r.metrics
            print(f"| {mode} | {seed} | {m['test/balanced_acc']:.3f} | {m['test/align']:.3f} | {m['time/epoch_s']:.3f} "
                  f"| {grid_share(g):.4f} |")


if __name__ == "__main__":
    main()
