"""Calibrate the triangle benchmark's difficulty: label-only test accuracy at 500 balanced training samples.

Usage: python benchmarks/calibrate_triangles.py --difficulty 0.3 0.5 0.7 --seeds 0 1 2 [--method standard]

Each (difficulty, seed) pair uses that seed as both data seed and run seed; prints a Markdown table of the mean
and standard deviation of test accuracy (the selected model, chosen on validation) per difficulty.
"""

from __future__ import annotations

import argparse
import statistics
import time

from explearn import datasets, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--difficulty", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="standard")
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    print(f"| difficulty | method | n_train | seeds | test acc (mean ± std) | val acc | per-seed test acc | s/run |")
    print("|---|---|---|---|---|---|---|---|")
    for difficulty in args.difficulty:
        tests, vals, times = [], [], []
        for seed in args.seeds:
            data = datasets.triangles(n_train=args.n_train, seed=seed, difficulty=difficulty)
            start = time.perf_counter()
            result = train(data, method=args.method, seed=seed, epochs=args.epochs, quiet=True)
            times.append(time.perf_counter() - start)
            tests.append(result.metrics["test/acc"])
            vals.append(result.metrics["val/acc"])
        std = statistics.stdev(tests) if len(tests) > 1 else float("nan")
        print(
            f"| {difficulty:g} | {args.method} | {args.n_train} | {','.join(map(str, args.seeds))} | "
            f"{statistics.mean(tests):.3f} ± {std:.3f} | {statistics.mean(vals):.3f} | "
            f"{' '.join(f'{t:.3f}' for t in tests)} | {statistics.mean(times):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
