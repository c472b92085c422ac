"""The summary renderer against a stored expected output (a golden file)."""

from pathlib import Path

import pandas as pd

from explearn.report.tables import render_summary

EXPECTED = Path(__file__).with_name("expected_summary.md")


def inputs():
    manifest = {
        "preset": "quick", "collection": "experiments/paper", "timing": {"seconds": 12.3, "trained": 8, "skipped": 2, "failed": []},
        "specs": {"small": {"title": "Small data", "claim": "two-stage wins", "headline": ["test/acc", "agreement"],
                            "paper": {"n_train=500": {"standard": 0.754, "two_stage": 0.874}}, "baseline": "standard",
                            "methods": ["standard", "two_stage"], "settings": ["n_train=500"], "paper_note": "a note"}},
    }
    keys = {"experiment": "small", "setting": "n_train=500"}
    stats = pd.DataFrame([
        {**keys, "method": "standard", "metric": "test/acc", "n": 3, "mean": 0.75, "std": 0.02, "ci_low": 0.70, "ci_high": 0.80},
        {**keys, "method": "two_stage", "metric": "test/acc", "n": 3, "mean": 0.80, "std": 0.01, "ci_low": 0.775, "ci_high": 0.825},
        {**keys, "method": "standard", "metric": "agreement", "n": 3, "mean": 0.81, "std": 0.03, "ci_low": float("nan"), "ci_high": float("nan")},
        {**keys, "method": "two_stage", "metric": "agreement", "n": 3, "mean": 0.9, "std": 0.01, "ci_low": float("nan"), "ci_high": float("nan")},
    ])
    diffs = pd.DataFrame([{**keys, "method": "two_stage", "baseline": "standard", "metric": "test/acc", "n": 3,
                           "mean": 0.05, "ci_low": 0.01, "ci_high": 0.09}])
    search = pd.DataFrame([
        {**keys, "method": "two_stage", "candidate": '{"lr_ratio": 0.1}', "metric": "val/acc", "n": 2, "mean": 0.7, "chosen": False},
        {**keys, "method": "two_stage", "candidate": '{"lr_ratio": 1.0}', "metric": "val/acc", "n": 2, "mean": 0.8, "chosen": True},
    ])
    return manifest, stats, diffs, search


def test_summary_matches_the_stored_expected_output():
    text = render_summary(*inputs(), missing=1, figures=["small_accuracy_vs_size.png"])
    assert text == EXPECTED.read_text()


def test_verdicts_know_which_way_is_better():
    from explearn.report.tables import verdict

    faster = {"metric": "epochs_to_95", "mean": -3.0, "ci_low": -5.0, "ci_high": -1.0}
    slower = {"metric": "epochs_to_95", "mean": 4.4, "ci_low": 1.2, "ci_high": 7.6}
    assert verdict(faster) == "gain" and verdict(slower) == "loss"
    assert verdict({"metric": "test/acc", "mean": 0.04, "ci_low": 0.002, "ci_high": 0.076}) == "gain"
    assert verdict({"metric": "test/acc", "mean": 0.0, "ci_low": -0.01, "ci_high": 0.01}) == "no clear difference"


def test_runs_of_more_than_one_kind_of_device_are_said():
    """issue 15, item 5: `auto` takes CUDA where there is one and a run id does not name the device, so a folder
    shared by machines may mix devices; the report says so (and says nothing when one kind trained them all)."""
    mixed = render_summary(*inputs(), missing=0, figures=[], devices={"cpu": 8, "cuda:0": 2})
    assert "**The runs trained on more than one kind of device (cpu: 8, cuda:0: 2)" in mixed
    assert "more than one kind of device" not in render_summary(*inputs(), missing=0, figures=[],
                                                                devices={"cuda:0": 3, "cuda:1": 1})
