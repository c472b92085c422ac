"""One run configuration (issue 15): TrainConfig's fields are the keywords of train, the command line's training
options and the specs' defaults; a RunSpec is a TrainConfig with its data, and keeps the run ids of stored runs."""

import dataclasses

import pytest
import torch

from explearn import datasets
from explearn.cli import OPTIONS, _parser as build_parser
from explearn.errors import ConfigError
from explearn.run_config import RunSpec, TrainConfig, training_default, training_fields
from explearn.train import train

TINY = {"n_train": 8, "n_val": 4, "n_test": 8, "image_size": 16}


def test_a_whole_config_trains_as_its_keywords_do():
    data = datasets.triangles(seed=0, **TINY)
    cfg = TrainConfig(method="rrr", seed=3, hparams={"lam": 10.0}, epochs=2, batch_size=4)
    a = train(data, cfg, quiet=True)
    b = train(data, "rrr", 3, hparams={"lam": 10.0}, epochs=2, batch_size=4, quiet=True)
    assert a.history == b.history and a.config == b.config
    for name in training_fields():
        if name not in ("hparams", "model", "model_options", "device"):  # model: {name, options}
            assert a.config[name] == getattr(cfg, name)
    run = RunSpec.create("triangles", TINY, 0, "rrr", {"lam": 10.0}, "small_cnn", {}, 3, 2, batch_size=4)
    assert torch.equal(next(iter(train(data, run, quiet=True).model.parameters())),
                       next(iter(a.model.parameters())))  # a RunSpec trains its training part


def test_unknown_or_doubled_settings_are_refused():
    data = datasets.triangles(seed=0, **TINY)
    with pytest.raises(ConfigError, match="unknown setting 'epoch'; did you mean 'epochs'"):
        train(data, "standard", epoch=2)
    with pytest.raises(ConfigError, match="a TrainConfig holds every setting"):
        train(data, TrainConfig(epochs=1), epochs=2)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)


def test_the_command_line_options_are_the_fields():
    parser = build_parser()
    args = parser.parse_args(["train"])
    for name in OPTIONS:
        assert getattr(args, name) == training_default(name), name
    fit = parser.parse_args(["fit", "somewhere"])
    assert (fit.model, fit.select) == ("small_resnet", "best_val_balanced")  # fit's own defaults
    assert set(OPTIONS) | {"hparams", "model_options"} == set(training_fields())


def test_the_specs_take_their_defaults_from_the_fields(tmp_path):
    from explearn.specs import load_spec

    path = tmp_path / "s.toml"
    path.write_text('dataset = "triangles"\nmethods = ["standard"]\n')
    spec = load_spec(path, "quick")
    for key in ("model", "epochs", "batch_size", "curves", "attributions", "select"):
        assert spec[key] == training_default(key)


def test_a_run_is_its_training_config_and_its_data():
    run = RunSpec.create("triangles", TINY, 5, "standard", {}, "small_cnn", {}, 1, 2)
    assert isinstance(run, TrainConfig) and run.training() == dataclasses.replace(
        TrainConfig(method="standard", seed=1, epochs=2), hparams=run.hparams, model_options=run.model_options)
    assert "device" not in run.config() and RunSpec.from_config(run.config()).run_id == run.run_id
    assert set(run.config()) == set(training_fields()) - {"device"} | {"dataset", "data_options", "data_seed"}


def test_newcomer_findings_on_the_python_api():
    """The second newcomer's findings on train / train_many with the one configuration."""
    import numpy as np

    from explearn.models import small_cnn
    from explearn.vectorized import train_many

    data = datasets.triangles(seed=0, **TINY)
    torch.manual_seed(0)
    net = small_cnn(data.input_shape, data.n_classes)
    cfg = TrainConfig(method="standard", epochs=1)
    assert train(data, cfg, model=net, quiet=True).config["model"]["name"] == "custom"  # your network beside it
    with pytest.raises(ConfigError, match="model must be a registered name.*train\\(data, config, model=net\\)"):
        TrainConfig(model=net)
    with pytest.raises(ConfigError, match=r"hparams must be a mapping of setting -> value"):
        train(data, "rrr", hparams="lam=1")
    with pytest.raises(ConfigError, match="the run seeds are the list `seeds`"):
        train_many(data, [0, 1], "standard", seed=5)
    with pytest.raises(ConfigError, match="models_at_once must be an integer >= 1"):
        train_many(data, [0, 1], "standard", epochs=1, models_at_once="2")
    with pytest.raises(ConfigError, match="did you mean 'standard'") as err:
        train_many(data, [0, 1], "standrd", epochs=1)
    assert "one by one" not in str(err.value)  # not a vectorisation limit: train() refuses it too
    assert len(train_many(data, np.arange(2), "standard", epochs=1)) == 2  # seeds as an array


def test_newcomer_findings_on_the_command_line(tmp_path, capsys):
    from explearn.cli import main
    from tests.field.image_folders import make_folder

    for argv, said in ((["train", "--methd", "standard"], "--methd (did you mean --method?)"),
                       (["train", "--epoch", "1"], "--epoch (did you mean --epochs?)"),  # no abbreviations
                       (["fit", "somewhere", "--curves", "all"], "unrecognized arguments: --curves")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and said in capsys.readouterr().err
    root = make_folder(tmp_path / "d", n=12, split=False)
    assert main(["fit", str(root), "--backbone", "x:y", "--feature-layer", "a", "--model", "mlp"]) == 2
    assert "with --backbone your function builds the network" in capsys.readouterr().err
    assert main(["fit", str(root), "--model-opt", "hidden=3", "--out", str(tmp_path / "m.pt")]) == 2
    assert "unknown setting 'hidden' (did you mean 'mapping_hidden'?) for --model-opt" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
