"""Cost per image of each evaluation attribution relative to explearn's input_gradient, on small_cnn at 3x32x32
(float32, 4 classes, a batch of 64 images, the predicted class explained). Run with OMP_NUM_THREADS=1:
    OMP_NUM_THREADS=1 python benchmarks/attribution_cost.py
Each attribution is timed REPEATS times after one warm-up call; the minimum is kept (the machine is shared)."""

import os
import time

import torch

from explearn.explain import EVALUATION_ATTRIBUTIONS
from explearn.models import small_cnn

REPEATS, BATCH = 3, 64
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
torch.manual_seed(0)
model = small_cnn((3, 32, 32), 4).eval()
x = torch.rand(BATCH, 3, 32, 32)

seconds = {}
for name in EVALUATION_ATTRIBUTIONS:
    compute = EVALUATION_ATTRIBUTIONS.get(name)
    compute(model, x, None)  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        compute(model, x, None)
        times.append(time.perf_counter() - start)
    seconds[name] = min(times) / BATCH

base = seconds["input_gradient"]
print(f"torch threads {torch.get_num_threads()}, batch {BATCH}, min of {REPEATS}")
print(f"{'attribution':22s} {'ms/image':>9s} {'x input_gradient':>17s}")
for name, s in sorted(seconds.items(), key=lambda kv: kv[1]):
    print(f"{name:22s} {1e3 * s:9.3f} {s / base:17.1f}")
