"""The ablation studies (`explearn reproduce ablations`): every study's smoke preset end to end, one report
folder per study, variants compared with the paper's setting."""

import json

import pandas as pd
import pytest

from explearn.cli import main
from explearn.errors import ConfigError
from explearn.reproduce import reproduce
from explearn.specs import experiments_dir, load_spec, load_specs

STUDIES = ["loss", "lr_ratio", "mapping", "masks", "normalization", "stages"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablations")
    summaries, outcome = reproduce("ablations", "smoke", out, workers=2, log=lambda _: None)
    return out, summaries, outcome


def test_the_collection_holds_every_study_of_the_issue():
    assert [s.name for s in load_specs(experiments_dir("ablations"), "quick")] == STUDIES
    for spec in load_specs(experiments_dir("ablations"), "quick"):
        assert spec["reference"] == "paper" and spec["report"] == "apart"
        points = {s.point for s in spec.settings}
        assert points == {"small data", "spurious"}, spec.name


def test_every_study_gets_its_own_report_folder(smoke):
    out, summaries, outcome = smoke
    assert not outcome.failed
    assert sorted(p.parent.name for p in summaries) == STUDIES
    for study in STUDIES:
        folder = out / study
        for name in ("summary.md", "results.csv", "aggregate.csv", "manifest.json"):
            assert (folder / name).is_file(), (study, name)
        figures = {p.name for p in (folder / "figures").glob("*.png")}
        assert {f"{study}_variants.png", f"{study}_convergence.png", f"{study}_gradients.png"} <= figures
        assert json.loads((folder / "manifest.json").read_text())["runs"] == "../runs"
    assert not (out / "summary.md").exists()  # no collection-wide report for studies kept apart


def test_every_variant_and_scenario_is_reported_against_the_reference(smoke):
    out, _, _ = smoke
    for spec in load_specs(experiments_dir("ablations"), "smoke"):
        text = (out / spec.name / "summary.md").read_text()
        results = pd.read_csv(out / spec.name / "results.csv")
        assert text.startswith(f"# Study report: {spec.name}")
        assert "Difference to the reference variant `paper`" in text
        for setting in spec.settings:
            ran = set(results[results["setting"] == setting.label]["method"])
            assert ran == set(spec.methods_for(setting)), (spec.name, setting.label)
            if setting.variant == "paper":
                assert f"| **{setting.label}** (reference) | two_stage |" in text
            else:
                reference_part = text.split("Difference to the reference variant")[1]
                assert f"| {setting.label} | two_stage | " in reference_part
        two_stage = results[results["method"] == "two_stage"]
        assert two_stage["grad_stage1/mean"].gt(0).all() and two_stage["grad_stage2/mean"].gt(0).all()
        assert results[results["method"] == "standard"]["grad_stage2/mean"].isna().all()


def test_runs_are_shared_between_studies_and_a_relaunch_trains_nothing(smoke):
    out, _, _ = smoke
    references = set()
    for study in STUDIES:
        results = pd.read_csv(out / study / "results.csv")
        ref = results[results["setting"].str.endswith(", paper") & (results["method"] == "two_stage")]
        references.add(frozenset(ref["run_id"]))
    # one set of reference runs (2 scenarios x 2 seeds) for all studies; lr_ratio's sets eta2 = eta1 explicitly,
    # which is the default, so its runs are the same
    assert len(references) == 1 and len(next(iter(references))) == 4
    _, again = reproduce("ablations", "smoke", out, workers=0, only=["masks"], log=lambda _: None)
    assert not again.trained and again.skipped


def test_report_re_renders_every_study_of_a_folder(smoke, capsys):
    out, _, _ = smoke
    (out / "masks" / "summary.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "masks" / "summary.md").is_file()
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("report: ") for line in lines) == len(STUDIES)


def test_a_reference_that_is_not_a_variant_is_an_error(tmp_path):
    spec = tmp_path / "study.toml"
    spec.write_text('methods = ["two_stage"]\nreference = "papr"\n[[variants]]\nlabel = "paper"\n')
    with pytest.raises(ConfigError, match="reference 'papr' is not the label of a variant; did you mean 'paper'"):
        load_spec(spec)
    spec.write_text('methods = ["two_stage"]\n[[scenarios]]\nlabel = "a"\ndat = { n_train = 10 }\n')
    with pytest.raises(ConfigError, match="scenario keys must be data, hp, label, model"):
        load_spec(spec)


def test_a_newly_registered_loss_normalisation_or_mask_transform_joins_its_study(monkeypatch):
    from explearn.datasets.masks import MASK_TRANSFORMS, MaskTransform
    from explearn.losses.alignment import DIVERGENCES, NORMALIZATIONS, Divergence, Normalized

    monkeypatch.setitem(DIVERGENCES._items, "hellinger", Divergence(
        lambda p, t: ((p.values.sqrt() - t.values.sqrt()) ** 2).sum(-1) / 2, True, "squared Hellinger"))
    monkeypatch.setitem(NORMALIZATIONS._items, "abs", lambda v: Normalized(v.abs(), None, False))
    monkeypatch.setitem(MASK_TRANSFORMS._items, "upper_half",
                        MaskTransform(lambda m, p, rng: m.clone(), 0.0, "unused", "test"))
    folder = experiments_dir("ablations")
    for study, name, expected in (("loss", "hellinger", {"loss": "hellinger", "normalization": "softmax"}),
                                  ("normalization", "abs", {"normalization": "abs", "loss": "l2"}),
                                  ("masks", "upper_half", {"mask_transform": "upper_half"})):
        spec = load_spec(folder / f"{study}.toml", "quick")
        added = [s for s in spec.settings if s.variant == name]
        assert [s.point for s in added] == ["small data", "spurious"], study
        assert {**added[0].hparams, **added[0].data}.items() >= expected.items()
        assert added[0].methods == ("two_stage",)
    # the registered ones the study already names are not added twice
    assert not [s for s in load_spec(folder / "loss.toml", "quick").settings if s.variant in ("kl", "js", "l2")]
