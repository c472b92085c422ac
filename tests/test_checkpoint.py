import json
import pickle
import pickletools
import zipfile

import pytest
import torch

from explearn import train
from explearn.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint, save_result
from explearn.errors import CheckpointError
from explearn.models import small_cnn


@pytest.fixture(scope="module")
def trained(tiny):
    return train(tiny, "two_stage", seed=0, epochs=1, quiet=True)


def _save(path, model, **kwargs):
    spec = kwargs.pop("model_spec", {"name": "small_cnn", "options": {}})
    return save_checkpoint(path, model, input_shape=(1, 16, 16), class_names=["up", "down"], model_spec=spec, **kwargs)


def test_round_trip_gives_identical_predictions(tmp_path, trained, tiny):
    path = save_result(tmp_path / "m.pt", trained, tiny)
    ckpt = load_checkpoint(path)
    x = tiny.test.x
    for name, value in trained.model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[name], value)
    # training used the channels-last layout; in the same layout the outputs are bit-identical
    model = trained.model.eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    assert ckpt.input_shape == (1, 16, 16) and ckpt.config["method"] == "two_stage"
    assert ckpt.metrics["test/acc"] == trained.metrics["test/acc"]
    assert not ckpt.model.training


def test_no_mapping_ablation_round_trips(tmp_path, tiny):
    result = train(tiny, "two_stage_no_mapping", seed=0, epochs=1, quiet=True)
    ckpt = load_checkpoint(save_result(tmp_path / "m.pt", result, tiny))
    with torch.no_grad():
        expected = result.model.eval().to(memory_format=torch.contiguous_format)(tiny.test.x)
        assert torch.equal(ckpt.model(tiny.test.x), expected)


def test_changed_weights_are_rejected(tmp_path):
    path = _save(tmp_path / "m.pt", small_cnn((1, 16, 16), 2))
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] += 1e-3  # an edit that keeps the file well-formed
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="changed afterwards"):
        load_checkpoint(path)


def test_changed_metadata_is_rejected(tmp_path):
    path = _save(tmp_path / "m.pt", small_cnn((1, 16, 16), 2))
    payload = torch.load(path, weights_only=True)
    payload["meta"] = payload["meta"].replace('"up"', '"left"')
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused_without_running_it(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 1, "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_plain_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("content, message", [
    (b"hello, I am a text file", "not a readable PyTorch checkpoint"),
    (b"", "not a readable PyTorch checkpoint"),
])
def test_foreign_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_plain_state_dict_is_not_an_explearn_checkpoint(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(small_cnn((1, 16, 16), 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not an explearn checkpoint"):
        load_checkpoint(path)


def test_truncated_file_is_rejected(tmp_path):
    path = _save(tmp_path / "m.pt", small_cnn((1, 16, 16), 2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_newer_format_version_is_incompatible(tmp_path):
    path = _save(tmp_path / "m.pt", small_cnn((1, 16, 16), 2))
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        load_checkpoint(path)


def test_unknown_model_is_reported(tmp_path):
    path = _save(tmp_path / "m.pt", small_cnn((1, 16, 16), 2), model_spec={"name": "big_transformer", "options": {}})
    with pytest.raises(CheckpointError, match="cannot rebuild its model"):
        load_checkpoint(path)


def test_custom_network_needs_the_architecture(tmp_path):
    net = small_cnn((1, 16, 16), 2)
    path = _save(tmp_path / "m.pt", net, model_spec={"name": "custom", "class": "MyNet"})
    with pytest.raises(CheckpointError, match="pass a freshly built network"):
        load_checkpoint(path)
    ckpt = load_checkpoint(path, model=small_cnn((1, 16, 16), 2))
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), net.eval()(x))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path, model=small_cnn((1, 16, 16), 3))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_file_holds_only_plain_data(tmp_path):
    """The format itself: a zip written by torch.save whose pickle names no class outside torch's rebuild helpers."""
    path = _save(tmp_path / "m.pt", small_cnn((1, 16, 16), 2), metrics={"val/acc": 0.5})
    with zipfile.ZipFile(path) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    globals_ = {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}
    assert globals_ and all(g.split()[0] in ("torch._utils", "torch", "collections") for g in globals_), globals_
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT and json.loads(payload["meta"])["metrics"] == {"val/acc": 0.5}
