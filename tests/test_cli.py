import json
import subprocess
import sys

import pytest

from explearn.cli import main


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("triangles", "standard", "two_stage", "two_stage_no_mapping", "joint", "rrr", "kl", "softmax",
                 "small_cnn", "conv1x1", "lr_ratio = 1.0", "wasserstein", "mask_transform", "dilate", "hull",
                 "energy", "tap", "saliency_guided", "two_stage_constrained", "epsilon = 0.001",
                 "integrated_gradients", "occlusion"):
        assert name in out


def test_list_attributions_names_each_with_its_convention(capsys):
    assert main(["list", "attributions"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["gradcam", "input_gradient", "input_x_gradient",
                                                   "integrated_gradients", "occlusion", "saliency"]
    assert any("abs=True" in line for line in lines) and any("50 steps" in line for line in lines)


def test_train_writes_json_and_prints_a_summary(tmp_path, capsys):
    code = main(["train", "--dataset", "triangles", "--method", "two_stage", "--seed", "0", "--out", str(tmp_path / "x"),
                 "--epochs", "1", "--data", "n_train=16", "--data", "n_val=8", "--data", "n_test=16",
                 "--data", "image_size=16", "--hp", "lr_ratio=10", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test" in out and "acc" in out and "result.json" in out
    result = json.loads((tmp_path / "x" / "result.json").read_text())
    assert result["config"]["hparams"]["lr_ratio"] == 10.0 and result["config"]["data"]["options"]["n_train"] == 16
    assert 0 <= result["metrics"]["test/acc"] <= 1


@pytest.mark.parametrize("args, message", [
    (["train", "--method", "rr"], "unknown method 'rr'; did you mean 'rrr'"),
    (["train", "--hp", "lrr=1"], "unknown setting 'lrr'"),
    (["train", "--data", "n_trian=5"], "did you mean 'n_train'"),
    (["train", "--hp", "lr"], "expected KEY=VALUE"),
    (["train", "--dataset", "triangle"], "did you mean 'triangles'"),
])
def test_mistakes_exit_2_with_a_message(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["list"], ["train"], ["fit"], ["predict"], ["explain"], ["bench"], ["reproduce"]])
def test_help_on_every_command(command):
    out = subprocess.run([sys.executable, "-m", "explearn.cli", *command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: explearn" in out.stdout
