"""The selection-protocol table of a report, and the flat columns it reads."""

import pandas as pd

from explearn.report.tables import protocol_table
from explearn.results import protocol_columns


def test_protocol_columns_flatten_each_protocol():
    result = {"config": {"epochs": 3}, "protocols": {
        "train_like": {"selected_epoch": 1, "tied_epochs": 3, "metrics": {"test/acc": 0.5}},
        "oracle": {"selected_epoch": 3, "tied_epochs": None, "metrics": {"test/acc": 0.7}},
        "explanation": {"selected_epoch": 2, "tied_epochs": 1, "metrics": {"test/acc": 0.6}}}}
    cols = protocol_columns(result)
    assert cols["train_like:test/acc"] == 0.5 and cols["oracle:selected_epoch"] == 3
    assert (cols["train_like:all_tied"], cols["oracle:all_tied"], cols["explanation:all_tied"]) == (1.0, 0.0, 0.0)
    assert protocol_columns({"config": {"epochs": 3}}) == {}  # runs stored before the protocols


def _row(setting, method, metric, mean, n=4, low=None, high=None):
    return {"experiment": "e", "setting": setting, "method": method, "metric": metric, "n": n, "mean": mean,
            "std": 0.0, "ci_low": mean if low is None else low, "ci_high": mean if high is None else high}


def test_protocol_table_shows_each_protocol_difference_and_ties():
    spec = {"headline": ["test/acc"], "baseline": "standard", "settings": ["s"], "methods": ["standard", "rrr"]}
    stats = pd.DataFrame([
        _row("s", "standard", "train_like:test/acc", 0.55), _row("s", "standard", "oracle:test/acc", 0.64),
        _row("s", "standard", "train_like:all_tied", 0.25),
        _row("s", "rrr", "train_like:test/acc", 0.50), _row("s", "rrr", "oracle:test/acc", 0.72, low=0.70, high=0.74),
    ])
    diffs = pd.DataFrame([{"experiment": "e", "setting": "s", "method": "rrr", "metric": "oracle:test/acc",
                           "baseline": "standard", "n": 4, "mean": 0.08, "ci_low": 0.05, "ci_high": 0.11}])
    text = protocol_table("e", spec, stats, diffs, "full")
    assert "| setting | method | train_like | oracle |" in text and "explanation" not in text.split("\n")[2]
    assert "| s | standard | 0.550 [0.550, 0.550] \\* 1/4 | 0.640 [0.640, 0.640] |" in text
    assert "| s | rrr | 0.500 [0.500, 0.500] | 0.720 [0.700, 0.740] (+0.080 [+0.050, +0.110]) |" in text
    assert "not evidence" in protocol_table("e", spec, stats, diffs, "quick")
    only_train_like = stats[stats["metric"].str.startswith("train_like")]
    assert protocol_table("e", spec, only_train_like, diffs, "full") == ""  # nothing beyond today's selection


def test_methods_that_only_a_variant_runs_get_their_rows():
    """A method listed only in a variant (the spurious spec's counterexamples, or issue 16's methods) has rows in
    the per-method and protocol tables, after the spec's own methods, in the order the variants name them."""
    from explearn.report.tables import experiment_section, report_methods

    spec = {"headline": ["test/acc"], "baseline": "standard", "settings": ["s"], "methods": ["standard", "rrr"],
            "variants": [{"label": "s", "methods": ["standard", "tap", "energy"]}, {"label": "t", "methods": ["tap"]}]}
    assert report_methods(spec) == ["standard", "rrr", "tap", "energy"]
    stats = pd.DataFrame([_row("s", m, f"{p}test/acc", 0.5) for m in ("standard", "energy")
                          for p in ("", "train_like:", "oracle:")])
    assert "| s | energy | 0.500 [0.500, 0.500] |" in protocol_table("e", spec, stats, pd.DataFrame(), "full")
    section = experiment_section("e", spec, stats, pd.DataFrame(), pd.DataFrame())
    assert "| s | energy | 0.500 ± 0.000 [0.500, 0.500] |" in section  # the per-method table
    assert section.index("| s | standard | 0.500 ±") < section.index("| s | energy | 0.500 ±")
