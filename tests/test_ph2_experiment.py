"""The PH2 experiment specs end to end at the smoke preset, on the real images (skipped without the data)."""

from explearn.reproduce import reproduce
from explearn.specs import experiments_dir, load_specs

#: every method the PH2 specs name (experiments/ph2/_defaults.toml), at least the eight of issue 6
METHODS = load_specs(experiments_dir("ph2"), "smoke", only=["ph2"])[0]["methods"]


def test_ph2_specs_run_every_method_and_report_the_marker(tmp_path, ph2_dir, monkeypatch):
    monkeypatch.setenv("EXPLEARN_DATA", str(ph2_dir.parent))
    summaries, outcome = reproduce("ph2", "smoke", tmp_path, workers=0, log=lambda _: None)
    assert {"standard", "two_stage", "rrr", "hint", "counterexamples", "energy", "tap"} <= set(METHODS)
    # 2 specs x methods x 2 seeds; the marker spec's upper bound shares the plain spec's standard runs
    assert not outcome.failed and len(outcome.trained) == 2 * len(METHODS) * 2
    text = summaries[0].read_text()
    for method in METHODS:
        assert f"| melanoma vs nevus | {method} |" in text
        assert f"| **marker on melanoma (train)** (reference) | {method} |" in text
    assert "test_marker_swapped/balanced_acc" in text and "test/acc_class1" in text
    # the marker's upper bound, label-only training on the same split without the dot, is the ph2 spec's run
    assert "| no marker (upper bound) | standard |" in text and "**ph2_marker**, test/balanced_acc" in text
    assert (tmp_path / "figures" / "ph2_examples.png").is_file()
