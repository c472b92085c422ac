"""Reports that do not mislead (issue 12 item 10): verdicts of toy presets say they are not evidence, setting labels
say what ran, no minority-class accuracy where there is no minority class, and intervals stay inside the values a
metric can take."""

import math
import re

import pandas as pd
import pytest

from explearn import datasets
from explearn.errors import ConfigError
from explearn.metrics import difference_bounds, metric_bounds, minority_class
from explearn.reproduce import make_run
from explearn.results import aggregate, ci95, paired_differences
from explearn.search import candidates
from explearn.specs import PRESETS, experiments_dir, load_spec, load_specs

COLLECTIONS = ["paper", "ablations", "benchmarks", "ph2"]


# --- confidence intervals inside [0, 1] ---------------------------------------------------------------------------


def test_the_issue_interval_of_two_accuracies_is_cut_to_0_1():
    """issue 12 item 10: 16/32 and 23/32 test accuracy gave [-0.780, 1.999]. By hand: mean 0.609375, sd
    0.21875 / sqrt 2, sem 0.109375, t(0.975, 1) = 12.7062 -> half width 1.38974."""
    lo, hi = ci95([0.5, 0.71875])
    assert (lo, hi) == pytest.approx((-0.780366, 1.999116), abs=1e-6)  # the plain t-interval
    assert ci95([0.5, 0.71875], (0.0, 1.0)) == (0.0, 1.0)


def test_an_interval_is_cut_only_where_it_leaves_the_range():
    """issue 12 item 10: [0.9, 1.0, 1.0]: mean 0.966667, sd 0.057735, sem 0.033333, t(0.975, 2) = 4.302653,
    half width 0.143422 -> [0.823245, 1.110088], cut to [0.823245, 1]."""
    assert ci95([0.9, 1.0, 1.0], (0.0, 1.0)) == pytest.approx((0.823245, 1.0), abs=1e-6)
    assert ci95([0.9, 1.0, 1.0])[1] == pytest.approx(1.110088, abs=1e-6)


@pytest.mark.parametrize("metric, bounds", [
    ("test/acc", (0, 1)), ("val/balanced_acc", (0, 1)), ("test/minority_acc", (0, 1)), ("test/acc_class3", (0, 1)),
    ("test_spurious/acc", (0, 1)), ("test_marker_swapped/balanced_acc", (0, 1)), ("test/acc_top2", (0, 1)),
    ("test/align", (0, 1)), ("val/align", (0, 1)), ("test/wrong_score", (0, 1)), ("agreement", (0, 1)),
    ("epochs_to_95", (0, math.inf)), ("grad_stage1/mean", (0, math.inf)), ("grad_stage2/max", (0, math.inf)),
    ("time/epoch_s", (0, math.inf)), ("selected_epoch", (0, math.inf)),
    ("train/align_loss", (-math.inf, math.inf)), ("train/loss", (-math.inf, math.inf)),
])
def test_every_kind_of_metric_has_its_range(metric, bounds):
    """issue 12 item 10: the bounded metrics are found by their names, so new splits and new accuracies count."""
    assert metric_bounds(metric) == bounds


def test_differences_of_shares_lie_in_minus_1_1_and_of_counts_anywhere():
    """issue 12 item 10"""
    assert difference_bounds("test/acc") == (-1, 1)
    assert difference_bounds("epochs_to_95") == (-math.inf, math.inf)


def two_seeds() -> pd.DataFrame:
    """test/acc and epochs_to_95 of standard and two_stage on run seeds 0 and 1."""
    rows = []
    for seed, (acc_std, acc_two, ep_std, ep_two) in enumerate([(0.5, 0.8, 0.0, 3.0), (0.71875, 0.1, 1.0, 2.0)]):
        for method, acc, epochs in (("standard", acc_std, ep_std), ("two_stage", acc_two, ep_two)):
            rows.append({"experiment": "e", "setting": "s", "method": method, "seed": seed, "role": "eval",
                         "test/acc": acc, "epochs_to_95": epochs})
    return pd.DataFrame(rows)


def test_aggregates_and_paired_differences_stay_in_range():
    """issue 12 item 10: accuracies in [0, 1], their differences in [-1, 1], epochs >= 0. By hand (n = 2,
    t(0.975, 1) = 12.706205): standard's accuracies 0.5, 0.71875 -> [-0.780, 1.999] -> [0, 1]; its epochs 0, 1:
    mean 0.5, sem 0.5 -> [-5.853, 6.853] -> [0, 6.853]; accuracy differences 0.3, -0.61875: mean -0.159375,
    sem 0.459375 -> [-5.996, 5.678] -> [-1, 1]; epoch differences 3, 1: mean 2, sem 1 -> [-10.706, 14.706], kept
    (a difference of epochs may be negative)."""
    agg = aggregate(two_seeds(), ["test/acc", "epochs_to_95"]).set_index(["method", "metric"])
    assert (agg.loc[("standard", "test/acc"), "ci_low"], agg.loc[("standard", "test/acc"), "ci_high"]) == (0.0, 1.0)
    assert agg.loc[("standard", "epochs_to_95"), "ci_low"] == 0.0
    assert agg.loc[("standard", "epochs_to_95"), "ci_high"] == pytest.approx(0.5 + 12.706205 * 0.5, abs=1e-5)
    diff = paired_differences(two_seeds(), "standard", ["test/acc", "epochs_to_95"]).set_index("metric")
    assert diff.loc["test/acc", "mean"] == pytest.approx(-0.159375)
    assert (diff.loc["test/acc", "ci_low"], diff.loc["test/acc", "ci_high"]) == (-1.0, 1.0)
    assert (diff.loc["epochs_to_95", "ci_low"], diff.loc["epochs_to_95", "ci_high"]) == pytest.approx(
        (2.0 - 12.706205, 2.0 + 12.706205), abs=1e-5)


# --- minority-class accuracy only where there is a minority class ---------------------------------------------------


@pytest.mark.parametrize("counts, minority", [
    ([450, 50], 1), ([18, 2], 1), ([5, 3, 4], 1), ([10, 0], 1),
    ([5, 5], None), ([3, 3, 5], None), ([5, 3, 3], None), ([], None),
])
def test_the_minority_class_is_the_unique_smallest(counts, minority):
    """issue 12 item 10: on balanced classes (or a tie for the fewest) there is no minority class."""
    assert minority_class(counts) == minority


@pytest.fixture(scope="module")
def balanced_and_imbalanced():
    from explearn import train

    small = {"seed": 0, "n_val": 10, "n_test": 20, "image_size": 16}
    balanced = datasets.triangles(n_train=20, **small)
    imbalanced = datasets.triangles(n_train=20, train_per_class=(16, 4), **small)
    return [train(d, "standard", seed=0, epochs=1, quiet=True) for d in (balanced, imbalanced)]


def test_balanced_training_reports_no_minority_accuracy(balanced_and_imbalanced):
    """issue 12 item 10: on balanced data "minority_acc" was class 0's accuracy; now it is absent, in the final
    metrics and in the per-epoch history, while every class's accuracy is kept."""
    result, _ = balanced_and_imbalanced
    assert not [k for k in result.metrics if "minority" in k]
    assert not [r for r in result.history if r["metric"] == "minority_acc"]
    assert {"test/acc_class0", "test/acc_class1", "val/acc_class0", "val/acc_class1"} <= set(result.metrics)


def test_imbalanced_training_reports_the_minority_class(balanced_and_imbalanced):
    """issue 12 item 10: 16 : 4 training samples: class 1 is the minority."""
    _, result = balanced_and_imbalanced
    for split in ("val", "test"):
        assert result.metrics[f"{split}/minority_acc"] == result.metrics[f"{split}/acc_class1"]
    assert [r for r in result.history if r["metric"] == "minority_acc"]


def test_train_many_reports_the_same_metrics_as_train(balanced_and_imbalanced):
    """issue 12 item 10: the vectorised trainer computes the same metric keys."""
    from explearn.vectorized import train_many

    small = {"n_val": 10, "n_test": 20, "image_size": 16}
    data = [datasets.triangles(n_train=20, seed=0, **small),
            datasets.triangles(n_train=20, seed=0, train_per_class=(16, 4), **small)]
    many = [train_many([d], [0], "standard", epochs=1, models_at_once=1)[0] for d in data]
    for mine, theirs in zip(many, balanced_and_imbalanced):
        assert set(mine.metrics) - {"time/vectorized"} == set(theirs.metrics)
        assert {r["metric"] for r in mine.history} == {r["metric"] for r in theirs.history}
    assert many[1].metrics["test/minority_acc"] == many[1].metrics["test/acc_class1"]


def test_the_train_command_prints_no_minority_accuracy_on_balanced_data(capsys):
    """issue 12 item 10: `explearn train` printed minority_acc (class 0) on balanced data."""
    from explearn.cli import main

    assert main(["train", "--method", "standard", "--epochs", "1", "--data", "n_train=16", "--data", "n_val=8",
                 "--data", "n_test=16", "--data", "image_size=16"]) == 0
    out = capsys.readouterr().out
    assert "balanced_acc" in out and "minority_acc" not in out
    assert main(["train", "--method", "standard", "--epochs", "1", "--data", "train_per_class=12,4",
                 "--data", "n_val=8", "--data", "n_test=16", "--data", "image_size=16"]) == 0
    assert "minority_acc" in capsys.readouterr().out


# --- setting labels say what ran ------------------------------------------------------------------------------------

STATED = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(.+?)\s*$")


def states(text: str, value) -> bool:
    if isinstance(value, (list, tuple)):
        return text == ":".join(map(str, value))
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return text == str(value)


def stated_options(label: str, run) -> list[tuple[str, str, object]]:
    """(key, stated text, value the run uses) for every part key=value of the label that names a run option."""
    out = []
    for part in label.split(","):
        match = STATED.match(part)
        if not match:
            continue
        key, text = match.groups()
        space, _, name = key.rpartition(".")
        tables = {"": [run.data_options, run.hparams, run.model_options], "hp": [run.hparams],
                  "model": [run.model_options]}.get(space, [])
        out += [(key, text, table[name]) for table in tables if name in table]
    return out


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_label_of_every_shipped_spec_says_what_its_runs_use(collection, preset):
    """issue 12 item 10: the architecture rows said n_train=500 and ran 32. Every key=value in every label must
    equal what every run of that setting uses (every method, every search candidate), at every preset."""
    checked = 0
    for spec in load_specs(experiments_dir(collection), preset):
        for setting in spec.settings:
            for method in spec.methods_for(setting):
                options = candidates(spec["search"].get(method, {}), setting.hparams)
                for cand in options if len(options) > 1 else [{}]:  # one candidate: no search, the defaults
                    run = make_run(spec, setting, method, 0, cand)
                    for key, text, value in stated_options(setting.label, run):
                        assert states(text, value), f"{spec.name} ({preset}): label {setting.label!r} says " \
                                                    f"{key}={text}, its {method} runs use {value!r}"
                        checked += 1
    assert checked or collection in ("ablations", "ph2")  # their labels state no option


def test_the_architecture_rows_say_the_size_they_ran():
    """issue 12 item 10: the example of the issue."""
    path = experiments_dir("paper") / "architecture.toml"
    assert [s.label for s in load_spec(path, "smoke").settings] == ["n_train=32", "n_train=32, spurious_rate=0.9"]
    assert [s.label for s in load_spec(path, "full").settings] == ["n_train=500", "n_train=500, spurious_rate=0.9"]


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_the_papers_settings_are_run_at_the_full_preset(collection):
    """issue 12 item 10: the paper's numbers are looked up by label, so at the full preset every setting the
    paper reports must be a label (a rewritten label must never hide a comparison there)."""
    for spec in load_specs(experiments_dir(collection), "full"):
        labels = {s.label for s in spec.settings}
        assert set(spec["paper"]) <= labels, spec.name


SPEC = """
dataset = "triangles"
methods = {methods}
{extra}

[presets.smoke]
data = {{ n_train = 32 }}
"""


def spec_file(tmp_path, extra: str, methods: str = '["standard", "two_stage"]'):
    path = tmp_path / "s.toml"
    path.write_text(SPEC.format(extra=extra, methods=methods))
    return path


def test_a_hand_written_label_follows_the_preset_and_the_reference_with_it(tmp_path):
    """issue 12 item 10: variant labels naming an option are rewritten to the value run; the reference variant
    keeps pointing at the same variant; parts that name no option stay as written."""
    path = spec_file(tmp_path, 'reference = "n_train=500"\nvariants = [{ label = "n_train=500" }, '
                               '{ label = "eta2 = 10 eta1, lr_ratio=10", hp = { lr_ratio = 10.0 } }]')
    spec = load_spec(path, "smoke")
    assert [s.label for s in spec.settings] == ["n_train=32", "eta2 = 10 eta1, lr_ratio=10"]  # 10 states 10.0
    assert spec["reference"] == "n_train=32" and spec.settings[0].variant == "n_train=32"
    assert load_spec(path, "quick")["reference"] == "n_train=500"


def test_a_label_naming_a_searched_hyperparameter_is_refused(tmp_path):
    """issue 12 item 10: the search chooses lr_ratio per setting, so no label can say its value."""
    path = spec_file(tmp_path, 'label = "lr_ratio=1"\nsearch = { two_stage = { lr_ratio = [0.1, 1.0] } }')
    with pytest.raises(ConfigError, match=r"s.toml.*lr_ratio.*search chooses"):
        load_spec(path, "quick")


def test_a_label_that_cannot_be_true_for_every_method_is_refused(tmp_path):
    """issue 12 item 10: joint's lam defaults to 1, rrr's to 100: 'lam=1' is false for rrr's runs."""
    path = spec_file(tmp_path, 'label = "lam=1"', methods='["joint", "rrr"]')
    with pytest.raises(ConfigError, match=r"'lam=1' cannot be true.*1 \(joint\), 100 \(rrr\)"):
        load_spec(path, "quick")


def test_a_grid_value_that_a_variant_overrides_is_refused(tmp_path):
    """issue 12 item 10: grid n_train=500 but variant b trains on 100: 'n_train=500, b' would lie, and writing
    'n_train=100' would split the grid point."""
    path = spec_file(tmp_path, 'grid = { n_train = [500] }\n'
                               'variants = [{ label = "a" }, { label = "b", data = { n_train = 100 } }]')
    with pytest.raises(ConfigError, match=r"grid value 'n_train=500' would say different things"):
        load_spec(path, "quick")


# --- verdicts of toy presets are not evidence -----------------------------------------------------------------------


def summary(preset: str) -> str:
    from explearn.report.tables import render_summary

    manifest = {"preset": preset, "collection": "experiments/paper", "specs": {"small": {
        "title": "Small data", "headline": "test/acc", "paper": {"n_train=500": {"standard": 0.754, "two_stage": 0.874}},
        "baseline": "standard", "methods": ["standard", "two_stage"], "settings": ["n_train=500"]}}}
    keys = {"experiment": "small", "setting": "n_train=500", "metric": "test/acc", "n": 3}
    stats = pd.DataFrame([{**keys, "method": "standard", "mean": 0.75, "std": 0.02, "ci_low": 0.70, "ci_high": 0.80},
                          {**keys, "method": "two_stage", "mean": 0.80, "std": 0.01, "ci_low": 0.775, "ci_high": 0.825}])
    diffs = pd.DataFrame([{**keys, "method": "two_stage", "baseline": "standard", "mean": 0.05, "ci_low": 0.01,
                           "ci_high": 0.09}])
    return render_summary(manifest, stats, diffs, pd.DataFrame(), 0, [])


def verdict_cells(text: str) -> list[str]:
    """The verdict cell (right after our difference [95 % CI]) of every row comparing two_stage with standard."""
    cells = [line.strip("| ").split(" | ") for line in text.splitlines() if "[+0.010, +0.090]" in line]
    return [row[row.index(next(c for c in row if c.endswith("[+0.010, +0.090]"))) + 1] for row in cells]


def test_a_smoke_summary_says_it_is_not_evidence_at_the_top_and_in_every_verdict():
    """issue 12 item 10: the smoke summary printed verdicts beside the paper's numbers for toy runs."""
    text = summary("smoke")
    assert text.split("\n\n")[2].startswith("**Not evidence.** Preset `smoke` trains toy sizes")
    cells = verdict_cells(text)
    assert len(cells) == 2 and set(cells) == {"not evidence (smoke preset)"}  # claims table and paired table


def test_a_quick_summary_marks_its_verdicts():
    """issue 12 item 10: quick runs too few seeds and epochs for evidence."""
    text = summary("quick")
    assert text.split("\n\n")[2].startswith("**Not evidence.** Preset `quick`")
    assert verdict_cells(text) == ["direction reproduced, weaker effect (quick preset: not evidence)",
                                   "gain (quick preset: not evidence)"]


def test_a_full_summary_gives_plain_verdicts():
    """issue 12 item 10: the full preset follows the paper's protocol."""
    text = summary("full")
    assert "not evidence" not in text.lower()
    assert verdict_cells(text) == ["direction reproduced, weaker effect", "gain"]


def test_the_summary_says_how_its_intervals_are_cut():
    """issue 12 item 10: the reader is told why an interval ends at 0 or 1."""
    assert "cut to the values the metric can take ([0, 1] for accuracies" in summary("full")


# --- figures --------------------------------------------------------------------------------------------------------


def test_the_agreement_figure_shows_bars_below_one_half_and_no_error_bar_beyond_1():
    """issue 12 item 10: the axis started at 0.5, hiding an agreement of 0.438 (smoke report, joint)."""
    from explearn.report.figures import agreement

    stats = pd.DataFrame([{"experiment": "c", "setting": "s", "method": m, "metric": "agreement", "n": 3,
                           "mean": mean, "std": std} for m, mean, std in (("joint", 0.438, 0.46), ("two_stage", 0.95, 0.2))])
    fig = agreement(None, stats, "c", {"headline": "agreement", "title": "t"})
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.0)  # 0.438 - 0.46 is cut at 0, so the axis starts at 0
    tops = [seg[:, 1].max() for seg in ax.collections[0].get_segments()]  # the error bars' vertical lines
    assert max(tops) == pytest.approx(1.0)


def test_the_accuracy_band_of_a_convergence_curve_stays_in_0_1():
    """issue 12 item 10: mean ± std of accuracies drawn beyond 1."""
    import matplotlib.pyplot as plt

    from explearn.report.figures import _lines

    curves = pd.DataFrame({"experiment": "c", "setting": "s", "method": "standard", "epoch": [0, 1, 2],
                           "mean": [0.5, 0.9, 0.95], "std": [0.1, 0.3, 0.2], "n": 2})
    fig, ax = plt.subplots()
    _lines(ax, curves, {}, "", metric_bounds("acc"))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(1.0) and band.min() == pytest.approx(0.4)
    plt.close(fig)
