"""A short training check of RBR's lam on the triangle benchmark (the way energy.py / hint.py chose theirs):
2 seeds (data seed = run seed), 500 training images, 32x32, small_cnn defaults, 20 epochs, batch 32, one torch
thread; validation accuracy of the selected epoch (best_val) and the last, and the logged penalty (mean over the
epoch's batches) at epochs 1, 5, 10, 20. Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rbr_lam_check.py
"""

import sys
import time

import torch

from explearn import datasets, train

torch.set_num_threads(1)
lams = [float(v) for v in sys.argv[1:]] or [1e3, 1e4, 1e5, 1e6]
for s in 0, 1:
    data = datasets.triangles(n_train=500, seed=s, image_size=32)
    for name, lam in [("standard", None), ("rrr", None)] + [("rbr", v) for v in lams]:
        t0 = time.perf_counter()
        hp = {} if lam is None else {"lam": lam}
        r = train(data, name, s, hparams=hp, epochs=20, quiet=True)
        pen = {int(h["epoch"]): h["value"] for h in r.history if h["split"] == "train"
               and h["metric"] in ("rbr_penalty", "rrr_penalty")}
        accs = {int(h["epoch"]): h["value"] for h in r.history if h["split"] == "val" and h["metric"] == "acc"}
        print(f"seed {s} {name:8s} lam {lam!s:8s} val/acc {r.metrics['val/acc']:.3f} (epoch "
              f"{r.metrics['selected_epoch']}) last {accs[max(accs)]:.3f} test/acc {r.metrics['test/acc']:.3f} "
              f"penalty e1 {pen.get(1, float('nan')):.2e} e5 {pen.get(5, float('nan')):.2e} "
              f"e10 {pen.get(10, float('nan')):.2e} e20 {pen.get(20, float('nan')):.2e} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
