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
from explearn.planning import make_run
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
    ([450, 50], 1), ([18, 2], 1), ([5, 3, 4], 1), ([0, 5, 3], 2),
    ([5, 5], None), ([3, 3, 5], None), ([5, 3, 3], None), ([], None), ([10, 0], None), ([0, 4, 4], None),
])
def test_the_minority_class_is_the_unique_smallest(counts, minority):
    """issue 12 item 10: on balanced classes (or a tie for the fewest) there is no minority class; a class without
    training samples is absent, not the minority (a newcomer's case: labels 1, 2 with n_classes=3 reported the
    accuracy of the empty class 0 as minority_acc: nan)."""
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

STATED = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([^\s()]+)")  # the value: "n=5 (a comment)" states 5


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
    equal what every run of that setting uses (every method, every search candidate), at every preset. A grid
    value that the variant sets names the cell; the variant's label states the value (issue 14)."""
    checked = 0
    for spec in load_specs(experiments_dir(collection), preset):
        for setting in spec.settings:
            by_variant = {m.group(1) for m in map(STATED.match, setting.variant.split(",")) if m}
            cell = ",".join(part for part in setting.point.split(",")
                            if not ((m := STATED.match(part)) and m.group(1) in by_variant))
            for method in spec.methods_for(setting):
                options = candidates(spec["search"].get(method, {}), setting.hparams)
                for cand in options if len(options) > 1 else [{}]:  # one candidate: no search, the defaults
                    run = make_run(spec, setting, method, 0, cand)
                    for key, text, value in stated_options(f"{cell},{setting.variant}", run):
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


def test_a_grid_value_that_a_variant_overrides_is_refused_unless_the_variant_says_it(tmp_path):
    """issue 12 item 10: grid n_train=500 but variant b trains on 100: 'n_train=500, b' would lie. Issue 14 (an
    upper bound on a larger training set in every cell of a size grid): the grid value names the cell and the
    variant's label must state the value run, checked like every stated value."""
    path = spec_file(tmp_path, 'grid = { n_train = [500] }\n'
                               'variants = [{ label = "a" }, { label = "b", data = { n_train = 100 } }]')
    with pytest.raises(ConfigError, match=r"variant 'b' sets the grid key 'n_train' \(to 100\), so its label must "
                                          r"name it with the value its runs use, as a part 'n_train=100'"):
        load_spec(path, "quick")
    path = spec_file(tmp_path, 'grid = { n_train = [200, 500] }\nvariants = [{ label = "a" }, '
                               '{ label = "n_train=100 (b)", data = { n_train = 100 } }]')
    spec = load_spec(path, "quick")
    assert [s.label for s in spec.settings] == ["n_train=200, a", "n_train=200, n_train=100 (b)", "n_train=500, a",
                                                "n_train=500, n_train=100 (b)"]
    assert [s.data["n_train"] for s in spec.settings] == [200, 100, 500, 100]
    assert spec.settings[1].point == "n_train=200" and spec.settings[1].variant == "n_train=100 (b)"
    path = spec_file(tmp_path, 'grid = { n_train = [500] }\nvariants = [{ label = "a" }, '
                               '{ label = "n_train=300 (b)", data = { n_train = 100 } }]')
    assert load_spec(path, "quick").settings[1].label == "n_train=500, n_train=100 (b)"  # the comment is kept


# --- verdicts of toy presets are not evidence -----------------------------------------------------------------------


def summary(preset: str) -> str:
    from explearn.report.tables import render_summary

    manifest = {"preset": preset, "collection": "experiments/paper", "specs": {"small": {
        "title": "Small data", "headline": "test/acc", "paper": {"n_train=500": {"standard": 0.754, "two_stage": 0.874}},
        "baseline": "standard", "methods": ["standard", "two_stage"], "settings": ["n_train=500"], "epochs": 1,
        "seeds": 2}}}
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
    """issue 12 item 10: the smoke summary printed verdicts beside the paper's numbers for toy runs. (Its opening
    sentence said "toy sizes (a few dozen samples)" until the newcomer's item 5; it now says the epochs and seeds
    the manifest's specs trained.)"""
    text = summary("smoke")
    assert text.split("\n\n")[2].startswith("**Not evidence.** Preset `smoke` trains 1 epoch on 2 seeds per cell to "
                                            "prove that the pipeline runs")
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


# --- newcomer findings on reports (issue 12 item 10, follow-up) -----------------------------------------------------

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from explearn.cli import main  # noqa: E402
from explearn.errors import DataError  # noqa: E402

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def stored_report(folder: Path, curves=((0.9, 0.9), (0.5, 0.9)), epochs: int = 1, also: tuple[str, ...] = ()) -> Path:
    """A report folder written by hand: experiment "e", setting "s", method "standard", one evaluation run per
    curve (seed k, run id "run{k}"), the curve being the test accuracy per epoch (epoch 0 before training), so
    that epochs_to_95 is 0 for (0.9, 0.9) and 1 for (0.5, 0.9). The specs in ``also`` name the same runs (specs
    that share runs, as the paper's do)."""
    entries = []
    for seed, curve in enumerate(curves):
        run = folder / "runs" / f"run{seed}"
        run.mkdir(parents=True)
        history = [{"epoch": e, "split": "test", "metric": "acc", "value": v} for e, v in enumerate(curve)]
        record = {"run": {"seed": seed}, "config": {"hparams": {}, "data": {"data_seed": seed}},
                  "metrics": {"test/acc": curve[-1]}, "history": history, "predictions": {"test": [0, 1, 1]}}
        (run / "result.json").write_text(json.dumps(record))
        (run / "done").write_text("")
        for name in ("e", *also):
            entries.append({"experiment": name, "setting": "s", "method": "standard", "seed": seed, "role": "eval",
                            "candidate": "{}", "run_id": run.name})
    spec = {"headline": ["epochs_to_95"], "settings": ["s"], "methods": ["standard"], "epochs": epochs, "seeds": 2}
    (folder / "manifest.json").write_text(json.dumps({
        "collection": "experiments/paper", "preset": "full", "specs": {name: spec for name in ("e", *also)},
        "entries": entries, "search": [], "timing": None}))
    return folder


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# newcomer item 3: epochs_to_95 intervals beyond the epochs trained


def test_the_issue_epochs_to_95_interval_ends_at_the_one_epoch_trained(tmp_path):
    """newcomer item 3 (issue 12 item 10): after one epoch, epochs_to_95 of 0 and 1 read 0.500 ± 0.707
    [0.000, 6.853]. By hand: mean 0.5, sd 0.707107, sem 0.5, t(0.975, 1) = 12.706205 -> [-5.853, 6.853], cut to
    [0, 1] (the spec's epochs in the manifest)."""
    from explearn.report import render

    text = render(stored_report(tmp_path)).read_text()
    assert "| s | standard | 0.500 ± 0.707 [0.000, 1.000] |" in text
    row = pd.read_csv(tmp_path / "aggregate.csv").set_index("metric").loc["epochs_to_95"]
    assert (row["mean"], row["ci_low"], row["ci_high"]) == (0.5, 0.0, 1.0)
    assert "0 to the epochs trained for epoch counts" in text  # the note at the top says so


@pytest.mark.parametrize("metric, epochs, bounds", [
    ("epochs_to_95", 1, (0, 1)), ("epochs_to_90", 30, (0, 30)), ("selected_epoch", 15, (0, 15)),
    ("epochs_to_95", None, (0, math.inf)), ("test/acc", 15, (0, 1)), ("grad_stage1/mean", 15, (0, math.inf)),
    ("train/loss", 15, (-math.inf, math.inf)),
])
def test_epoch_counts_are_bounded_by_the_epochs_trained(metric, epochs, bounds):
    """newcomer item 3: the epochs run bound every epoch count, and nothing else."""
    assert metric_bounds(metric, epochs) == bounds


def test_differences_of_epoch_counts_lie_within_minus_and_plus_the_epochs():
    """newcomer item 3: one rule (metric_bounds) gives the differences' range too."""
    assert difference_bounds("epochs_to_95", 3) == (-3, 3)
    assert difference_bounds("test/acc", 3) == (-1, 1)


def test_aggregates_and_paired_differences_of_epochs_stay_within_the_epochs():
    """newcomer item 3, with the numbers of test_aggregates_and_paired_differences_stay_in_range and 3 epochs:
    standard's epochs 0, 1 -> [-5.853, 6.853] -> [0, 3]; differences 3, 1 -> [-10.706, 14.706] -> [-3, 3]."""
    agg = aggregate(two_seeds(), ["epochs_to_95"], epochs=3).set_index(["method", "metric"])
    assert (agg.loc[("standard", "epochs_to_95"), "ci_low"], agg.loc[("standard", "epochs_to_95"), "ci_high"]) == (0, 3)
    assert agg.loc[("two_stage", "epochs_to_95"), "ci_high"] == 3.0  # 2.5 + 12.706 * 0.5
    diff = paired_differences(two_seeds(), "standard", ["epochs_to_95"], epochs=3).set_index("metric")
    assert (diff.loc["epochs_to_95", "mean"], diff.loc["epochs_to_95", "ci_low"],
            diff.loc["epochs_to_95", "ci_high"]) == (2.0, -3.0, 3.0)


# newcomer item 1: a report whose runs are not there is not re-rendered (that emptied its tables)


@pytest.mark.parametrize("report, command", [
    ("paper", "explearn reproduce paper --preset quick --out {dir}"),
    ("paper-full", "explearn reproduce paper --preset full --out {dir}"),
    ("ablations", "explearn reproduce ablations --preset quick --out {dir} --only loss"),
])
def test_re_rendering_a_committed_report_is_refused_and_changes_nothing(report, command, tmp_path, capsys):
    """newcomer item 1: `cp -r reports/paper rp; explearn report rp` exited 0 with empty results.csv and
    aggregate.csv and every cell "not run at this preset" (run folders are not committed)."""
    copy = tmp_path / "rp"
    # as a clone has it: a checkout that ran the report keeps its (ignored) runs folder, a clone has none
    shutil.copytree(REPORTS / report, copy, ignore=lambda d, names: ["runs"] if Path(d) == REPORTS / report else [])
    before = folder_bytes(copy)
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    where = copy / "loss" if report == "ablations" else copy  # every study is checked; the first is named
    assert f"{where}: the runs of this report are not in {copy / 'runs'} (run folders are not committed); " \
           "re-rendering would empty its tables: nothing was changed; rerun " \
           f"`{command.format(dir=copy)}` to regenerate them" in err
    assert folder_bytes(copy) == before


def test_a_report_with_some_runs_missing_renders_and_counts_each_run_once(tmp_path):
    """newcomer items 1 and 6: some runs missing still renders, with the note; a run shared by two specs counts
    once (two specs name run1: "1 runs", not 2), and a spec with no finished run says so instead of "seeds per
    cell: ."."""
    from explearn.report import render

    folder = stored_report(tmp_path, also=("e2",))
    (folder / "runs" / "run1" / "done").unlink()
    text = render(folder).read_text()
    assert "**1 runs of the manifest have not finished (or failed); their cells are missing.**" in text
    assert list(pd.read_csv(folder / "results.csv")["run_id"]) == ["run0", "run0"]  # once per spec naming it

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["specs"]["e3"] = manifest["specs"]["e"]
    manifest["entries"].append({**manifest["entries"][0], "experiment": "e3", "run_id": "never_trained"})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    text = render(folder).read_text()
    assert "**2 runs of the manifest have not finished" in text
    e3 = text.split("## e3")[1]
    assert "seeds per cell: none (no run of this experiment has finished)." in e3


def test_a_report_with_no_run_stored_is_refused_by_render_and_the_command(tmp_path, capsys):
    """newcomer item 1: nothing written, exit 2."""
    from explearn.report import NoStoredRuns, render

    folder = stored_report(tmp_path)
    for run in ("run0", "run1"):
        (folder / "runs" / run / "done").unlink()
    (folder / "summary.md").write_text("the summary of an earlier rendering\n")
    before = folder_bytes(folder)
    with pytest.raises(NoStoredRuns, match=r"the runs of this report are not in .*runs .*nothing was changed"):
        render(folder)
    assert main(["report", str(folder)]) == 2
    assert "re-rendering would empty its tables" in capsys.readouterr().err
    assert folder_bytes(folder) == before


def test_reproduce_keeps_the_report_when_every_evaluation_run_failed(tmp_path, monkeypatch):
    """newcomer item 1: a sweep whose evaluation runs all fail (here: the spec changed, and its new run crashes)
    does not replace the report that was there with empty tables."""
    from explearn import execution
    from explearn.reproduce import reproduce

    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    spec = 'dataset = "triangles"\nmethods = ["standard"]\nepochs = {}\ndata = {{ n_train = 8, n_val = 4, n_test = 4 }}\n'
    (specs / "tiny.toml").write_text(spec.format(1))
    (summary,), first = reproduce(str(specs), "quick", out, workers=0, log=lambda _: None)
    assert len(first.trained) == 1
    before = {name: (out / name).read_bytes() for name in ("summary.md", "results.csv", "aggregate.csv")}

    def crash(run, quiet=True):
        raise RuntimeError("injected crash")

    monkeypatch.setattr(execution, "execute_run", crash)
    (specs / "tiny.toml").write_text(spec.format(2))
    lines: list[str] = []
    summaries, outcome = reproduce(str(specs), "quick", out, workers=0, log=lines.append)
    assert summaries == [] and len(outcome.failed) == 1
    assert f"{out}: not rendered: none of its evaluation runs finished (their failures follow)" in lines
    assert {name: (out / name).read_bytes() for name in before} == before


# newcomer item 2: damaged report files


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    ("", "the file is empty"),
    ("[]", "holds a JSON list, not the object of a report manifest"),
    ('{"collection": "x"}', "has no 'preset', 'specs', 'entries'"),
    ('{"collection": "x", "preset": "quick", "specs": {"e": {}}, "entries": []}',
     "spec 'e' has no 'headline', 'settings', 'methods'"),
    ('{"collection": "x", "preset": "quick", "specs": [], "entries": []}', "'specs' is a JSON list, not a JSON object"),
])
def test_a_damaged_manifest_is_an_error_naming_the_file(text, message, tmp_path, capsys):
    """newcomer item 2: these failed with JSONDecodeError, AttributeError and KeyError('entries')."""
    (tmp_path / "manifest.json").write_text(text)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"explearn: error: {tmp_path / 'manifest.json'}: {message}; it is written by `explearn reproduce`" in err
    from explearn.results import collect

    with pytest.raises(DataError, match="manifest.json"):
        collect(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


RECORD_WITHOUT_PREDICTIONS = json.dumps({"run": {}, "config": {"hparams": {}, "data": {"data_seed": 1}}, "metrics": {},
                                         "history": [{"epoch": 0, "split": "test", "metric": "acc", "value": 0.5}]})


# the wording of RunStore.read, the one rule by which a sweep also trains such a run again
@pytest.mark.parametrize("text, problem", [
    ("{", ": not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("", ": not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("[]", ": holds a JSON list, not a run record"),
    (RECORD_WITHOUT_PREDICTIONS, ": not a run record: no predictions"),
])
def test_a_damaged_result_beside_its_done_marker_counts_as_missing_and_is_named(text, problem, tmp_path, capsys):
    """newcomer item 2: a run with a `done` marker and a damaged result.json is left out, and the summary and a
    warning say which run and what is wrong."""
    folder = stored_report(tmp_path)
    result = folder / "runs" / "run1" / "result.json"
    result.write_text(text)
    assert main(["report", str(folder)]) == 0
    out, err = capsys.readouterr()
    summary = (folder / "summary.md").read_text()
    assert f"- `run1`: {result}{problem}" in summary
    assert "**1 runs of the manifest have not finished" in summary and "1 of them have a damaged `result.json`" in summary
    assert f"explearn: warning: {folder}: run run1 counts as missing: {result}{problem}" in err
    assert list(pd.read_csv(folder / "results.csv")["run_id"]) == ["run0"]


def test_a_report_whose_every_result_is_damaged_is_refused(tmp_path):
    """newcomer items 1 and 2: damaged results are not stored runs; the refusal says they are damaged."""
    from explearn.report import NoStoredRuns, render

    folder = stored_report(tmp_path)
    for run in ("run0", "run1"):
        (folder / "runs" / run / "result.json").write_text("{")
    with pytest.raises(NoStoredRuns, match=r"none of the evaluation runs of this report is readable in .*runs: 2 have a "
                                           r"damaged result.json \(.*run0.result.json: not JSON"):
        render(folder)


# newcomer item 4: the committed reports say that they predate the report rules


@pytest.mark.parametrize("summary_path", sorted(REPORTS.rglob("summary.md")), ids=lambda p: str(p.parent.name))
def test_every_committed_report_follows_the_rules_or_opens_with_its_banner(summary_path):
    """newcomer item 4: reports rendered before these rules say so, and how to regenerate them; a report
    regenerated since (reports/paper, by `make run`) carries the rules' own notes instead."""
    from explearn.report import regenerate_command
    from explearn.results import read_manifest

    folder = summary_path.parent
    manifest = read_manifest(folder / "manifest.json")
    text = summary_path.read_text()
    if not text.startswith("> "):
        assert "cut to the values the metric can take" in text
        assert ("**Not evidence.**" in text) == (manifest["preset"] in ("smoke", "quick"))
        return
    first, rest = text.split("\n\n", 1)
    assert first.startswith("> **Rendered before the report rules of issue 12** (intervals of accuracies not cut to "
                            "[0, 1], nor those of epoch counts to the epochs trained")
    assert ("quick-preset verdicts not marked as not evidence" in first) == (manifest["preset"] == "quick")
    assert f"run `{regenerate_command(folder.relative_to(REPORTS.parent), manifest)}`" in first
    assert rest.startswith("# ")  # the rendered summary follows, unchanged


# newcomer item 5: the smoke note says what is certain, read from the manifest


def test_the_smoke_note_says_the_epochs_and_seeds_of_the_manifest():
    """newcomer item 5: "toy sizes (a few dozen samples)" was false for spurious (500 samples at smoke)."""
    from explearn.report.tables import evidence_note, trained

    specs = {s.name: dict(s.raw) for s in load_specs(experiments_dir("paper"), "smoke")}
    assert trained(specs) == "1 epoch on 2 to 3 seeds per cell"  # consistency trains 3 seeds
    assert evidence_note("smoke", specs) == (
        "**Not evidence.** Preset `smoke` trains 1 epoch on 2 to 3 seeds per cell to prove that the pipeline runs: "
        "its numbers, intervals and verdicts say nothing about the methods or the paper's claims; every verdict "
        "below says so.")
    quick = {s.name: dict(s.raw) for s in load_specs(experiments_dir("paper"), "quick")}
    assert evidence_note("quick", quick).startswith("**Not evidence.** Preset `quick` trains fewer seeds and epochs "
                                                    "than the `full` preset (here 15 epochs on 2 to 5 seeds per cell)")
    assert "samples" not in evidence_note("smoke", specs)


# newcomer item 6: every run-level value of a spec is checked when the spec is read


@pytest.mark.parametrize("extra, message", [
    ("batch_size = 0", r"s.toml \(preset quick\): batch_size must be >= 1, got 0$"),
    ("data_seed = -1", r"s.toml \(preset quick\): data_seed: a seed must be an integer from 0 to 2\^63 - 1, got -1$"),
    ("epochs = 0", r"s.toml \(preset quick\): epochs must be >= 1, got 0$"),
    ('select = "best"', r"s.toml \(preset quick\): select must be 'best_val', 'best_val_balanced' or 'last', got 'best'"),
    ("attributions = -1", r"s.toml \(preset quick\): attributions must be >= 0, got -1$"),
    ("search_seeds = 0", r"s.toml \(preset quick\): search_seeds must be a positive integer, got 0$"),
    ("seeds = true", r"s.toml \(preset quick\): seeds must be a positive integer, got True$"),
    ('baseline = "standrd"', r"s.toml \(preset quick\): baseline 'standrd' is not one of the methods"),
    ("hparams = { standard = { lr = -1.0 } }",
     r"s.toml \(preset quick\): setting 's', method 'standard': method settings: lr must be positive, got -1.0$"),
    ('data = { n_train = "many" }',
     r"s.toml \(preset quick\): setting 's', method 'standard': dataset 'triangles': setting 'n_train': expected an"),
    ('model = "smal_cnn"', r"s.toml \(preset quick\): setting 's', method 'standard': unknown model 'smal_cnn'; did you"),
    ("search = { two_stage = { lr_ratio = 1.0 } }",
     r"s.toml \(preset quick\): search.two_stage.lr_ratio must be a non-empty list of values, got 1.0$"),
    ('search = { two_stage = { lr_ratio = ["a", 1.0] } }',
     r"s.toml \(preset quick\): setting 's', method 'two_stage': method 'two_stage': setting 'lr_ratio': expected a"),
])
def test_a_bad_run_value_in_a_spec_is_refused_when_the_spec_is_read(extra, message, tmp_path):
    """newcomer item 6: batch_size = 0 or data_seed = -1 failed every run with a traceback (exit 1)."""
    path = tmp_path / "s.toml"
    path.write_text(f'dataset = "triangles"\nmethods = ["standard", "two_stage"]\nlabel = "s"\n{extra}\n')
    with pytest.raises(ConfigError, match=message):
        load_spec(path, "quick")


@pytest.mark.parametrize("text, message", [
    ('methods = ["standard", "standard"]', r"s.toml \(preset quick\): methods names 'standard' more than once; list "
                                           r"each method once$"),
    ('methods = ["standard"]\nvariants = [{ label = "a", methods = ["two_stage", "rrr", "two_stage"] }]',
     r"the methods of variant 'a' names 'two_stage' more than once"),
    ('methods = ["standard", "standrd"]', r"s.toml \(preset quick\): setting 's': unknown method 'standrd'; did you "
                                         r"mean 'standard'"),
])
def test_a_method_named_twice_or_unknown_is_refused(text, message, tmp_path):
    """newcomer item 6: methods = ["standard", "standard"] said "4 runs of the manifest have not finished" where
    only 2 runs exist."""
    path = tmp_path / "s.toml"
    path.write_text(f'dataset = "triangles"\nlabel = "s"\n{text}\n')
    with pytest.raises(ConfigError, match=message):
        load_spec(path, "quick")


# newcomer item 7: a class named twice


@pytest.mark.parametrize("classes, message", [
    ("dog,dog,cat", "classes names 'dog' more than once (classes=dog,dog,cat): name each class once"),
    ("dog,cat, dog,cat", "classes names 'cat', 'dog' more than once (classes=dog,cat, dog,cat)"),
    ("dog", "classes must name at least two classes, got dog"),
])
def test_a_class_named_twice_is_said(classes, message):
    """newcomer item 7: `--data classes=dog,dog,cat` said "must name at least two distinct classes": it does.
    Names are compared as labels are (spaces trimmed), so " dog" is "dog"."""
    from explearn.config import from_dict
    from explearn.datasets import FolderOptions

    with pytest.raises(ConfigError, match=re.escape(f"dataset 'folder': {message}")):
        from_dict(FolderOptions, {"root": "data", "classes": classes}, "--data")


def test_a_label_stating_an_option_the_runs_ignore_is_refused(tmp_path):
    """newcomer finding: with train_per_class set, triangles ignore n_train, so 'n_train=500 (balanced)' would
    label runs of 20 images at 9:1 (the same runs as the 9:1 variant)."""
    path = spec_file(tmp_path, 'data = { train_per_class = [18, 2] }\n'
                               'variants = [{ label = "a" }, { label = "n_train=500 (balanced)", data = { n_train = 500 } }]')
    with pytest.raises(ConfigError, match=r"a label names n_train, which the setting's runs ignore "
                                          r"\(train_per_class is set\)"):
        load_spec(path, "quick")


@pytest.mark.parametrize("written, shown", [
    ("n_train=64 (upper bound)", "n_train=32 (upper bound)"),
    ("n_train=64(upper bound)", "n_train=32(upper bound)"),
    ("n_train=99 (upper (bound))", "n_train=32 (upper (bound))"),
    ("n_train=64 (upper bound) (x)", "n_train=32 (upper bound) (x)"),
    ("n_train=64 (upper bound, balanced)", "n_train=32 (upper bound, balanced)"),
])
def test_only_the_stated_value_is_rewritten_the_words_after_it_stay(tmp_path, written, shown):
    """newcomer finding: comments after a value were dropped or cut when the value was rewritten."""
    path = spec_file(tmp_path, f'reference = "a"\nvariants = [{{ label = "a" }}, {{ label = "{written}" }}]')
    assert load_spec(path, "smoke").settings[1].label == shown  # the smoke preset trains 32 samples


def test_a_grid_key_set_by_a_variant_may_be_stated_without_its_prefix(tmp_path):
    """newcomer finding: 'lr_ratio=10 (fixed)' names hp.lr_ratio as every other label does; the refusal's example
    nested parentheses."""
    path = spec_file(tmp_path, 'search = {}\ngrid = { hp = { lr_ratio = [0.1, 1.0] } }\n'
                               'variants = [{ label = "a" }, { label = "lr_ratio=10 (fixed)", hp = { lr_ratio = 10.0 } }]')
    assert load_spec(path, "quick").settings[1].label == "hp.lr_ratio=0.1, lr_ratio=10 (fixed)"
    path = spec_file(tmp_path, 'search = {}\ngrid = { hp = { lr_ratio = [0.1, 1.0] } }\n'
                               'variants = [{ label = "a" }, { label = "fixed", hp = { lr_ratio = 10.0 } }]')
    with pytest.raises(ConfigError, match=r"as a part 'lr_ratio=10' \(words may follow in parentheses: "
                                          r"'lr_ratio=10 \(upper bound\)'\)"):
        load_spec(path, "quick")


def test_a_scenario_value_that_the_grid_replaces_is_refused(tmp_path):
    """newcomer finding: a scenario's n_train=500 under a grid of n_train was silently never used."""
    path = spec_file(tmp_path, 'grid = { n_train = [16, 32] }\n'
                               'scenarios = [{ label = "big data", data = { n_train = 500 } }]')
    with pytest.raises(ConfigError, match=r"scenario 'big data' sets n_train, which the grid varies"):
        load_spec(path, "quick")
