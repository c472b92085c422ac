"""Scale of the RBR term at initialisation vs the cross-entropy (explearn.methods.rbr, the default lam).

small_cnn defaults, 32x32 triangles (n_train=500), seeds 0, 1, 2 (data seed = init seed), one torch thread; the
whole training split as one batch, and a random batch of 64 of its samples (torch.randperm with a generator
seeded s; the split is sorted by class, so its first 64 samples are all of class 0). For each: CE value and the
norm of its gradient in the weights; RBR's penalty (the mean over the batch of the per-sample penalty, as the method logs it) and the
norm of its gradient in the weights. Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rbr_scale.py
"""

import time

import torch

from explearn import datasets
from explearn.methods.base import Batch, label_loss, wrong_reasons
from explearn.methods.rbr import influence_penalty, rbr_terms
from explearn.models import small_cnn

torch.set_num_threads(1)


def norm(grads):
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])))


rows = []
for s in 0, 1, 2:
    d = datasets.triangles(n_train=500, seed=s, image_size=32).train
    for n in (len(d), 64):
        i = torch.randperm(len(d), generator=torch.Generator().manual_seed(s))[:n]
        batch = Batch(d.x[i], d.y[i], d.mask[i], d.has_mask[i], d.wrong_mask[i], d.has_wrong_mask[i])
        torch.manual_seed(s)
        net = small_cnn((1, 32, 32), 2)
        params = [p for p in net.parameters() if p.requires_grad]
        t0 = time.perf_counter()
        wrong, has = wrong_reasons(batch)
        out, influence, grad = rbr_terms(net, batch.x, batch.y, params)
        ce = label_loss(out, batch.y)
        per_sample = influence_penalty(influence[has], grad[has], wrong[has])
        pen = per_sample.sum() / n
        g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
        g_pen = torch.autograd.grad(pen, params, allow_unused=True)
        # parts: the influence term and the input gradient on the wrong reasons, each's mean squared norm
        inf_sq = float((wrong * influence.detach()).pow(2).flatten(1).sum(1).mean())
        ig_sq = float((wrong * grad.detach()).pow(2).flatten(1).sum(1).mean())
        rows.append((s, n, ce.item(), norm(g_ce), pen.item(), norm(g_pen), inf_sq, ig_sq,
                     per_sample.max().item(), time.perf_counter() - t0))
        print("seed %d n %3d: CE %.4f |g_CE| %.4f  RBR %.3e |g_RBR| %.3e  ratio value %.3e grad %.3e  "
              "|W*IF|^2 %.3e |W*IG|^2 %.3e  max sample %.3e  (%.1fs)"
              % (s, n, rows[-1][2], rows[-1][3], rows[-1][4], rows[-1][5], rows[-1][4] / rows[-1][2],
                 rows[-1][5] / rows[-1][3], inf_sq, ig_sq, rows[-1][8], rows[-1][9]), flush=True)
