"""``explearn bench``: where the time goes. Training throughput of each method, its time and FLOP ratio to label-only
training (measured interleaved in one process), explearn's RRR against a re-implementation of a peer's RRR loop, the
share of a default run spent in training steps, models per minute for many seeds (sequential vs vectorised),
achieved floating-point throughput against this machine's measured sgemm peak, the machine's other load during the
measurement, and the wall time of the reproduction presets.

A command, not a timed test: timings depend on the machine and its load. Every figure is measured in the run that
prints it, except the preset wall times read from the manifests of earlier reproductions (marked as such).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from explearn.errors import DataError

@dataclass(frozen=True)
class Workload:
    """A benchmark workload: a dataset builder and the model the experiments use on it."""

    name: str
    build: Callable[[], Any]
    model: str


def workloads(quick: bool) -> list[Workload]:
    """The triangle benchmark (500 samples, small_cnn, as the paper's experiments) and Decoy-MNIST (mlp, as Ross et
    al.; needs $EXPLEARN_DATA/mnist)."""
    from explearn import datasets

    n = 1000 if quick else 5000
    return [
        Workload("triangles (500, small_cnn)", lambda: datasets.triangles(n_train=500, seed=0), "small_cnn"),
        Workload(f"decoy_mnist ({n}, mlp)",
                 lambda: datasets.load("decoy_mnist", seed=0, n_train=n, n_val=1000, n_test=1000), "mlp"),
    ]


def run_bench(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure everything; returns JSON-ready figures (``markdown`` renders them). Uses the torch threads set by the
    caller (``explearn bench --threads``) and says how busy the machine was with other work meanwhile."""
    threads = torch.get_num_threads()
    with OtherLoad() as load:
        out: dict[str, Any] = {"machine": machine(), "quick": quick, "threads": threads, "workloads": {}}
        out["peak"] = peak_flops()
        log(f"peak: measured {out['peak']['measured_gflops']:.1f} GFLOP/s (best sgemm, {threads} threads)")
        methods = ["standard", "two_stage", "two_stage:order=stage2_first", "rrr"] if quick else [
            "standard", "two_stage", "two_stage:order=stage2_first", "two_stage_no_mapping", "joint", "rrr",
            "rrr_gradcam", "hint", "counterexamples"]
        for w in workloads(quick):
            try:
                data = w.build()
            except DataError as err:
                log(f"{w.name}: skipped ({err})")
                out["workloads"][w.name] = {"skipped": str(err).splitlines()[0]}
                continue
            usable = [m for m in methods if w.model != "mlp" or m not in ("rrr_gradcam", "hint")]  # Grad-CAM: maps
            out["workloads"][w.name] = {
                "methods": method_throughput(data, w.model, usable, epochs=2 if quick else 3, repeats=3 if quick else 5,
                                             log=log),
                "peer_rrr": peer_rrr(data, w.model, epochs=1 if quick else 2, repeats=3 if quick else 5, log=log),
                "seeds": seed_throughput(data, w.model, ["standard"] if quick else ["standard", "two_stage", "rrr"],
                                         epochs=1 if quick else 3, log=log),
            }
        out["run_share"] = run_share(epochs=10 if quick else 30, log=log)
        out["presets"] = preset_times(quick, log)
    out["other_load"] = load.share
    log(f"other processes used {100 * load.share:.0f} % of the machine's CPU time during the measurement")
    return out


class OtherLoad:
    """The share of the machine's CPU time that other processes used during a block: all cores' busy time
    (/proc/stat) minus this process's own (``os.times``, children included), over wall time x cores. NaN where
    /proc/stat does not exist. A share above ``CONTENDED`` makes the timings of the block unreliable: two
    processes that each use every core slow each other far more than twofold."""

    #: other processes' share of the machine above which timings are flagged as contended
    CONTENDED = 0.05

    def __enter__(self) -> "OtherLoad":
        self.share = float("nan")
        self._start = (_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = _busy_seconds(), _own_seconds(), time.perf_counter()
        if busy is not None and self._start[0] is not None and wall > self._start[2]:
            other = (busy - self._start[0]) - (own - self._start[1])
            self.share = max(0.0, other / ((wall - self._start[2]) * (os.cpu_count() or 1)))


def _busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def method_throughput(data, model: str, methods: list[str], epochs: int, repeats: int,
                      log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Training samples per second of each method (training steps only, ``time/epoch_s``), measured interleaved in
    this process: repeat r trains every method once (run seed r, the order rotated each repeat), so that a change
    of the machine's load hits every method alike. The ratio to ``standard`` is the median over repeats of the
    ratio within the repeat (paired); the FLOP ratio comes from ``epoch_flops``. A method may carry settings:
    ``two_stage:order=stage2_first``."""
    from explearn import train

    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(repeats):
        for label in methods[r % len(methods):] + methods[:r % len(methods)]:
            method, hp = method_and_settings(label)
            result = train(data, method, r, hparams=hp, model=model, epochs=epochs, quiet=True)
            seconds[label].append(result.metrics["time/epoch_s"])
    rows: dict[str, dict[str, float]] = {}
    base = seconds.get("standard")
    flops_base = epoch_flops(data, "standard", model=model) if base else float("nan")
    for method, values in seconds.items():
        s = statistics.median(values)
        flops = epoch_flops(data, *method_and_settings(method), model=model)
        rows[method] = {"epoch_s": s, "samples_per_s": len(data.train) / s, "flops_per_epoch": flops,
                        "gflops": flops / s / 1e9,
                        "ratio_to_standard": (statistics.median(v / b for v, b in zip(values, base)) if base
                                              else float("nan")),
                        "flop_ratio_to_standard": flops / flops_base if base else float("nan")}
        log(f"  {method}: {s:.3f} s/epoch, {rows[method]['ratio_to_standard']:.2f}x standard (FLOPs "
            f"{rows[method]['flop_ratio_to_standard']:.2f}x), {rows[method]['gflops']:.1f} GFLOP/s")
    return rows


def peer_rrr(data, model: str, epochs: int, repeats: int, log: Callable[[str], None]) -> dict[str, float]:
    """explearn's RRR against the RRR training loop of a peer, the XIL typology code (Friedrich et al. 2023,
    github.com/ml-research/A-Typology-for-Exploring-the-Mitigation-of-Shortcut-Behavior: ``learner/learner.py``'s
    ``fit`` with ``xil_methods/xil_loss.py``'s ``RRRLoss``), re-implemented here step for step for timing: per
    batch, zero the gradients, make the input require its gradient, one forward, the cross-entropy, the input
    gradient of the log-softmax (``autograd.grad`` with ones as output gradients, ``create_graph``), the summed
    squared masked gradient times its rates, one backward of the sum (which also fills the input's gradient), an
    Adam step, and the batch's correct predictions counted with ``.item()``. Both train the same network from the
    same initialisation on the same batches (run seed r's order, 32 per batch, the default layout for the peer, as
    its code has it), interleaved in this process; the figure is the median over repeats of the paired ratio
    (explearn's seconds per epoch of training steps / the peer's). Data loading is left out of both."""
    import torch.nn.functional as F

    from explearn import train
    from explearn.methods.base import Batch, wrong_reasons
    from explearn.models import MODELS
    from explearn.train import batch_bounds

    builder, options = MODELS.get(model)
    t = data.train
    wrong_all, _ = wrong_reasons(Batch(t.x, t.y, t.mask, t.has_mask, t.wrong_mask, t.has_wrong_mask))  # the masks
    ours, theirs = [], []
    for r in range(repeats):
        ours.append(train(data, "rrr", r, model=model, epochs=epochs, quiet=True).metrics["time/epoch_s"])
        torch.manual_seed(r)
        net = builder(data.input_shape, data.n_classes, options())
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        order = torch.Generator().manual_seed(r)
        tic = time.perf_counter()
        for _ in range(epochs):
            net.train()
            perm = torch.randperm(len(t), generator=order)
            correct = 0
            for start, stop in batch_bounds(len(t), 32):
                i = perm[start:stop]
                x, y, wrong = t.x[i], t.y[i], wrong_all[i]  # indexing copies, as a data loader's batch is new
                optimizer.zero_grad()
                x.requires_grad_()
                logits = net(x)
                correct += (logits.argmax(1) == y).float().sum().item()
                right_answer = F.cross_entropy(logits, y)
                log_prob = F.log_softmax(logits, dim=1)
                log_prob.retain_grad()
                (grad_x,) = torch.autograd.grad(log_prob, x, torch.ones_like(log_prob), create_graph=True,
                                                allow_unused=True)
                right_reason = torch.sum(torch.mul(wrong, grad_x) ** 2) * 1.0 * 100.0
                (right_answer + right_reason).backward()
                optimizer.step()
        theirs.append((time.perf_counter() - tic) / epochs)
    ratio = statistics.median(a / b for a, b in zip(ours, theirs))
    log(f"  rrr: explearn {statistics.median(ours):.3f} s/epoch, the peer's loop {statistics.median(theirs):.3f}: "
        f"{ratio:.2f}x")
    return {"explearn_epoch_s": statistics.median(ours), "peer_epoch_s": statistics.median(theirs),
            "ratio": ratio}


def run_share(epochs: int, log: Callable[[str], None]) -> dict[str, float]:
    """Where the wall time of a default ``explearn train`` run goes (triangles, 500 samples, two_stage, run and data
    seed 0, ``epochs`` epochs): building the data, the training steps, the per-epoch evaluation, and the rest
    (building the model, the final metrics). ``training_share`` = training steps / all of it."""
    from explearn import datasets, train

    tic = time.perf_counter()
    data = datasets.triangles(n_train=500, seed=0)
    data_s = time.perf_counter() - tic
    tic = time.perf_counter()
    result = train(data, "two_stage", 0, epochs=epochs, quiet=True)
    train_call = time.perf_counter() - tic
    m = result.metrics
    steps = m["time/epoch_s"] * epochs
    out = {"epochs": epochs, "data_s": data_s, "training_s": steps, "evaluation_s": m["time/total_s"] - steps,
           "other_s": train_call - m["time/total_s"], "wall_s": data_s + train_call}
    out["training_share"] = steps / out["wall_s"]
    log(f"  a default train run ({epochs} epochs): {100 * out['training_share']:.0f} % training steps, data "
        f"{out['data_s']:.1f} s, evaluation {out['evaluation_s']:.1f} s, final metrics and set-up {out['other_s']:.1f} s")
    return out


def method_and_settings(label: str) -> tuple[str, dict[str, str]]:
    """``"two_stage:order=stage2_first,lr_ratio=10"`` -> ``("two_stage", {"order": ..., "lr_ratio": ...})``."""
    method, _, settings = label.partition(":")
    return method, dict(kv.split("=", 1) for kv in settings.split(",")) if settings else {}


def epoch_flops(data, method: str, hparams: dict | None = None, model: str = "small_cnn") -> float:
    """FLOPs of one training epoch: one ``update`` on the first batch, counted with the FLOP formulas of
    ``torch.utils.flop_counter`` (matmuls and convolutions, forward and backward, double backward included), times
    the batches per epoch."""
    from explearn.config import from_dict
    from explearn.methods import METHODS
    from explearn.methods.base import Batch
    from explearn.models import MODELS

    torch.manual_seed(0)
    builder, options = MODELS.get(model)
    net = builder(data.input_shape, data.n_classes, options())
    cls = METHODS.get(method)
    batches = -(-len(data.train) // 32)
    algo = cls(net, from_dict(cls.HParams, hparams or {}, method), batches)
    t = data.train
    batch = Batch(t.x[:32], t.y[:32], t.mask[:32], t.has_mask[:32], t.wrong_mask[:32], t.has_wrong_mask[:32])
    with _FlopCount() as counter:
        algo.update(batch)
        algo.end_epoch()
    return float(counter.total) * batches


class _FlopCount(TorchDispatchMode):
    """Counts FLOPs of every aten op with a formula in torch's flop registry. torch's own FlopCounterMode also
    tracks modules with hooks, which ``autograd.grad`` inside a training step (RRR) does not allow."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils.flop_counter import flop_registry

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def seed_throughput(data, model: str, methods: list[str], epochs: int,
                    log: Callable[[str], None]) -> dict[str, dict[str, dict[str, float]]]:
    """Models per minute for S = 1, 10, 30 run seeds: S separate ``train`` calls against one ``train_many`` call."""
    from explearn import train
    from explearn.vectorized import train_many, vectorizable

    rows: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        rows[method] = {}
        for s in (1, 10, 30):
            tic = time.perf_counter()
            for seed in range(s):
                train(data, method, seed, model=model, epochs=epochs, curves="val", quiet=True)
            sequential = time.perf_counter() - tic
            row = {"sequential_models_per_min": 60 * s / sequential}
            if vectorizable(method, model):
                tic = time.perf_counter()
                train_many(data, list(range(s)), method, model=model, epochs=epochs, curves="val")
                row["vectorized_models_per_min"] = 60 * s / (time.perf_counter() - tic)
                row["speedup"] = row["vectorized_models_per_min"] / row["sequential_models_per_min"]
            rows[method][str(s)] = row
            log(f"  {method} S={s}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
    return rows


def preset_times(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Wall time of ``reproduce paper`` at the smoke preset (and quick, without --quick), measured now in a fresh
    folder, and the wall times recorded in the manifests of the reports in ``reports/`` (earlier runs)."""
    measured = {}
    for preset in ["smoke"] if quick else ["smoke", "quick"]:
        with tempfile.TemporaryDirectory() as tmp:
            tic = time.perf_counter()
            subprocess.run([sys.executable, "-m", "explearn.cli", "reproduce", "paper", "--preset", preset, "--out", tmp], check=True,
                           capture_output=True)
            measured[f"paper/{preset}"] = time.perf_counter() - tic
        log(f"  reproduce paper --preset {preset}: {measured[f'paper/{preset}']:.0f} s")
    return {"measured": measured, "recorded": recorded_presets(Path("reports"))}


def recorded_presets(root: Path) -> dict[str, dict[str, Any]]:
    """``report folder -> {preset, seconds, trained, skipped}`` from every ``manifest.json`` under ``root``."""
    out = {}
    for path in sorted(root.glob("*/manifest.json")):
        manifest = json.loads(path.read_text())
        timing = manifest.get("timing") or {}
        if "seconds" in timing:
            out[path.parent.name] = {"preset": manifest.get("preset"), "seconds": timing["seconds"],
                                     "trained": timing.get("trained"), "skipped": timing.get("skipped")}
    return out


def peak_flops() -> dict[str, Any]:
    """This machine's fp32 peak as measured: the best of repeated 2048 x 2048 matrix products, the highest rate torch
    reaches here, with the current torch threads. (No theoretical peak: a virtual machine's reported clock and the
    FLOPs per cycle of its vector unit, e.g. AVX-512 run in two halves on AMD Zen 4, do not predict it: on this
    machine the formula gave 166 GFLOP/s while sgemm measured 187.)"""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = 0.0
    for _ in range(6):
        tic = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - tic))
    return {"measured_gflops": best / 1e9, "threads": torch.get_num_threads()}


def machine() -> dict[str, Any]:
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "commit": _commit(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def markdown(fig: dict[str, Any]) -> str:
    """The figures as Markdown: per workload the methods (interleaved, paired ratios), explearn's RRR against the
    peer's loop and the seeds; then where a default run's time goes, the presets, and how busy the machine was."""
    m, peak = fig["machine"], fig["peak"]
    load = fig.get("other_load", float("nan"))
    busy = ("" if load != load else  # NaN: not measurable here
            f" Other processes used {100 * load:.0f} % of the machine's CPU time meanwhile"
            + (": **contended, these timings are unreliable**." if load > OtherLoad.CONTENDED else "."))
    lines = [f"## {m['date']}, commit {m['commit']}{' (--quick)' if fig['quick'] else ''}", "",
             f"{m['cpu']}, {m['cores']} cores, {fig['threads']} torch threads, torch {m['torch']}"
             + (f", GPU {m['cuda']}" if m["cuda"] else "") + "." + busy, "",
             f"Peak fp32: measured {peak['measured_gflops']:.1f} GFLOP/s (best 2048 x 2048 sgemm).", ""]
    for name, w in fig["workloads"].items():
        if "skipped" in w:
            lines += [f"**{name}**: skipped ({w['skipped']})", ""]
            continue
        lines += [f"**{name}**: training steps only; methods interleaved in one process, ratios paired by repeat", "",
                  "| method | s / epoch | samples / s | ratio to standard | FLOP ratio | GFLOP / epoch | GFLOP/s | "
                  "% of measured peak |", "|---|---|---|---|---|---|---|---|"]
        for method, r in w["methods"].items():
            lines.append(f"| {method} | {r['epoch_s']:.3f} | {r['samples_per_s']:.0f} | {r['ratio_to_standard']:.2f} | "
                         f"{r.get('flop_ratio_to_standard', float('nan')):.2f} | {r['flops_per_epoch'] / 1e9:.2f} | "
                         f"{r['gflops']:.1f} | {100 * r['gflops'] / peak['measured_gflops']:.0f} % |")
        if "peer_rrr" in w:
            p = w["peer_rrr"]
            lines += ["", f"RRR: explearn {p['explearn_epoch_s']:.3f} s / epoch, a faithful re-implementation of the "
                          f"XIL typology code's RRR loop {p['peer_epoch_s']:.3f} s: explearn takes {p['ratio']:.2f}x "
                          "the peer's time."]
        lines += ["", "| method | seeds S | sequential models / min | vectorised models / min | speed-up |",
                  "|---|---|---|---|---|"]
        for method, per_s in w["seeds"].items():
            for s_, r in per_s.items():
                vec = r.get("vectorized_models_per_min")
                lines.append(f"| {method} | {s_} | {r['sequential_models_per_min']:.1f} | "
                             + (f"{vec:.1f} | {r['speedup']:.2f}x |" if vec else "n/a | - |"))
        lines.append("")
    if "run_share" in fig:
        r = fig["run_share"]
        lines += [f"A default `train` run (triangles, 500 samples, two_stage, {r['epochs']} epochs): "
                  f"{100 * r['training_share']:.0f} % of {r['wall_s']:.1f} s in training steps; data "
                  f"{r['data_s']:.1f} s, per-epoch evaluation {r['evaluation_s']:.1f} s, model and final metrics "
                  f"{r['other_s']:.1f} s.", ""]
    lines += ["| reproduction | preset | wall time | runs trained (reused) | source |", "|---|---|---|---|---|"]
    for name, seconds in fig["presets"]["measured"].items():
        collection, preset = name.split("/")
        lines.append(f"| {collection} | {preset} | {seconds:.0f} s | all | measured now, fresh folder |")
    for name, r in fig["presets"]["recorded"].items():
        lines.append(f"| reports/{name} | {r['preset']} | {r['seconds']:.0f} s | {r['trained']} ({r['skipped']}) | "
                     "recorded by that reproduction |")
    return "\n".join(lines) + "\n"


def append_log(path: Path, text: str) -> None:
    """Append ``text`` to the benchmark log (created with a heading), so the history stays visible."""
    if not path.exists():
        path.write_text("# Benchmark log\n\nAppended by `explearn bench`; newest last.\n\n")
    with path.open("a") as fh:
        fh.write(text + "\n")
