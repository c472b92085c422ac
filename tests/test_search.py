import math

import pytest

from explearn.search import candidate_key, candidates, choose


def test_candidates_are_the_grid_product_minus_fixed_keys():
    grid = {"lr_ratio": [0.1, 1.0], "lam": [1, 2, 3]}
    assert len(candidates(grid)) == 6 and candidates(grid)[0] == {"lr_ratio": 0.1, "lam": 1}
    assert candidates(grid, fixed={"lam": 5}) == [{"lr_ratio": 0.1}, {"lr_ratio": 1.0}]
    assert candidates({}) == [{}]


def test_choose_takes_the_best_mean_and_the_first_on_ties():
    a, b, c = (candidate_key({"x": v}) for v in (1, 2, 3))
    assert choose({a: [0.5, 0.7], b: [0.7, 0.5], c: [0.1]}) == (a, pytest.approx(0.6))  # tie: first
    assert choose({a: [0.5], b: [0.9, math.nan], c: []})[0] == b  # NaN and missing runs do not count
    with pytest.raises(ValueError, match="no search candidate"):
        choose({a: [], b: [math.nan]})


def test_explanation_rule_takes_the_lowest_reliance_within_delta():
    from explearn.search import choose_lexicographic

    scores = {"a": [0.80, 0.82], "b": [0.79, 0.81], "c": [0.70, 0.70], "d": [0.81, 0.81]}
    reliance = {"a": [0.3, 0.3], "b": [0.1, 0.1], "c": [0.0, 0.0], "d": [0.2, 0.2]}
    assert choose_lexicographic(scores, reliance, 0.02) == ("b", pytest.approx(0.80))  # c is outside the window
    assert choose_lexicographic(scores, reliance, 0.005)[0] == "d"  # a narrower window: a (0.81) and d only
    assert choose_lexicographic({"a": [0.845], "b": [0.825]}, {"a": [0.6], "b": [0.0]}, 0.02)[0] == "b"  # the edge
    tie = {"a": [0.1], "b": [0.1]}
    assert choose_lexicographic({"a": [0.80], "b": [0.81]}, tie, 0.02)[0] == "b"  # equal reliance: higher score
    with pytest.raises(ValueError, match="no search candidate"):
        choose_lexicographic({"a": [math.nan]}, {"a": [0.1]}, 0.02)


def _search_result(val, oracle_val, explanation_val, intervened):
    return {"metrics": {"val/acc": val}, "protocols": {
        "train_like": {"metrics": {"val/acc": val}},
        "oracle": {"metrics": {"val_oracle/acc": oracle_val}},
        "explanation": {"metrics": {"val/acc": explanation_val, "val_intervened/acc": intervened}}}}


def test_each_protocol_chooses_hyperparameters_from_the_same_search_runs():
    from explearn.reproduce import choose_by_protocol

    cell = {"lam=1": [_search_result(0.90, 0.55, 0.90, 0.30)],   # follows the shortcut
            "lam=10": [_search_result(0.89, 0.70, 0.89, 0.85)],  # within 0.02, far less reliant
            "lam=100": [_search_result(0.60, 0.75, 0.60, 0.60)]}
    chosen = choose_by_protocol(cell, "val/acc")
    assert chosen["oracle"][0] == "lam=100" and chosen["explanation"][0] == "lam=10"
    rows = {r["candidate"]: r for r in chosen["oracle"][1]}
    assert rows["lam=100"]["chosen"] and rows["lam=1"]["metric"] == "val_oracle/acc"
    assert choose_by_protocol({"x": [{"metrics": {"val/acc": 0.5}}]}, "val/acc") == {}  # runs without protocols


def test_a_candidate_only_another_protocol_chose_gets_its_own_evaluation_runs():
    from explearn.planning import plan_eval
    from explearn.specs import load_specs

    spec = [s for s in load_specs("experiments/paper", "smoke") if s.name == "spurious"][0]
    setting = spec.settings[0].label
    key = ("spurious", setting, "two_stage")
    plan = plan_eval(spec, {key: '{"lr_ratio": 1.0}', (*key, "oracle"): '{"lr_ratio": 10.0}',
                            (*key, "explanation"): '{"lr_ratio": 1.0}'})
    mine = [p for p in plan if p.setting == setting and p.method == "two_stage"]
    assert sorted((p.role, p.candidate, p.protocols) for p in mine if p.seed == 0) == [
        ("eval", '{"lr_ratio": 1.0}', ("train_like", "explanation")),
        ("protocol", '{"lr_ratio": 10.0}', ("oracle",))]
    others = [p for p in plan if p.method != "two_stage" and p.setting == setting]
    assert all(p.role == "eval" and p.protocols == () for p in others)  # one candidate: no protocol tag
    assert [p.entry().get("protocols") for p in mine if p.seed == 0] == [["train_like", "explanation"], ["oracle"]]


def test_protocol_runs_pick_each_protocols_choice():
    import pandas as pd

    from explearn.results import protocol_runs

    runs = pd.DataFrame([{"role": "eval", "protocols": "train_like,explanation", "seed": 0},
                         {"role": "protocol", "protocols": "oracle", "seed": 0},
                         {"role": "eval", "protocols": "*", "seed": 1},
                         {"role": "search", "protocols": "*", "seed": 1000}])
    assert protocol_runs(runs, "oracle")["seed"].tolist() == [0, 1]
    assert protocol_runs(runs, "oracle")["role"].tolist() == ["eval", "eval"]
    assert protocol_runs(runs, "train_like")["protocols"].tolist() == ["train_like,explanation", "*"]
