"""A search grid of one value is used, not silently replaced by the method's default (found while fixing issue 12,
item 10: a spec's `search = { rrr = { lam = [10.0] } }` trained RRR with its default lam = 100)."""

from explearn.planning import plan_eval, plan_search
from explearn.specs import load_spec


def test_a_single_candidate_is_the_chosen_value(tmp_path):
    spec_file = tmp_path / "one.toml"
    spec_file.write_text('dataset = "triangles"\nmethods = ["standard", "rrr", "joint"]\nseeds = 2\n'
                         'search = { rrr = { lam = [10.0] }, joint = { lam = [0.5, 2.0] } }\n')
    spec = load_spec(spec_file, "smoke")
    searched = {p.method for p in plan_search(spec)}
    assert searched == {"joint"}  # one candidate needs no search
    runs = {(p.method, p.seed): p.run for p in plan_eval(spec, {})}
    assert runs[("rrr", 0)].hparams["lam"] == 10.0 and runs[("rrr", 1)].hparams["lam"] == 10.0
    assert runs[("standard", 0)].hparams["lr"] == 1e-3
