from pathlib import Path

import pytest

from explearn.errors import ConfigError
from explearn.specs import experiments_dir, load_spec, load_specs

DEFAULTS = """
dataset = "triangles"
methods = ["standard", "two_stage"]
epochs = 30
data = { n_val = 100 }
[search]
two_stage = { lr_ratio = [0.1, 1.0] }
[presets.quick]
seeds = 2
data = { n_test = 50 }
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_defaults_spec_and_preset_merge(tmp_path):
    write(tmp_path, "_defaults", DEFAULTS)
    path = write(tmp_path, "exp", 'epochs = 5\n[grid]\nn_train = [10, 20]\n[presets.quick]\nepochs = 2\n')
    spec = load_spec(path, "quick")
    assert spec.name == "exp" and spec["epochs"] == 2 and spec["seeds"] == 2
    assert spec["data"] == {"n_val": 100, "n_test": 50}  # tables merge key by key
    assert [s.label for s in spec.settings] == ["n_train=10", "n_train=20"]
    assert spec.settings[0].data == {"n_train": 10}
    full = load_spec(path, "full")
    assert full["epochs"] == 5 and full["seeds"] == 1 and full["data"] == {"n_val": 100}


def test_grid_times_variants_with_method_and_model_settings(tmp_path):
    write(tmp_path, "_defaults", DEFAULTS)
    path = write(tmp_path, "exp", """
[grid]
n_train = [10]
hp = { lr_ratio = [1.0, 10.0] }
[[variants]]
label = "a"
[[variants]]
label = "b"
model = { mapping = "conv1x1" }
methods = ["two_stage"]
""")
    spec = load_spec(path)
    assert [s.label for s in spec.settings] == [
        "n_train=10, hp.lr_ratio=1, a", "n_train=10, hp.lr_ratio=1, b",
        "n_train=10, hp.lr_ratio=10, a", "n_train=10, hp.lr_ratio=10, b"]
    b = spec.settings[1]
    assert b.hparams == {"lr_ratio": 1.0} and b.model_options == {"mapping": "conv1x1"}
    assert spec.methods_for(b) == ["two_stage"] and spec.methods_for(spec.settings[0]) == ["standard", "two_stage"]


def test_empty_table_clears_an_inherited_one(tmp_path):
    write(tmp_path, "_defaults", DEFAULTS)
    assert load_spec(write(tmp_path, "exp", "search = {}\n"))["search"] == {}


@pytest.mark.parametrize("text, message", [
    ("epoks = 3\n", "unknown key 'epoks' \\(did you mean 'epochs'\\?\\)"),
    ("[presets.quick]\nseed = 3\n", "presets.quick.*unknown key 'seed' \\(did you mean 'seeds'"),
    ("data_seed = 'fixed'\n", "data_seed must be 'run' or an integer"),
    ("[grid]\nn_train = 5\n", "grid entry 'n_train' must be a non-empty list"),
    ("epochs = [\n", "not valid TOML"),
])
def test_spec_mistakes_name_the_file_and_key(tmp_path, text, message):
    write(tmp_path, "_defaults", DEFAULTS)
    with pytest.raises(ConfigError, match=message):
        load_spec(write(tmp_path, "exp", text))


def test_unknown_preset_and_spec_names(tmp_path):
    write(tmp_path, "_defaults", DEFAULTS)
    write(tmp_path, "small", "")
    with pytest.raises(ConfigError, match="unknown preset 'quik'"):
        load_spec(tmp_path / "small.toml", "quik")
    with pytest.raises(ConfigError, match="no experiment 'smal' .*did you mean 'small'"):
        load_specs(tmp_path, only=["smal"])
    with pytest.raises(ConfigError, match="spec not found"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("preset", ["smoke", "quick", "full"])
def test_every_shipped_spec_loads_and_expands_to_valid_runs(preset):
    from explearn.planning import plan_eval, plan_search

    specs = load_specs(experiments_dir("paper"), preset)
    assert {s.name for s in specs} >= {"small_data", "imbalance", "spurious", "consistency", "convergence"}
    for spec in specs:
        runs = plan_search(spec) + plan_eval(spec, {})
        assert runs and all(p.run.epochs >= 1 for p in runs)
    consistency = next(s for s in specs if s.name == "consistency")
    assert consistency["seeds"] == {"smoke": 3, "quick": 5, "full": 30}[preset]
    if preset == "full":
        assert all(s["seeds"] >= 10 for s in specs if s.name != "investigation")


def test_a_folder_without_specs_is_not_a_collection(tmp_path, monkeypatch):
    from explearn.specs import experiments_dir, load_specs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").mkdir()  # e.g. the repository's benchmark scripts beside the shipped collection
    (tmp_path / "benchmarks" / "epoch_time.py").write_text("")
    assert experiments_dir("benchmarks").parent.name == "experiments"
    with pytest.raises(ConfigError, match="no experiment specs"):
        load_specs(tmp_path / "benchmarks")


@pytest.mark.parametrize("collection", ["paper", "benchmarks", "ph2", "ablations"])
def test_every_method_gets_as_many_candidates_at_the_full_preset(collection):
    """issue 14, item 2: a method with more hyperparameter candidates gets more tries at the validation split; at
    the full preset every method of a setting has the same number (three; one where nothing is tuned)."""
    from explearn.planning import search_candidates

    for spec in load_specs(experiments_dir(collection), "full"):
        for setting in spec.settings:
            counts = {m: len(search_candidates(spec, setting, m)) for m in spec.methods_for(setting)}
            assert len(set(counts.values())) == 1, (spec.name, setting.label, counts)


def test_the_shipped_specs_are_package_data():
    """issue 15, item 5: the specs travel inside the package (an installed explearn finds them); in a checkout
    explearn/experiments links to experiments/, and reports keep naming experiments/paper."""
    import tomllib

    import explearn

    shipped = Path(explearn.__file__).parent / "experiments"
    root = Path(__file__).resolve().parents[1]
    assert shipped.resolve() == (root / "experiments").resolve()
    assert experiments_dir("paper") == (root / "experiments" / "paper").resolve()
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["explearn"]
    specs = {p.relative_to(shipped) for p in shipped.glob("*/*.toml")}
    covered = {p.relative_to(shipped) for pattern in patterns for p in shipped.glob(pattern.removeprefix("experiments/"))}
    assert specs and specs <= covered
