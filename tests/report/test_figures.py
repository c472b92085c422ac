"""Figures drawn from hand-made aggregates: what is plotted, not how it looks."""

import pandas as pd
import pytest

from explearn.report.figures import accuracy_vs_size

PARTS = {"n_train=50, paper": {"point": "n_train=50", "variant": "paper"},
         "n_train=50, n_train=5000 (upper bound)": {"point": "n_train=50", "variant": "n_train=5000 (upper bound)"},
         "n_train=500, paper": {"point": "n_train=500", "variant": "paper"},
         "n_train=500, n_train=5000 (upper bound)": {"point": "n_train=500", "variant": "n_train=5000 (upper bound)"}}
SIZES = {"n_train=50, paper": 50, "n_train=50, n_train=5000 (upper bound)": 5000, "n_train=500, paper": 500,
         "n_train=500, n_train=5000 (upper bound)": 5000}


def stats() -> pd.DataFrame:
    rows = [("n_train=50, paper", "standard", 0.60), ("n_train=500, paper", "standard", 0.75),
            ("n_train=50, paper", "two_stage", 0.62), ("n_train=500, paper", "two_stage", 0.80),
            ("n_train=50, n_train=5000 (upper bound)", "standard", 0.95),
            ("n_train=500, n_train=5000 (upper bound)", "standard", 0.95)]
    return pd.DataFrame([{"experiment": "small", "setting": s, "method": m, "metric": "test/acc", "n": 10,
                          "mean": v, "std": 0.01, "ci_low": v - 0.02, "ci_high": v + 0.02} for s, m, v in rows])


def test_accuracy_vs_size_draws_the_reference_lines_and_the_upper_bound_once():
    spec = {"headline": "test/acc", "title": "t", "reference": "paper", "upper_bound": "n_train=5000 (upper bound)",
            "setting_parts": PARTS, "setting_values": {label: {"n_train": n} for label, n in SIZES.items()}}
    fig = accuracy_vs_size(None, stats(), "small", spec)
    ax = fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    lines = {label: getattr(h, "lines", [h])[0] for h, label in zip(handles, labels)}  # an errorbar's data line
    assert sorted(labels) == ["standard", "standard, n_train=5000 (upper bound)", "two_stage"]
    assert list(lines["standard"].get_xdata()) == [50, 500]  # the upper bound's 5000 is no point of the line
    assert list(lines["two_stage"].get_ydata()) == [0.62, 0.80]
    assert list(lines["standard, n_train=5000 (upper bound)"].get_ydata()) == [0.95, 0.95]  # a horizontal line
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "500"]  # ticks at the sizes trained
    band = [p for p in ax.patches if p.get_alpha() == 0.12]
    assert len(band) == 1 and band[0].get_y() == pytest.approx(0.93) and round(band[0].get_height(), 9) == 0.04


def test_accuracy_vs_size_without_controls_draws_every_setting():
    spec = {"headline": "test/acc", "title": "t", "setting_values": {"n_train=50": {"n_train": 50},
                                                                      "n_train=500": {"n_train": 500}}}
    table = stats()
    table["setting"] = table["setting"].str.replace(", paper", "")
    fig = accuracy_vs_size(None, table[~table["setting"].str.contains("upper")], "small", spec)
    assert fig.axes[0].get_legend_handles_labels()[1] == ["standard", "two_stage"]
