"""The smoke preset of the paper's experiments, end to end, and the report re-rendered from stored runs."""

import pandas as pd
import pytest

from explearn.cli import main
from explearn.reproduce import reproduce
from explearn.specs import experiments_dir, load_specs


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    (summary,), outcome = reproduce("paper", "smoke", out, workers=2, log=lambda _: None)
    return out, summary, outcome


def test_smoke_preset_writes_every_file(smoke):
    out, summary, outcome = smoke
    assert not outcome.failed and outcome.trained
    for name in ("summary.md", "results.csv", "search.csv", "aggregate.csv", "manifest.json"):
        assert (out / name).is_file()
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"small_data_accuracy_vs_size.png", "convergence_convergence.png", "consistency_agreement.png",
            "convergence_examples.png"} <= figures
    assert all((out / "figures" / f).stat().st_size > 5000 for f in figures)


def test_every_setting_and_method_is_in_the_tables(smoke):
    out, summary, _ = smoke
    results = pd.read_csv(out / "results.csv")
    text = summary.read_text()
    for spec in load_specs(experiments_dir("paper"), "smoke"):
        assert f"## {spec.name}" in text
        ran = results[results["experiment"] == spec.name]
        for setting in spec.settings:
            methods = set(ran[ran["setting"] == setting.label]["method"])
            assert methods == set(spec.methods_for(setting)), (spec.name, setting.label)
            for method in methods:
                assert f"| {setting.label} | {method} |" in text or \
                    f"| **{setting.label}** (reference) | {method} |" in text, (setting.label, method)
        seeds = ran.groupby(["setting", "method"])["seed"].nunique()
        assert (seeds == spec["seeds"]).all()
    assert (results["test/acc"].between(0, 1)).all()
    search = pd.read_csv(out / "search.csv")
    # one choice per cell and selection protocol (train_like always; oracle and explanation where recorded)
    assert search.groupby(["experiment", "setting", "method", "protocol"])["chosen"].sum().eq(1).all()
    spurious = search[search["experiment"] == "spurious"]
    assert set(spurious["protocol"]) == {"train_like", "oracle", "explanation"}


def test_paper_numbers_sit_beside_ours(smoke):
    _, summary, _ = smoke
    text = summary.read_text()
    claims = text.split("## The paper's numbers beside ours")[1].split("\n## ")[0]
    for number in ("0.754", "0.874", "0.725", "0.806", "0.561", "0.708", "0.711", "0.949"):
        assert f"| {number} |" in claims
    assert "not run at this preset" in claims  # n_train=500 is not in the smoke preset of small_data
    assert "| imbalance | train_per_class=450:50, imbalanced | test/acc | two_stage | 0.806 |" in claims


def test_report_re_renders_from_stored_runs_without_training(smoke, capsys):
    out, summary, _ = smoke
    before = summary.read_text()
    (out / "summary.md").unlink()
    (out / "results.csv").unlink()
    runs_before = sorted(p.name for p in (out / "runs").iterdir())
    assert main(["report", str(out)]) == 0
    assert (out / "summary.md").read_text() == before
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs_before
    assert "report:" in capsys.readouterr().out


def test_report_on_a_folder_that_is_not_a_report(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "manifest.json not found" in capsys.readouterr().err


def test_a_report_with_no_finished_run_is_not_rendered(tmp_path):
    """Rendering it would write empty tables over the report's (issue 12, item 10 follow-up: it used to render,
    and emptied the committed reports, whose runs are not committed); nothing is written."""
    import json

    from explearn.report import NoStoredRuns, render

    spec = {"headline": "test/acc", "settings": ["s"], "methods": ["standard"], "figures": ["convergence"]}
    (tmp_path / "manifest.json").write_text(json.dumps({
        "collection": "x", "preset": "smoke", "specs": {"e": spec},
        "entries": [{"experiment": "e", "setting": "s", "method": "standard", "seed": 0, "role": "eval",
                     "candidate": "{}", "run_id": "0123456789abcdef"}], "search": [], "timing": None}))
    with pytest.raises(NoStoredRuns, match="the runs of this report are not in"):
        render(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
