"""Time per training epoch of each method on the default triangle benchmark (500 samples, batch 32).

Usage: python benchmarks/epoch_time.py [--methods standard two_stage rrr] [--epochs 5] [--repeats 3] [--threads 1]

Measures the training steps only (no evaluation), as recorded by ``train`` in ``time/epoch_s``. The methods are
interleaved in this process (repeat r trains each method once, run seed r, data seed 0, the order rotated), so a
change of the machine's load hits them alike; each method's ratio to ``standard`` is the median over repeats of
the ratio within the repeat. ``--threads`` defaults to 1 (on a shared machine, two threads slow down by 1.7-2.6x
when another process keeps a core busy: ``benchmarks/threads.py``); ``two_stage:order=stage2_first`` names a
method with a setting. A script, not a timed test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch

from explearn import datasets, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["standard", "two_stage", "two_stage:order=stage2_first",
                                                         "two_stage_no_mapping", "joint", "rrr"])
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = datasets.triangles(n_train=args.n_train, seed=0)
    times: dict[str, list[float]] = {m: [] for m in args.methods}
    for r in range(args.repeats):
        for label in args.methods[r % len(args.methods):] + args.methods[:r % len(args.methods)]:
            method, _, setting = label.partition(":")
            hp = dict(kv.split("=", 1) for kv in setting.split(",")) if setting else {}
            result = train(data, method, r, hparams=hp, epochs=args.epochs, device=args.device, quiet=True)
            times[label].append(result.metrics["time/epoch_s"])
    base = times.get("standard")
    print(f"{args.n_train} samples, batch 32, {args.epochs} epochs x {args.repeats} interleaved repeats, device "
          f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    print("| method | s / epoch (median) | ratio to standard (median of paired ratios) |")
    print("|---|---|---|")
    for label, values in times.items():
        ratio = f"{statistics.median(v / b for v, b in zip(values, base)):.2f}" if base else "-"
        print(f"| {label} | {statistics.median(values):.3f} | {ratio} |")


if __name__ == "__main__":
    main()
