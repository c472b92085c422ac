import json

import pytest

from explearn import bench


def test_epoch_flops_count_the_extra_work_of_each_method(tiny):
    standard = bench.epoch_flops(tiny, "standard", "small_cnn")
    two_stage = bench.epoch_flops(tiny, "two_stage", "small_cnn")
    rrr = bench.epoch_flops(tiny, "rrr", "small_cnn")
    assert standard > 0
    # stage 2 adds forwards of f without gradients and m's backward; RRR differentiates an input gradient
    assert standard < two_stage < 2 * standard
    assert rrr > 2 * standard


def test_peak_is_measured_and_the_theory_is_explained():
    peak = bench.peak_flops(1)
    assert peak["measured_gflops"] > 0.1
    assert peak["flops_per_cycle"] in bench.FLOPS_PER_CYCLE.values()
    if peak["theoretical_gflops"] is not None:
        assert peak["theoretical_gflops"] == pytest.approx(peak["clock_ghz"] * peak["flops_per_cycle"])


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
    "quick": True, "threads": 2,
    "peak": {"measured_gflops": 100.0, "theoretical_gflops": None, "clock_ghz": None, "isa": "avx2",
             "flops_per_cycle": 32, "cores": 2},
    "workloads": {
        "triangles": {
            "methods": {"standard": {"epoch_s": 0.2, "samples_per_s": 2500.0, "flops_per_epoch": 4e9, "gflops": 20.0,
                                     "ratio_to_standard": 1.0},
                        "rrr": {"epoch_s": 0.5, "samples_per_s": 1000.0, "flops_per_epoch": 1.2e10, "gflops": 24.0,
                                "ratio_to_standard": 2.5}},
            "seeds": {"standard": {"30": {"sequential_models_per_min": 10.0, "vectorized_models_per_min": 45.0,
                                          "speedup": 4.5}}},
        },
        "decoy_mnist": {"skipped": "no MNIST folder given"},
    },
    "presets": {"measured": {"paper/smoke": 21.0},
                "recorded": {"paper-full": {"preset": "full", "seconds": 7000.0, "trained": 74, "skipped": 815}}},
}


def test_markdown_names_every_figure_and_its_source():
    text = bench.markdown(FIGURES)
    assert "commit abc1234 (--quick)" in text
    assert "| rrr | 0.500 | 1000 | 2.50 | 12.00 | 24.0 | 24 % |" in text
    assert "| standard | 30 | 10.0 | 45.0 | 4.50x |" in text
    assert "not derivable" in text and "measured 100.0 GFLOP/s" in text
    assert "**decoy_mnist**: skipped (no MNIST folder given)" in text
    assert "| paper | smoke | 21 s | all | measured now, fresh folder |" in text
    assert "| reports/paper-full | full | 7000 s | 74 (815) | recorded by that reproduction |" in text


def test_log_is_appended_not_overwritten(tmp_path):
    log = tmp_path / "LOG.md"
    bench.append_log(log, "first\n")
    bench.append_log(log, "second\n")
    text = log.read_text()
    assert text.startswith("# Benchmark log") and text.index("first") < text.index("second")
