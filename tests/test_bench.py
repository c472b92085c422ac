import json

import pytest

from explearn import bench


def test_epoch_flops_count_the_extra_work_of_each_method(tiny):
    standard = bench.epoch_flops(tiny, "standard", model="small_cnn")
    two_stage = bench.epoch_flops(tiny, "two_stage", model="small_cnn")
    shared = bench.epoch_flops(tiny, *bench.method_and_settings("two_stage:order=stage2_first"), model="small_cnn")
    rrr = bench.epoch_flops(tiny, "rrr", model="small_cnn")
    assert standard > 0
    # stage 2 adds forwards of f without gradients and m's backward; sharing f(x) saves one forward of f;
    # RRR differentiates an input gradient
    assert standard < shared < two_stage < 2 * standard
    assert rrr > 2 * standard


def test_peak_is_measured():
    peak = bench.peak_flops()
    assert peak["measured_gflops"] > 0.1 and peak["threads"] >= 1
    assert "theoretical_gflops" not in peak  # issue 13: the formula's 166 GFLOP/s was below the measured 187


def test_method_ratios_are_paired_by_repeat(monkeypatch, tiny):
    # issue 13: ratios taken within each repeat of an interleaved measurement, then the median over repeats
    times = iter([0.10, 0.20, 0.40,   # repeat 0: standard, two_stage, rrr
                  0.30, 0.45, 0.60,   # repeat 1 (rotated): two_stage, rrr, standard
                  0.90, 0.20, 0.40])  # repeat 2: rrr, standard, two_stage
    calls = []

    class Result:
        def __init__(self, s):
            self.metrics = {"time/epoch_s": s}

    def fake_train(data, method, seed, **kwargs):
        calls.append((method, seed))
        return Result(next(times))

    monkeypatch.setattr("explearn.train", fake_train)
    monkeypatch.setattr(bench, "epoch_flops", lambda data, method, hparams=None, model=None: {
        "standard": 2.0, "two_stage": 3.0, "rrr": 5.0}[method])
    rows = bench.method_throughput(tiny, "small_cnn", ["standard", "two_stage", "rrr"], 1, 3, log=lambda s: None)
    assert calls == [("standard", 0), ("two_stage", 0), ("rrr", 0), ("two_stage", 1), ("rrr", 1), ("standard", 1),
                     ("rrr", 2), ("standard", 2), ("two_stage", 2)]
    # two_stage: 0.20/0.10, 0.30/0.60, 0.40/0.20 -> median 2.0; rrr: 4.0, 0.75, 4.5 -> 4.0
    assert rows["two_stage"]["ratio_to_standard"] == pytest.approx(2.0)
    assert rows["rrr"]["ratio_to_standard"] == pytest.approx(4.0)
    assert rows["rrr"]["flop_ratio_to_standard"] == pytest.approx(2.5)
    assert rows["standard"]["epoch_s"] == pytest.approx(0.20)  # the median of 0.10, 0.60, 0.20


def test_other_load_is_the_machines_busy_time_not_ours(monkeypatch):
    readings = iter([(100.0, 10.0), (103.0, 11.0)])  # busy seconds of all cores, this process's seconds
    state = {}

    def busy():
        state["now"] = next(readings)
        return state["now"][0]

    monkeypatch.setattr(bench, "_busy_seconds", busy)
    monkeypatch.setattr(bench, "_own_seconds", lambda: state["now"][1])
    clock = iter([0.0, 2.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    with bench.OtherLoad() as load:
        pass
    assert load.share == pytest.approx((3.0 - 1.0) / (2.0 * 2))  # 2 s of others' CPU over 2 s x 2 cores


def test_recorded_presets_come_from_manifests(tmp_path):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "manifest.json").write_text(json.dumps(
        {"preset": "full", "timing": {"seconds": 1234.5, "trained": 10, "skipped": 2}}))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "manifest.json").write_text(json.dumps({"preset": "quick", "timing": None}))
    assert bench.recorded_presets(tmp_path) == {"paper": {"preset": "full", "seconds": 1234.5, "trained": 10,
                                                          "skipped": 2}}


FIGURES = {
    "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.13.0", "python": "3.11", "cuda": None, "commit": "abc1234",
                "date": "2026-11-24 08:00 UTC"},
    "quick": True, "threads": 2, "other_load": 0.31,
    "peak": {"measured_gflops": 100.0, "threads": 2},
    "workloads": {
        "triangles": {
            "methods": {"standard": {"epoch_s": 0.2, "samples_per_s": 2500.0, "flops_per_epoch": 4e9, "gflops": 20.0,
                                     "ratio_to_standard": 1.0, "flop_ratio_to_standard": 1.0},
                        "rrr": {"epoch_s": 0.5, "samples_per_s": 1000.0, "flops_per_epoch": 1.2e10, "gflops": 24.0,
                                "ratio_to_standard": 2.5, "flop_ratio_to_standard": 3.0}},
            "peer_rrr": {"explearn_epoch_s": 0.5, "peer_epoch_s": 0.625, "ratio": 0.8},
            "seeds": {"standard": {"30": {"sequential_models_per_min": 10.0, "vectorized_models_per_min": 45.0,
                                          "speedup": 4.5}}},
        },
        "decoy_mnist": {"skipped": "no MNIST folder given"},
    },
    "run_share": {"epochs": 30, "data_s": 1.0, "training_s": 8.0, "evaluation_s": 0.5, "other_s": 0.5,
                  "wall_s": 10.0, "training_share": 0.8},
    "presets": {"measured": {"paper/smoke": 21.0},
                "recorded": {"paper-full": {"preset": "full", "seconds": 7000.0, "trained": 74, "skipped": 815}}},
}


def test_markdown_names_every_figure_and_its_source():
    text = bench.markdown(FIGURES)
    assert "commit abc1234 (--quick)" in text
    assert "| rrr | 0.500 | 1000 | 2.50 | 3.00 | 12.00 | 24.0 | 24 % |" in text
    assert "explearn takes 0.80x the peer's time" in text
    assert "| standard | 30 | 10.0 | 45.0 | 4.50x |" in text
    assert "measured 100.0 GFLOP/s" in text and "theoretical" not in text
    assert "Other processes used 31 % of the machine's CPU time meanwhile: **contended" in text
    assert "80 % of 10.0 s in training steps" in text
    assert "**decoy_mnist**: skipped (no MNIST folder given)" in text
    assert "| paper | smoke | 21 s | all | measured now, fresh folder |" in text
    assert "| reports/paper-full | full | 7000 s | 74 (815) | recorded by that reproduction |" in text


def test_log_is_appended_not_overwritten(tmp_path):
    log = tmp_path / "LOG.md"
    bench.append_log(log, "first\n")
    bench.append_log(log, "second\n")
    text = log.read_text()
    assert text.startswith("# Benchmark log") and text.index("first") < text.index("second")
