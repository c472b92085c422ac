"""Issue 12 item 8: edge values at the command line.

Every number, name or path a user can type gets a clear error (exit code 2, the option or key named, no
traceback), never silent nonsense: non-finite floats, negative seeds, absent devices, negative worker counts,
empty strings, files that are not checkpoints, values that cannot be saved as JSON.
"""

from __future__ import annotations

import importlib
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explearn.checkpoint import _torch_reason, load_checkpoint, save_checkpoint
from explearn.cli import main
from explearn.config import check_seed, from_dict, json_ready, setting
from explearn.errors import CheckpointError, ConfigError
from explearn.models import small_cnn
from explearn.train import TrainResult

TRAIN = ["train", "--dataset", "triangles", "--data", "n_train=16", "--data", "n_val=8", "--data", "n_test=8",
         "--data", "image_size=16", "--epochs", "1", "--quiet"]


def _error(args: list[str], capsys) -> str:
    """Run the CLI; assert exit code 2 and no traceback; return standard error. Argparse's own refusals (a bad
    type or choice) exit through SystemExit(2), the others return 2: both are exit code 2 for the shell."""
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


# --- floats ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, words", [
    ("inf", "is not a finite number"),  # the case: accepted, then alignment nan
    ("-inf", "is not a finite number"),
    ("1e999", "is not a finite number"),  # overflows to inf when read
    ("nan", "NaN is not a valid value"),
    ("", "expected a number"),
    ("0.01x", "expected a number"),
])
def test_hp_float_edges(value, words, capsys):
    err = _error([*TRAIN, "--hp", f"lr={value}"], capsys)
    assert "setting 'lr'" in err and words in err


@pytest.mark.parametrize("option", ["--data difficulty", "--data mask_fraction", "--data mask_param",
                                    "--hp lr_ratio"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_every_float_setting_refuses_non_finite(option, value, capsys):
    """Dataset, mask and model settings go through the same rule as method settings."""
    flag, key = option.split()
    err = _error([*TRAIN, flag, f"{key}={value}"], capsys)
    assert f"setting '{key}'" in err and ("finite" in err or "NaN" in err)


def test_float_settings_refuse_non_finite_unless_allowed():
    @dataclass(frozen=True)
    class Settings:
        lr: float = setting(0.1, "a rate")
        limit: float = setting(float("inf"), "no limit by default", allow_inf=True)
        scale: float | None = setting(None, "optional")
        sizes: tuple[float, ...] = setting((1.0,), "several")

    assert from_dict(Settings, {"limit": "inf"}, "test").limit == float("inf")
    assert from_dict(Settings, {"limit": "-inf", "lr": "1e308"}, "test").lr == 1e308
    for key, value in [("lr", "inf"), ("lr", float("-inf")), ("scale", "inf"), ("sizes", "1,inf")]:
        with pytest.raises(ConfigError, match=f"setting '{key}': .* is not a finite number"):
            from_dict(Settings, {key: value}, "test")
    with pytest.raises(ConfigError, match="NaN"):
        from_dict(Settings, {"limit": "nan"}, "test")


# --- integers: seeds, workers, epochs, batch size ----------------------------------------------------------------


@pytest.mark.parametrize("option, value", [("--data-seed", "-1"), ("--seed", "-1"), ("--data-seed", "1.5"),
                                           ("--seed", "abc"), ("--data-seed", ""), ("--seed", str(2**63))])
def test_seeds_are_integers_from_zero(option, value, capsys):
    """The issue's case: `--data-seed -1` ended in numpy's traceback."""
    err = _error([*TRAIN, option, value], capsys)
    assert f"argument {option}: a seed must be an integer from 0 to 2^63 - 1, got {value!r}" in err


def test_fit_data_seed(tmp_path, capsys):
    err = _error(["fit", str(tmp_path), "--data-seed", "-1"], capsys)
    assert "argument --data-seed" in err


def test_seed_rule_in_the_library():
    from explearn import datasets, train

    assert check_seed(np.int64(3), "x") == 3 and type(check_seed(np.int64(3), "x")) is int
    assert check_seed(2**63 - 1, "x") == 2**63 - 1
    # a newcomer's cases: 2^63 trained exactly what seed 0 trains (torch wraps), 2^64 ended in a traceback
    for bad in (-1, 1.0, True, "1", 2**63, 2**64):
        with pytest.raises(ConfigError, match=r"a seed must be an integer from 0 to 2\^63 - 1"):
            check_seed(bad, "x")
    with pytest.raises(ConfigError, match=r"data seed: a seed must be an integer from 0 to 2\^63 - 1, got -1"):
        datasets.load("triangles", seed=-1, n_train=16, n_val=8, n_test=8, image_size=16)
    data = datasets.load("triangles", seed=0, n_train=16, n_val=8, n_test=8, image_size=16)
    with pytest.raises(ConfigError, match=r"run seed: a seed must be an integer from 0 to 2\^63 - 1, got -2"):
        train(data, "standard", seed=-2, epochs=1, quiet=True)
    # numpy integers and integer-valued types are taken as the seed they are; floats and booleans are refused
    assert train(data, "standard", seed=np.int64(3), epochs=1, quiet=True).config["seed"] == 3
    with pytest.raises(ConfigError, match="batch_size must be an integer, got 2.5"):
        train(data, "standard", seed=0, batch_size=2.5, epochs=1, quiet=True)


def test_train_many_takes_the_seeds_train_takes():
    # a newcomer's cases: train_many ran int(seed): 1.5 and True became seed 1, "01" became seeds 0 and 1
    from explearn import datasets
    from explearn.vectorized import train_many

    data = datasets.load("triangles", seed=0, n_train=16, n_val=8, n_test=8, image_size=16)
    for seeds, message in (([1.5], r"seeds\[0\]: a seed must be an integer"), ([True], "seeds\\[0\\]"),
                           ("01", "seeds must be a list"), (3, "seeds must be a list"), ([None], "seeds\\[0\\]"),
                           ([0, 0], "seed\\(s\\) 0 given more than once")):
        with pytest.raises(ConfigError, match=message):
            train_many(data, seeds, "standard", model="mlp", epochs=1)


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_reproduce_workers(value, monkeypatch, capsys):
    """The issue's case: `reproduce --workers -1` ended in a traceback."""
    monkeypatch.setattr(importlib.import_module("explearn.reproduce"), "reproduce",
                        lambda *a, **k: pytest.fail("ran with a bad --workers"))
    err = _error(["reproduce", "paper", "--preset", "smoke", "--workers", value], capsys)
    assert f"argument --workers: expected an integer >= 0, got {value!r}" in err


@pytest.mark.parametrize("option, name", [("--epochs", "epochs"), ("--batch-size", "batch_size")])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_epochs_and_batch_size(option, name, value, capsys):
    err = _error([*TRAIN, option, value], capsys)
    assert f"{name} must be >= 1, got {value}" in err


@pytest.mark.parametrize("value, words", [("0", "positive sizes"), ("1e308", "expected HxW"),
                                          ("100000x100000", "10,000,000,000 pixels per image")])
def test_image_size_edges(tmp_path, value, words, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module("explearn.train"), "train", lambda *a, **k: pytest.fail("trained"))
    assert words in _error(["fit", str(tmp_path), "--image-size", value, "--out", str(tmp_path / "m.pt")], capsys)


def test_huge_integers_are_refused(capsys):
    assert "expected an integer" in _error([*TRAIN, "--data", "n_train=1e308"], capsys)
    assert "invalid int value: '1e308'" in _error([*TRAIN, "--epochs", "1e308"], capsys)


# --- devices -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps", "meta", "foo", ""])
def test_absent_or_unknown_device(device, capsys):
    """The issue's case: `--device cuda` without CUDA ended in a traceback; the message lists what there is."""
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.device_count()}"  # one past the last
    if device == "cuda:3" and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has mps")
    err = _error([*TRAIN, "--device", device], capsys)
    assert f"device {device!r}" in err and "this machine has cpu" in err


def test_cuda_index_beyond_the_machine(monkeypatch):
    """On a one-GPU machine (simulated: the check only asks torch.cuda), cuda:0 is fine and cuda:1 is refused."""
    from explearn.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0") and resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ConfigError, match=r"device 'cuda:1' does not exist: this machine has cpu, cuda:0"):
        resolve_device("cuda:1")


# --- paths and names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, option", [
    ([*TRAIN, "--out", ""], "--out"),
    (["fit", ""], "DATA_DIR"),
    (["fit", ".", "--backbone", "", "--feature-layer", "layer1"], "--backbone"),
    (["predict", "", "x.png"], "CHECKPOINT"),
    (["explain", "m.pt", "x.png", "--out", ""], "--out"),
    (["report", ""], "dir"),
    (["reproduce", ""], "collection"),
])
def test_empty_strings(args, option, capsys):
    err = _error(args, capsys)
    assert f"argument {option}: must not be empty" in err


def test_fit_data_dir_that_is_a_file(tmp_path, capsys):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("image,label\n")
    assert "DATA_DIR" in _error(["fit", str(csv_file)], capsys)


def test_report_dir_that_is_a_file_or_missing(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert "is a file" in _error(["report", str(tmp_path / "x.json")], capsys)
    assert "not a report folder" in _error(["report", str(tmp_path / "missing")], capsys)


def test_explain_masks_that_is_missing_or_a_file(tmp_path, capsys):
    (tmp_path / "m.txt").write_text("")
    for masks, words in [(tmp_path / "none", "folder not found"), (tmp_path / "m.txt", "is a file")]:
        err = _error(["explain", "m.pt", "x.png", "--masks", str(masks), "--out", str(tmp_path / "o")], capsys)
        assert f"--masks {masks}: {words}" in err


def test_os_errors_from_user_paths_are_messages(monkeypatch, capsys):
    """What the operating system refuses (permissions, a folder for a file) is the user's to fix: a message, exit 2;
    a genuine bug keeps its traceback."""
    cli = importlib.import_module("explearn.cli")

    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/x.png")

    monkeypatch.setattr(cli, "_cmd_list", denied)
    assert "Permission denied: '/data/x.png'" in _error(["list"], capsys)

    def bug(args):
        raise KeyError("internal")

    monkeypatch.setattr(cli, "_cmd_list", bug)
    with pytest.raises(KeyError):
        main(["list"])


# --- checkpoints -------------------------------------------------------------------------------------------------


def _write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name, content, kind", [
    ("result.json", '{"config": {}, "metrics": {}}', "it is JSON text"),  # the case: "could execute code"
    ("list.json", ' \n[1, 2]', "it is JSON text"),
    ("labels.csv", "image,label\nx.png,a\n", "it is CSV text"),
    ("one_line.csv", "image,label\n", "it is a text file"),  # a header alone is not recognisably CSV
    ("notes.pt", "hello, I am a text file", "it is a text file"),
    ("notes.txt", "Dear reader, hello.\nBye\n", "it is a text file"),  # commas, but not on every line
    ("empty.pt", b"", "it is empty (0 bytes)"),
    ("photo.pt", None, "it is a PNG image"),
    ("photo.jpg", None, "it is a JPEG image"),
    ("blob.pt", b"\x00\x01\x02\xfe\xff" * 10, "binary data of an unknown kind"),
    ("archive.zip", None, "a zip archive that PyTorch cannot read"),
])
def test_files_given_as_checkpoints_are_named_for_what_they_are(tmp_path, name, content, kind, capsys):
    path = tmp_path / name
    if name.startswith("photo"):
        Image.new("RGB", (4, 4)).save(path, format="PNG" if name.endswith(".pt") else "JPEG")
    elif name == "archive.zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "not a model")
    else:
        _write(path, content)
    err = _error(["predict", str(path), str(tmp_path)], capsys)
    assert f"{path}: not a readable PyTorch checkpoint file" in err and kind in err
    assert "could execute code" not in err


def test_a_folder_given_as_checkpoint(tmp_path, capsys):
    assert f"{tmp_path}: is a folder, not a checkpoint file" in _error(["predict", str(tmp_path), "x.png"], capsys)


def test_truncated_checkpoint_message_is_whole_sentences(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, small_cnn((1, 16, 16), 2), input_shape=(1, 16, 16), class_names=["a", "b"],
                    model_spec={"name": "small_cnn", "options": {}})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "a zip archive that PyTorch cannot read" in message and "could execute code" not in message
    assert message.endswith((".)", "\u2026)")) and "your checkpoint file is)" not in message  # the cut


@pytest.mark.parametrize("text, expected", [
    ("short reason", "short reason"),
    ("first line\nsecond line", "first line"),
    ("x" * 200, "x" * 200),  # 200 characters are kept whole
    # 379 characters: cut after the 10th sentence, the last that ends within 200 characters
    ("One sentence here. " * 20, ("One sentence here. " * 10).rstrip() + " \u2026"),
    # no sentence ends within 200 characters: cut at the last space before them
    ("word " * 60, ("word " * 40).rstrip() + " \u2026"),
])
def test_torch_reason_never_cuts_mid_sentence(text, expected):
    assert _torch_reason(RuntimeError(text)) == expected


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_could_execute_code_only_for_refused_objects(tmp_path, capsys):
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": _Exploit()}, legacy, _use_new_zipfile_serialization=False)
    zipped = tmp_path / "zipped.pt"
    torch.save({"w": _Exploit()}, zipped)
    for path in (legacy, zipped):
        with pytest.raises(CheckpointError, match=r"could execute code.*GLOBAL print"):
            load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"\x80\x02garbage that is no pickle")
    with pytest.raises(CheckpointError, match="damaged or not written by PyTorch") as info:
        load_checkpoint(damaged)
    assert "could execute code" not in str(info.value)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="a Python pickle that PyTorch did not write") as info:
        load_checkpoint(plain)
    assert "could execute code" not in str(info.value)


# --- JSON: numpy scalars in what is saved --------------------------------------------------------------------


def _result(metrics) -> TrainResult:
    return TrainResult(config={"seed": np.int64(0), "lr": torch.tensor(0.5)}, metrics=metrics,
                       history=[{"epoch": 1, "split": "val", "metric": "acc", "value": np.float64(0.25)}],
                       predictions={"test": [np.int64(1), 0]})


def test_numpy_scalars_in_metrics_are_saved_as_numbers(tmp_path):
    """The issue's case: a numpy scalar in saved metrics failed with a TypeError that did not name the key."""
    result = _result({"test/acc": np.float32(0.75), "count": np.int32(3), "flag": np.bool_(True),
                      "loss": torch.tensor(0.125), "align": float("nan")})
    saved = json.loads(result.save(tmp_path).read_text())
    assert saved["metrics"]["test/acc"] == 0.75 and type(saved["metrics"]["count"]) is int
    assert saved["metrics"]["flag"] is True and saved["metrics"]["loss"] == 0.125
    assert saved["config"] == {"seed": 0, "lr": 0.5} and saved["history"][0]["value"] == 0.25
    assert saved["predictions"]["test"] == [1, 0] and np.isnan(saved["metrics"]["align"])


@pytest.mark.parametrize("value, name", [(np.zeros(3), "numpy.ndarray"), (torch.zeros(2), "torch.Tensor"),
                                         (Path("x"), f"pathlib.{type(Path('x')).__name__}"), (object(), "object")])
def test_values_that_cannot_be_saved_name_their_key(tmp_path, value, name):
    result = _result({"test/acc": 0.5, "test/curve": value})
    with pytest.raises(TypeError, match=rf"^metrics\['test/curve'\]: {name} is not JSON-serialisable"):
        result.save(tmp_path)
    assert not (tmp_path / "result.json").exists()  # nothing half-written
    with pytest.raises(TypeError, match=r"^history\[0\]\['bad'\]: "):
        json_ready([{"bad": value}], "history")


def test_checkpoint_metadata_with_numpy_scalars(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_cnn((1, 16, 16), 2), input_shape=(1, 16, 16),
                           class_names=["a", "b"], model_spec={"name": "small_cnn", "options": {}},
                           config={"seed": np.int64(2)}, metrics={"test/acc": np.float32(0.5)})
    ckpt = load_checkpoint(path)
    assert ckpt.metrics == {"test/acc": 0.5} and ckpt.config == {"seed": 2}
    with pytest.raises(TypeError, match=r"metrics\['m'\]: numpy.ndarray"):
        save_checkpoint(tmp_path / "n.pt", small_cnn((1, 16, 16), 2), input_shape=(1, 16, 16), class_names=["a", "b"],
                        model_spec={"name": "small_cnn", "options": {}}, metrics={"m": np.ones(2)})


def test_a_learning_rate_that_diverges_stops_with_a_message(capsys):
    # issue 12 item 8: `--hp lr=1e308` was accepted and trained every weight into NaN; a model of NaN weights
    # predicts class 0 everywhere, an accuracy that looks like a result. A learning rate beyond float32 cannot
    # be applied at all (a newcomer's case: 1e39 ended in the optimiser's overflow traceback); a finite one that
    # diverges stops training with a message
    from explearn import datasets, train
    from explearn.train import TrainingDiverged

    data = datasets.triangles(n_train=16, seed=0, n_val=8, n_test=8, image_size=16)
    for lr in (1e308, 1e39):
        with pytest.raises(ConfigError, match=r"lr = 1e\+(308|39) is beyond the float32 range"):
            train(data, "standard", 3, hparams={"lr": lr}, epochs=2, quiet=True)
    with pytest.raises(TrainingDiverged, match=r"method 'standard', run seed 3: training diverged in epoch [12] \((a weight|.*nan)"):
        train(data, "standard", 3, hparams={"lr": 1e30}, epochs=2, quiet=True)
    from explearn.vectorized import train_many

    with pytest.raises(TrainingDiverged, match="run seed 4: training diverged in epoch [12]"):
        train_many(data, [4, 5], "standard", hparams={"lr": 1e30}, model="mlp", epochs=2)
    code = main(["train", "--hp", "lr=1e30", "--data", "n_train=16", "--data", "n_val=8", "--data", "n_test=8",
                 "--data", "image_size=16", "--epochs", "2", "--quiet"])
    assert code == 2 and "training diverged in epoch" in capsys.readouterr().err


def test_options_given_twice_in_different_places(tmp_path, capsys):
    # found by a newcomer: `fit --data root=X` and `--data seed=1` ended in a TypeError traceback
    for argv in (["fit", str(tmp_path), "--data", "root=x"], ["fit", str(tmp_path), "--data", "seed=1"],
                 ["train", "--data", "seed=1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "give it as" in err and "Traceback" not in err


def test_a_backbone_function_that_fails_is_named_with_its_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad_nets.py").write_text("def noargs():\n    return None\n\ndef broken(n):\n    raise OSError('weights.pt missing')\n")
    (tmp_path / "syntax_nets.py").write_text("def build(n)\n    return None\n")
    monkeypatch.chdir(tmp_path)
    from explearn.models.factory import backbone_model

    with pytest.raises(ConfigError, match=r"calling noargs\(n_classes=2\) raised TypeError: .*takes 0 positional"):
        backbone_model("bad_nets:noargs", 2, "x", (1, 8, 8))
    with pytest.raises(ConfigError, match=r"raised OSError: weights.pt missing \(bad_nets.py, line 5\)"):
        backbone_model("bad_nets:broken", 2, "x", (1, 8, 8))
    with pytest.raises(ConfigError, match=r"importing module 'syntax_nets' raised SyntaxError: .*syntax_nets.py, line 1"):
        backbone_model("syntax_nets:build", 2, "x", (1, 8, 8))


def test_backbone_for_a_registered_model_checkpoint_is_refused(tmp_path, capsys):
    # found by a newcomer: --backbone was silently ignored when the checkpoint holds a registered model
    from explearn.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", small_cnn((1, 16, 16), 2), input_shape=(1, 16, 16),
                           class_names=["a", "b"], model_spec={"name": "small_cnn", "options": {}})
    with pytest.raises(CheckpointError, match="holds the registered model 'small_cnn'.*leave --backbone x:y out"):
        load_checkpoint(path, backbone="x:y")


def test_huge_mask_parameters_act_as_the_image_size():
    # a newcomer's cases: --data mask_transform=dilate --data mask_param=1e9 (and soft) hung; erode 1e6 and pool 1e9
    # ended in allocator tracebacks. A radius or block wider than the image gives the masks of one as wide as it.
    from explearn.datasets.masks import transform_masks

    mask = torch.zeros(2, 1, 12, 16)
    mask[:, :, 4:7, 5:9] = 1.0
    for name in ("dilate", "erode", "pool"):
        assert torch.equal(transform_masks(mask, name, 1e9), transform_masks(mask, name, 16)), name
    assert torch.equal(transform_masks(mask, "dilate", 1e9), torch.ones_like(mask))
    wide = transform_masks(mask, "soft", 1e9)
    assert torch.allclose(wide, transform_masks(mask, "soft", 1e6)) and float(wide.min()) > 0.5


def test_sizes_that_cannot_fit_in_memory_are_refused(tmp_path, monkeypatch, capsys):
    # a newcomer's cases: --data image_size=100000 for triangles ended in numpy's _ArrayMemoryError, and a folder
    # dataset with --data image_size=100000,100000 hung while it swapped (5.5 GB after 12 s)
    from explearn import datasets

    with pytest.raises(ConfigError, match=r"dataset 'triangles': would need .* GiB of memory .* a smaller image_size"):
        datasets.triangles(n_train=16, seed=0, n_val=8, n_test=8, image_size=100000)
    with pytest.raises(ConfigError, match="more than Pillow's limit of 89,478,485 pixels"):
        datasets.load_folder(tmp_path, image_size=(100000, 100000))
    from tests.field.image_folders import make_folder

    root = make_folder(tmp_path / "d")
    pages = {"SC_AVPHYS_PAGES": 2**18, "SC_PAGE_SIZE": 4096}  # 1 GiB free, whatever this machine has
    monkeypatch.setattr("explearn.datasets.base.os.sysconf", pages.__getitem__)
    with pytest.raises(ConfigError, match=r"would need 7.2 GiB of memory for its tensors, 1.0 GiB are free"):
        datasets.load_folder(root, image_size=(9000, 9000))  # 6 images x (3 + 1 mask) planes x 81M float32


def test_ctrl_c_is_one_line_and_exit_code_130(monkeypatch, capsys):
    """Issue 12 item 3: Ctrl-C (KeyboardInterrupt) in any command: one line, exit code 130 (128 + SIGINT) as
    shells report it, no traceback. `reproduce` also says what is stored (tests/field/test_shared_sweeps.py)."""
    cli = importlib.import_module("explearn.cli")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_list", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "explearn: interrupted\n"
