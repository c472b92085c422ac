"""The verdict table of a report on hand-made runs: headroom, share closed, difference and verdict."""

import pandas as pd
import pytest

from explearn.report.verdict_table import verdict_section

PARTS = {"r=1, paper": {"point": "r=1", "variant": "paper"},
         "r=1, clean": {"point": "r=1", "variant": "clean"},
         "r=1, square": {"point": "r=1", "variant": "square"}}
SPEC = {"headline": ["test/acc"], "baseline": "standard", "reference": "paper", "upper_bound": "clean",
        "methods": ["standard", "two_stage", "rrr"], "setting_parts": PARTS,
        "paper": {"r=1, paper": {"standard": 0.561, "two_stage": 0.708}}}


def verdict_of(row: str) -> str:
    """The verdict cell of a verdict-table row (setting, headroom, variant, method, share, difference, verdict,
    reliance)."""
    return [cell.strip() for cell in row.strip().strip("|").split("|")][6]


def runs(values: dict[tuple[str, str], list[float]], protocols=("train_like",)) -> pd.DataFrame:
    rows = []
    for (setting, method), accs in values.items():
        for seed, acc in enumerate(accs):
            row = {"experiment": "e", "setting": setting, "method": method, "seed": seed, "role": "eval",
                   "protocols": "*"}
            for p in protocols:
                row[f"{p}:test/acc"] = acc
                row[f"{p}:all_tied"] = 0.0
            rows.append(row)
    return pd.DataFrame(rows)


def test_headroom_share_and_verdict_by_hand():
    table = runs({("r=1, paper", "standard"): [0.50, 0.52, 0.54, 0.56, 0.58],
                  ("r=1, clean", "standard"): [0.80, 0.82, 0.84, 0.86, 0.88],       # headroom 0.30 on every seed
                  ("r=1, paper", "two_stage"): [0.50, 0.52, 0.54, 0.56, 0.58],      # no change
                  ("r=1, square", "rrr"): [0.65, 0.67, 0.69, 0.71, 0.73]})          # closes half, every seed
    text = verdict_section({"preset": "full", "specs": {"e": SPEC}}, table)
    assert "protocol `train_like`" in text and "protocol `oracle`" not in text
    rrr = next(line for line in text.splitlines() if "| rrr |" in line)
    assert "| r=1 | +0.300 [+0.300, +0.300] | square | rrr | 0.500 [0.500, 0.500] | +0.150 [+0.150, +0.150] |" in rrr
    assert verdict_of(rrr) == "helps"
    two = next(line for line in text.splitlines() if "| two_stage |" in line)
    assert "| 0.000 [0.000, 0.000] | +0.000 [+0.000, +0.000] |" in two
    assert verdict_of(two) == "equivalent; paper's effect excluded"  # the paper's +0.147 lies outside [0, 0]


def test_no_headroom_means_the_setting_cannot_tell():
    table = runs({("r=1, paper", "standard"): [0.50, 0.60, 0.55, 0.52],
                  ("r=1, clean", "standard"): [0.51, 0.58, 0.57, 0.52],
                  ("r=1, paper", "two_stage"): [0.70, 0.80, 0.75, 0.72]})
    text = verdict_section({"preset": "full", "specs": {"e": SPEC}}, table)
    row = next(line for line in text.splitlines() if "| two_stage |" in line)
    assert "| headroom not established |" in row
    assert verdict_of(row) == "setting cannot tell; paper's effect excluded"
    quick = verdict_section({"preset": "quick", "specs": {"e": SPEC}}, table)
    assert "not evidence" in verdict_of(next(line for line in quick.splitlines() if "| two_stage |" in line))


def test_every_epoch_tied_makes_the_protocol_uninformative():
    table = runs({("r=1, paper", "standard"): [0.50, 0.52, 0.54],
                  ("r=1, clean", "standard"): [0.80, 0.82, 0.84],
                  ("r=1, paper", "two_stage"): [0.60, 0.62, 0.64]})
    table.loc[table["setting"] == "r=1, paper", "train_like:all_tied"] = 1.0
    text = verdict_section({"preset": "full", "specs": {"e": SPEC}}, table)
    row = next(line for line in text.splitlines() if "| two_stage |" in line)
    assert verdict_of(row) == "protocol uninformative; paper's effect excluded"  # the note stands on its own


def test_specs_without_controls_get_no_table():
    spec = {k: v for k, v in SPEC.items() if k != "upper_bound"}
    assert verdict_section({"preset": "full", "specs": {"e": spec}}, runs({})) == ""


@pytest.mark.parametrize("bad, message", [
    ({"upper_bound": "clen"}, "is not the label of a variant"),
    ({"upper_bound": "square"}, "must run the baseline"),
])
def test_upper_bound_is_checked_when_the_spec_is_read(tmp_path, bad, message):
    from explearn.errors import ConfigError
    from explearn.specs import load_spec

    variants = ('[[variants]]\nlabel = "paper"\n[[variants]]\nlabel = "clean"\nmethods = ["standard"]\n'
                '[[variants]]\nlabel = "square"\nmethods = ["rrr"]\n')
    (tmp_path / "s.toml").write_text(f'dataset = "triangles"\nmethods = ["standard", "rrr"]\nbaseline = "standard"\n'
                                     f'reference = "paper"\nupper_bound = "{bad["upper_bound"]}"\n' + variants)
    with pytest.raises(ConfigError, match=message):
        load_spec(tmp_path / "s.toml", "smoke")


def test_holm_runs_over_the_whole_collection_under_one_protocol():
    from explearn.verdicts import paired_test

    gains = [0.00, 0.05, 0.01, 0.04, 0.03, -0.01, 0.05, 0.00]
    assert 0.025 < paired_test(gains).p_diff < 0.05  # significant alone, not after doubling
    lower = [0.50 + 0.01 * k for k in range(8)]
    values = {("r=1, paper", "standard"): lower, ("r=1, clean", "standard"): [v + 0.3 for v in lower],
              ("r=1, paper", "two_stage"): [v + g for v, g in zip(lower, gains)]}
    spec = {**SPEC, "paper": {}}
    alone = verdict_section({"preset": "full", "specs": {"e": spec}}, runs(values))
    both = verdict_section({"preset": "full", "specs": {"e": spec, "f": spec}},
                           pd.concat([runs(values), runs(values).assign(experiment="f")], ignore_index=True))
    row = [line for line in alone.splitlines() if "| two_stage |" in line]
    assert len(row) == 1 and verdict_of(row[0]) == "helps"
    rows = [line for line in both.splitlines() if "| two_stage |" in line]
    assert len(rows) == 2 and all(verdict_of(r) == "inconclusive (detectable: 0.028)" for r in rows)


def test_placebo_checks_and_the_positive_control_note():
    parts = {**PARTS, "r=1, moved": {"point": "r=1", "variant": "moved"}}
    spec = {**SPEC, "setting_parts": parts, "paper": {}, "placebos": {"moved": "square"},
            "positive_controls": ["square"], "primary": "test/acc"}
    lower = [0.50, 0.52, 0.54, 0.56, 0.58]
    table = runs({("r=1, paper", "standard"): lower,
                  ("r=1, clean", "standard"): [v + 0.3 for v in lower],
                  ("r=1, paper", "two_stage"): [v + d for v, d in zip(lower, [0.01, -0.01, 0.0, 0.005, -0.005])],
                  ("r=1, square", "rrr"): [v + d for v, d in zip(lower, [0.05, -0.05, 0.02, -0.02, 0.0])],
                  ("r=1, moved", "rrr"): [v - 0.01 for v in lower]})
    text = verdict_section({"preset": "full", "specs": {"e": spec}}, table)
    placebo = next(line for line in text.splitlines() if "| square | moved | rrr |" in line)
    assert "| +0.010 [" in placebo  # true minus placebo: (0 - (-0.01)) on average
    two = next(line for line in text.splitlines() if "| paper | two_stage |" in line)
    assert verdict_of(two).endswith("; no positive control worked")  # RRR with the square closed no share above 0
    assert "3 under `train_like`" in text  # the family Holm corrected over: two_stage, rrr (square), rrr (moved)


def test_the_primary_metric_decides():
    spec = {**SPEC, "headline": ["test/acc", "test/balanced_acc"], "primary": "test/balanced_acc"}
    table = runs({("r=1, paper", "standard"): [0.5, 0.6, 0.55], ("r=1, clean", "standard"): [0.8, 0.9, 0.85],
                  ("r=1, paper", "two_stage"): [0.6, 0.7, 0.65]})
    table = table.rename(columns={"train_like:test/acc": "train_like:test/balanced_acc"})
    assert "**e**, test/balanced_acc, protocol `train_like`" in verdict_section({"preset": "full",
                                                                                 "specs": {"e": spec}}, table)


def test_candidates_that_all_tie_make_the_protocol_uninformative():
    table = runs({("r=1, paper", "standard"): [0.50, 0.52, 0.54],
                  ("r=1, clean", "standard"): [0.80, 0.82, 0.84],
                  ("r=1, paper", "two_stage"): [0.60, 0.62, 0.64]})
    spec = {**SPEC, "paper": {}}
    search = [{"experiment": "e", "setting": "r=1, paper", "method": "two_stage", "candidate": c, "mean": 1.0,
               "protocol": "train_like"} for c in ('{"lr_ratio": 0.1}', '{"lr_ratio": 1.0}')]
    tied = verdict_section({"preset": "full", "specs": {"e": spec}, "search": search}, table)
    assert verdict_of(next(line for line in tied.splitlines() if "| two_stage |" in line)) == "protocol uninformative"
    search[1]["mean"] = 0.9  # the candidates differ: the protocol could choose
    told = verdict_section({"preset": "full", "specs": {"e": spec}, "search": search}, table)
    assert verdict_of(next(line for line in told.splitlines() if "| two_stage |" in line)) != "protocol uninformative"


def test_reliance_gets_its_own_paired_difference_and_verdict():
    table = runs({("r=1, paper", "standard"): [0.50, 0.52, 0.54, 0.56],
                  ("r=1, clean", "standard"): [0.80, 0.82, 0.84, 0.86],
                  ("r=1, paper", "two_stage"): [0.50, 0.52, 0.54, 0.56]})
    reliance = {("r=1, paper", "standard"): [0.90, 0.92, 0.94, 0.96], ("r=1, paper", "two_stage"): [0.30, 0.31, 0.32, 0.33]}
    for (setting, method), values in reliance.items():
        rows = (table["setting"] == setting) & (table["method"] == method)
        table.loc[rows, "train_like:shortcut/reliance"] = values
    text = verdict_section({"preset": "full", "specs": {"e": {**SPEC, "paper": {}}}}, table)
    row = next(line for line in text.splitlines() if "| two_stage |" in line)
    rel = [cell.strip() for cell in row.strip().strip("|").split("|")][7]
    assert rel.startswith("+0.315 (-0.615 [") and rel.endswith("]: helps)")  # relies less on the shortcut


def test_helps_because_of_the_masks_needs_every_placebo_beaten():
    """docs/verdicts.md, "placebo": helps against standard and against both placebos, or the note says which
    placebo it did not beat."""
    parts = {**PARTS, "r=1, moved": {"point": "r=1", "variant": "moved"},
             "r=1, shuffled": {"point": "r=1", "variant": "shuffled"}}
    spec = {**SPEC, "setting_parts": parts, "paper": {}, "placebos": {"moved": "square", "shuffled": "square"},
            "primary": "test/acc"}
    lower = [0.50, 0.52, 0.54, 0.56, 0.58]
    noise = [0.004, -0.004, 0.002, -0.002, 0.0]
    values = {("r=1, paper", "standard"): lower, ("r=1, clean", "standard"): [v + 0.3 for v in lower],
              ("r=1, square", "rrr"): [v + 0.2 + d for v, d in zip(lower, noise)],           # helps
              ("r=1, moved", "rrr"): [v + 0.05 + d for v, d in zip(lower, noise[::-1])],     # true beats it by 0.15
              ("r=1, shuffled", "rrr"): [v + 0.2 + d for v, d in zip(lower, noise[1:] + noise[:1])]}  # as good
    text = verdict_section({"preset": "full", "specs": {"e": spec}}, runs(values))
    rrr = next(line for line in text.splitlines() if "| square | rrr |" in line)
    assert verdict_of(rrr) == "helps; not shown to come from the masks' information (against shuffled: equivalent)"
    values[("r=1, shuffled", "rrr")] = values[("r=1, moved", "rrr")]  # now both placebos fall short of the masks
    text = verdict_section({"preset": "full", "specs": {"e": spec}}, runs(values))
    rrr = next(line for line in text.splitlines() if "| square | rrr |" in line)
    assert verdict_of(rrr) == "helps; helps because of the masks (beats 2 placebos)"


def test_other_protocols_say_where_train_like_decided_otherwise():
    """An oracle "helps" beside a train_like "protocol uninformative": the effect exists, no practitioner could
    have chosen it."""
    table = runs({("r=1, paper", "standard"): [0.50, 0.52, 0.54, 0.56, 0.58],
                  ("r=1, clean", "standard"): [0.80, 0.82, 0.84, 0.86, 0.88],
                  ("r=1, paper", "two_stage"): [0.65, 0.66, 0.70, 0.70, 0.74]}, protocols=("train_like", "oracle"))
    table.loc[table["method"] == "two_stage", "train_like:all_tied"] = 1.0
    text = verdict_section({"preset": "full", "specs": {"e": SPEC}}, table)
    rows = [line for line in text.splitlines() if "| two_stage |" in line]
    assert verdict_of(rows[0]) == "protocol uninformative"
    assert verdict_of(rows[1]) == "helps; train_like: protocol uninformative"
    table["train_like:all_tied"] = 0.0  # the same verdict under both: no note
    rows = [line for line in verdict_section({"preset": "full", "specs": {"e": SPEC}}, table).splitlines()
            if "| two_stage |" in line]
    assert verdict_of(rows[1]) == "helps"
