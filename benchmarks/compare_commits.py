"""Epoch times of the same methods under several code versions, measured in one session.

Usage: python benchmarks/compare_commits.py REV [REV ...] [--methods standard two_stage rrr] [--rounds 3]
                                             [--epochs 3] [--threads 1]

Each REV (a commit, tag or ``HEAD``; ``.`` is the working tree) is checked out in a temporary git worktree, and one
process per version trains each method on the default triangle benchmark (500 samples, data seed 0) for run seeds
0 and 1, reading ``time/epoch_s`` (training steps only). The versions are alternated ``--rounds`` times, so that a
change of the machine's load hits every version alike; each method's figure is the median over rounds and seeds of
its ratio to ``standard`` within the same process (paired). A script, not a timed test: timings depend on the
machine and its load; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from explearn import datasets, train
data = datasets.triangles(n_train=500, seed=0)
out = {}
for r in range(2):
    for m in sys.argv[3:]:
        out.setdefault(m, []).append(train(data, m, r, epochs=int(sys.argv[2]), quiet=True).metrics["time/epoch_s"])
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revs", nargs="+", help="commits to compare; '.' is the working tree")
    parser.add_argument("--methods", nargs="+", default=["standard", "two_stage", "rrr"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if "standard" not in args.methods:
        args.methods.insert(0, "standard")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for rev in args.revs:
            if rev == ".":
                sources[rev] = ROOT / "src"
                continue
            tree = Path(tmp) / f"tree{len(sources)}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                           capture_output=True)
            sources[rev] = tree / "src"
        times: dict[str, dict[str, list[float]]] = {rev: {} for rev in args.revs}
        try:
            for _ in range(args.rounds):
                for rev, src in sources.items():
                    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(args.threads))
                    done = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), str(args.epochs),
                                           *args.methods], env=env, check=True, capture_output=True, text=True)
                    for method, values in json.loads(done.stdout.splitlines()[-1]).items():
                        times[rev].setdefault(method, []).extend(values)
        finally:
            for rev in args.revs:
                if rev != ".":
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                    str(sources[rev].parent)], capture_output=True)
    print(f"triangles 500, {args.epochs} epochs, run seeds 0-1, {args.rounds} alternated rounds, "
          f"{args.threads} thread(s); s / epoch of standard and each method's median paired ratio to it")
    print("| code | standard s / epoch | " + " | ".join(m for m in args.methods if m != "standard") + " |")
    print("|---|---|" + "---|" * (len(args.methods) - 1))
    for rev, per in times.items():
        base = per["standard"]
        cells = [f"{statistics.median(a / b for a, b in zip(per[m], base)):.2f}x"
                 for m in args.methods if m != "standard"]
        print(f"| {rev} | {statistics.median(base):.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
