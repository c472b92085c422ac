"""Is sharing one forward of f(x) (two_stage ``order="stage2_first"``) equivalent to the order explearn used before
(``stage1_first``) on the paper's headline settings? Issue 13's equivalence check, resumable.

The rule, fixed before any run of this script (committed with it):

- settings: the paper's headline triangle settings at the full preset's budget: 500 balanced training samples;
  the 9:1 imbalance (450 : 50, epoch chosen by validation balanced accuracy); a spurious square that agrees with
  the label in 90 % and in 100 % of training images; each with 30 epochs, batch 32, the method's default settings
  (lr_ratio 1), run seeds 0-9, data seed = run seed (as the paper specs), the default model;
- metric: test accuracy of the selected epoch; paired difference new - old per seed;
- margin: +-0.02 test accuracy;
- decision: the new order becomes the default if, in every setting, the 90 % confidence interval of the mean paired
  difference (Student's t; two one-sided tests at 5 %) lies inside [-0.02, +0.02]; otherwise the old order stays
  the default and the new one remains a setting. The 95 % interval is printed too.

Usage: python benchmarks/stage_order.py [--out runs/stage_order] [--workers 2] [--seeds 10]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from scipy import stats

from explearn.store import RunStore
from explearn.sweep import RunSpec, run_sweep

MARGIN = 0.02
SETTINGS = {
    "small data, 500 samples": ({"n_train": 500}, "best_val"),
    "9:1 imbalance": ({"train_per_class": [450, 50]}, "best_val_balanced"),
    "spurious 90 %": ({"n_train": 500, "spurious_rate": 0.9}, "best_val"),
    "spurious 100 %": ({"n_train": 500, "spurious_rate": 1.0}, "best_val"),
}
ORDERS = ("stage1_first", "stage2_first")


def run(setting: str, order: str, seed: int) -> RunSpec:
    data, select = SETTINGS[setting]
    return RunSpec.create("triangles", data, seed, "two_stage", {"order": order}, "small_cnn", {}, seed, 30,
                          select=select, curves="val")


def interval(diffs: list[float], level: float) -> tuple[float, float]:
    mean, sem = statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5
    half = stats.t.ppf(1 - (1 - level) / 2, len(diffs) - 1) * sem
    return mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/stage_order")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    store = RunStore(Path(args.out))
    runs = [run(s, o, k) for s in SETTINGS for o in ORDERS for k in range(args.seeds)]
    outcome = run_sweep(runs, store, args.workers)
    print(f"{len(outcome.trained)} runs trained, {len(outcome.skipped)} reused, {len(outcome.failed)} failed")
    print(f"margin +-{MARGIN}; new = stage2_first, old = stage1_first; seeds 0-{args.seeds - 1}\n")
    print("| setting | old test acc | new test acc | paired difference | 90 % CI | 95 % CI | inside the margin |")
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    for setting in SETTINGS:
        acc = {o: [store.load(run(setting, o, k).run_id)["metrics"]["test/acc"] for k in range(args.seeds)]
               for o in ORDERS}
        diffs = [b - a for a, b in zip(acc["stage1_first"], acc["stage2_first"])]
        lo90, hi90 = interval(diffs, 0.90)
        lo95, hi95 = interval(diffs, 0.95)
        inside = -MARGIN <= lo90 and hi90 <= MARGIN
        verdicts.append(inside)
        print(f"| {setting} | {statistics.mean(acc['stage1_first']):.3f} | {statistics.mean(acc['stage2_first']):.3f} "
              f"| {statistics.mean(diffs):+.3f} | [{lo90:+.3f}, {hi90:+.3f}] | [{lo95:+.3f}, {hi95:+.3f}] | "
              f"{'yes' if inside else 'no'} |")
    print(f"\nequivalent within +-{MARGIN} in every setting: {'yes' if all(verdicts) else 'no'}")


if __name__ == "__main__":
    main()
