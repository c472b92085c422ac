"""``explearn bench``: where the time goes. Training throughput of each method, the cost of the explanation methods
relative to label-only training, models per minute for many seeds (sequential vs vectorised), achieved
floating-point throughput against this machine's peak, and the wall time of the reproduction presets.

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

#: fp32 FLOPs per cycle per core by instruction set: two 256-bit FMA pipes (8 lanes x 2 FLOPs x 2) for AVX2 + FMA,
#: the same for AVX-512 on AMD Zen 4 (512-bit operations run in two halves), 64 on Intel with two 512-bit FMA units
#: (not detectable from the flags, so the conservative figure is used)
FLOPS_PER_CYCLE = {"avx512f": 32, "avx2": 32, "sse": 8}


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
    """Measure everything; returns JSON-ready figures (``markdown`` renders them)."""
    threads = torch.get_num_threads()
    out: dict[str, Any] = {"machine": machine(), "quick": quick, "threads": threads, "workloads": {}}
    out["peak"] = peak_flops(threads)
    log(f"peak: measured {out['peak']['measured_gflops']:.1f} GFLOP/s (sgemm), theoretical "
        f"{out['peak']['theoretical_gflops'] or 'n/a'}")
    methods = ["standard", "two_stage", "rrr"] if quick else [
        "standard", "two_stage", "two_stage_no_mapping", "joint", "rrr", "rrr_gradcam", "hint", "counterexamples"]
    for w in workloads(quick):
        try:
            data = w.build()
        except DataError as err:
            log(f"{w.name}: skipped ({err})")
            out["workloads"][w.name] = {"skipped": str(err).splitlines()[0]}
            continue
        usable = [m for m in methods if w.model != "mlp" or m not in ("rrr_gradcam", "hint")]  # Grad-CAM needs a map
        out["workloads"][w.name] = {
            "methods": method_throughput(data, w.model, usable, epochs=2 if quick else 5, repeats=1 if quick else 3,
                                         log=log),
            "seeds": seed_throughput(data, w.model, ["standard"] if quick else ["standard", "two_stage", "rrr"],
                                     epochs=1 if quick else 3, log=log),
        }
    out["presets"] = preset_times(quick, log)
    return out


def method_throughput(data, model: str, methods: list[str], epochs: int, repeats: int,
                      log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Training samples per second of each method (training steps only, median over run seeds 0..repeats-1), its
    ratio to ``standard``, and FLOPs per training epoch with the achieved GFLOP/s."""
    from explearn import train

    rows: dict[str, dict[str, float]] = {}
    for method in methods:
        seconds = statistics.median(
            train(data, method, seed, model=model, epochs=epochs, curves="val", quiet=True).metrics["time/epoch_s"]
            for seed in range(repeats))
        flops = epoch_flops(data, method, model)
        rows[method] = {"epoch_s": seconds, "samples_per_s": len(data.train) / seconds, "flops_per_epoch": flops,
                        "gflops": flops / seconds / 1e9}
        log(f"  {method}: {seconds:.3f} s/epoch, {rows[method]['samples_per_s']:.0f} samples/s, "
            f"{rows[method]['gflops']:.1f} GFLOP/s")
    base = rows.get("standard", {}).get("epoch_s")
    for row in rows.values():
        row["ratio_to_standard"] = row["epoch_s"] / base if base else float("nan")
    return rows


def epoch_flops(data, method: str, model: str) -> float:
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
    algo = cls(net, from_dict(cls.HParams, {}, method), batches)
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


def peak_flops(threads: int) -> dict[str, Any]:
    """This machine's fp32 peak: measured as the best of repeated 2048 x 2048 matrix products (the highest rate
    torch reaches here), and theoretical as cores x clock x FLOPs per cycle when the clock is known."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = 0.0
    for _ in range(6):
        tic = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - tic))
    ghz, isa = _clock_ghz(), _isa()
    theory = threads * ghz * FLOPS_PER_CYCLE[isa] if ghz else None
    return {"measured_gflops": best / 1e9, "theoretical_gflops": theory, "clock_ghz": ghz, "isa": isa,
            "flops_per_cycle": FLOPS_PER_CYCLE[isa], "cores": threads}


def _isa() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "sse"
    return next((isa for isa in ("avx512f", "avx2") if f" {isa}" in flags), "sse")


def _clock_ghz() -> float | None:
    """The nominal clock from /sys or /proc/cpuinfo; None when the machine does not say (some VMs)."""
    for path in ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "/sys/devices/system/cpu/cpu0/cpufreq/base_frequency"):
        try:
            return int(Path(path).read_text()) / 1e6
        except (OSError, ValueError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    except OSError:
        pass
    return None


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
    """The figures as Markdown: one table per workload for the methods and one for the seeds, then peak and presets."""
    m, peak = fig["machine"], fig["peak"]
    lines = [f"## {m['date']}, commit {m['commit']}{' (--quick)' if fig['quick'] else ''}", "",
             f"{m['cpu']}, {m['cores']} cores, {fig['threads']} torch threads, torch {m['torch']}"
             + (f", GPU {m['cuda']}" if m["cuda"] else "") + ".", "",
             f"Peak fp32: measured {peak['measured_gflops']:.1f} GFLOP/s (best 2048 x 2048 sgemm); theoretical "
             + (f"{peak['theoretical_gflops']:.0f} GFLOP/s ({peak['cores']} cores x {peak['clock_ghz']:.2f} GHz x "
                f"{peak['flops_per_cycle']} FLOP/cycle, {peak['isa']})" if peak["theoretical_gflops"] else
                f"not derivable (the clock is not exposed; {peak['isa']}: {peak['flops_per_cycle']} FLOP/cycle/core)")
             + ".", ""]
    for name, w in fig["workloads"].items():
        if "skipped" in w:
            lines += [f"**{name}**: skipped ({w['skipped']})", ""]
            continue
        lines += [f"**{name}**: training steps only", "",
                  "| method | s / epoch | samples / s | ratio to standard | GFLOP / epoch | GFLOP/s | % of measured peak |",
                  "|---|---|---|---|---|---|---|"]
        for method, r in w["methods"].items():
            lines.append(f"| {method} | {r['epoch_s']:.3f} | {r['samples_per_s']:.0f} | {r['ratio_to_standard']:.2f} | "
                         f"{r['flops_per_epoch'] / 1e9:.2f} | {r['gflops']:.1f} | "
                         f"{100 * r['gflops'] / peak['measured_gflops']:.0f} % |")
        lines += ["", "| method | seeds S | sequential models / min | vectorised models / min | speed-up |",
                  "|---|---|---|---|---|"]
        for method, per_s in w["seeds"].items():
            for s, r in per_s.items():
                vec = r.get("vectorized_models_per_min")
                lines.append(f"| {method} | {s} | {r['sequential_models_per_min']:.1f} | "
                             + (f"{vec:.1f} | {r['speedup']:.2f}x |" if vec else "n/a | - |"))
        lines.append("")
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
