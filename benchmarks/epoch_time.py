"""Time per training epoch of each method on the default triangle benchmark (500 samples, batch 32).

Usage: python benchmarks/epoch_time.py [--methods standard two_stage rrr] [--epochs 5] [--repeats 3]

Measures the training steps only (no evaluation), as recorded by ``train`` in ``time/epoch_s``, takes the median
over repeats (run seeds 0..repeats-1, data seed 0), and prints a Markdown table with the ratio to ``standard``.
A script, not a timed test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch

from explearn import datasets, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["standard", "two_stage", "two_stage_no_mapping", "joint", "rrr"])
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    data = datasets.triangles(n_train=args.n_train, seed=0)
    times = {}
    for method in args.methods:
        runs = [train(data, method, seed, epochs=args.epochs, device=args.device, quiet=True).metrics["time/epoch_s"]
                for seed in range(args.repeats)]
        times[method] = statistics.median(runs)
    base = times.get("standard")
    print(f"{args.n_train} samples, batch 32, {args.epochs} epochs x {args.repeats} repeats, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| method | s / epoch (median) | ratio to standard |")
    print("|---|---|---|")
    for method, seconds in times.items():
        ratio = f"{seconds / base:.2f}" if base else "-"
        print(f"| {method} | {seconds:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
