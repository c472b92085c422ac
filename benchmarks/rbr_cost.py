"""Time per training step of RBR vs 'standard' and 'rrr' (explearn.methods), batch 32, small_cnn defaults, 32x32
triangles, one torch thread, one process, the three methods interleaved (each round runs one step of each, in an
order that rotates every round, so that drift in the machine's load hits all three alike).

Also the memory the autograd graph holds at the moment of the training backward: the bytes of the tensors saved
for backward while the loss is built (torch.autograd.graph.saved_tensors_hooks; tensors shared between nodes are
counted once per save, so this is an upper bound on the graph's own memory, not the process's peak).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rbr_cost.py
"""

import statistics
import time

import torch

from explearn import datasets
from explearn.methods import METHODS
from explearn.methods.base import Batch, cross_entropy, wrong_reasons
from explearn.methods.rbr import influence_penalty, rbr_terms
from explearn.methods.rrr import rrr_forward
from explearn.models import small_cnn

torch.set_num_threads(1)
NAMES = ("standard", "rrr", "rbr")
WARMUP, ROUNDS, BATCH = 5, 40, 32

d = datasets.triangles(n_train=500, seed=0, image_size=32).train
perm = torch.randperm(len(d), generator=torch.Generator().manual_seed(0))
batches = []
for k in range(0, len(d) - BATCH + 1, BATCH):
    i = perm[k:k + BATCH]
    batches.append(Batch(d.x[i], d.y[i], d.mask[i], d.has_mask[i], d.wrong_mask[i], d.has_wrong_mask[i]))


def build(name):
    torch.manual_seed(0)
    cls = METHODS.get(name)
    return cls(small_cnn((1, 32, 32), 2), cls.HParams(), batches_per_epoch=len(batches))


methods = {name: build(name) for name in NAMES}
times = {name: [] for name in NAMES}
for r in range(WARMUP + ROUNDS):
    batch = batches[r % len(batches)]
    order = NAMES[r % 3:] + NAMES[:r % 3]
    for name in order:
        t0 = time.perf_counter()
        methods[name].update(batch)
        dt = time.perf_counter() - t0
        if r >= WARMUP:
            times[name].append(dt)

med = {name: statistics.median(v) for name, v in times.items()}
for name in NAMES:
    q = statistics.quantiles(times[name], n=4)
    print(f"{name:9s} median {1000 * med[name]:7.2f} ms/step (quartiles {1000 * q[0]:.2f}-{1000 * q[2]:.2f}), "
          f"x{med[name] / med['standard']:.1f} standard, x{med[name] / med['rrr']:.2f} rrr")


def saved_bytes(build_loss):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = build_loss()
    del loss
    return total[0]


net = small_cnn((1, 32, 32), 2)
batch = batches[0]
wrong, has = wrong_reasons(batch)
params = [p for p in net.parameters() if p.requires_grad]


def rbr_loss():
    out, influence, grad = rbr_terms(net, batch.x, batch.y, params)
    return torch.nn.functional.cross_entropy(out, batch.y) + influence_penalty(influence, grad, wrong).mean()


def rrr_loss():
    out, pen = rrr_forward(net, batch.x, wrong)
    return torch.nn.functional.cross_entropy(out, batch.y) + pen.mean()


mem = {"standard": saved_bytes(lambda: cross_entropy(net, batch)), "rrr": saved_bytes(rrr_loss),
       "rbr": saved_bytes(rbr_loss)}
for name in NAMES:
    print(f"{name:9s} saved for backward {mem[name] / 2**20:6.1f} MiB (x{mem[name] / mem['standard']:.1f} standard)")
