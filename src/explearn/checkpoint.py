"""Checkpoints: a trained model's weights with what is needed to use it (model, class names, preprocessing,
training config, metrics), loaded without executing code.

A checkpoint is a ``torch.save`` file holding only plain data: tensors, strings, numbers. It is read with
``torch.load(..., weights_only=True)``, which refuses any pickled object that could run code on loading. A SHA-256
digest over the weights and the metadata is stored beside them, so a file changed after saving (by hand, by a
truncated copy, by an edit of its weights) is rejected rather than silently used.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from explearn.version import __version__
from explearn.config import json_ready
from explearn.files import atomic_path
from explearn.errors import CheckpointError, ConfigError

FORMAT = "explearn-checkpoint"
#: bumped when the layout changes in a way older readers cannot follow; this version reads formats 1..FORMAT_VERSION
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the network with its trained weights, in eval mode, on CPU.
        class_names: one name per class, in the order of the model's outputs.
        input_shape: (C, H, W) the model was trained on.
        preprocess: how image files were turned into inputs (``datasets.Preprocess.to_dict()``), or None when the
            training data did not come from files.
        config: the training configuration (``TrainResult.config``).
        metrics: the final metrics of the training run (validation, test ...).
        explearn_version: the version that wrote the file.
    """

    model: nn.Module
    class_names: list[str]
    input_shape: tuple[int, ...]
    preprocess: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    explearn_version: str = __version__


def save_checkpoint(path: str | Path, model: nn.Module, *, input_shape: tuple[int, ...], class_names: list[str],
                    model_spec: Mapping[str, Any], preprocess: Mapping[str, Any] | None = None,
                    config: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and metadata to ``path`` (atomically: a reader never sees half a file).

    Args:
        model: a three-part explearn model.
        input_shape: (C, H, W) of one input.
        class_names: one per output of the model.
        model_spec: how to rebuild the network: ``{"name": registered model, "options": {...}}``, or
            ``{"name": "custom", "class": ...}`` for a user's network (then loading needs that network).
        preprocess: ``Preprocess.to_dict()`` of the training data, when it came from image files.
        config, metrics: the training run's config and final metrics, kept for the record (numpy scalars and 0-d
            tensors are stored as numbers).

    Returns:
        The path written.

    Raises:
        TypeError: a config or metrics value that is not JSON-serialisable, naming its key; nothing is written.
    """
    from explearn.models.mapping import IdentityMapping

    spec = dict(model_spec)
    if isinstance(model.mapping, IdentityMapping):  # the "no mapping" ablation replaced m: rebuild it the same way
        spec["mapping_removed"] = True
    meta = {
        "explearn_version": __version__, "input_shape": list(input_shape), "class_names": [str(c) for c in class_names],
        "model": spec, "preprocess": dict(preprocess) if preprocess is not None else None,
        "config": json_ready(dict(config or {}), "config"), "metrics": json_ready(dict(metrics or {}), "metrics"),
    }
    meta_json = json.dumps(meta, sort_keys=True, allow_nan=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": meta_json, "state_dict": state,
               "digest": _digest(meta_json, state)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # opened here, not by torch.save: an OSError then names the file and atomic_path reports it as ``path``'s
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
    return path


def load_checkpoint(path: str | Path, model: nn.Module | None = None, backbone: str | None = None) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``, without executing any code stored in the file.

    Args:
        path: the checkpoint file.
        model: for a checkpoint of a user's own network (``model_spec`` "custom" or "backbone"), a freshly built
            network of the same architecture to load the weights into; registered models are rebuilt from the file.
        backbone: for a checkpoint trained with ``explearn fit --backbone MODULE:FUNCTION``, that same name: the
            network is rebuilt by calling it and split at the stored layer. The name stored in the file is never
            imported unless the caller names it here (a checkpoint cannot make explearn import code).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, an unreadable file, not a PyTorch file (named for what it is: empty, JSON or
            other text, an image ...), not an explearn checkpoint, refused by weights-only loading (it holds
            objects that could run code), changed after saving (digest mismatch), from an incompatible format
            version, or weights that do not fit the network.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; give the file `explearn fit --out` wrote "
                              "(e.g. model.pt)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    payload = _read(path)
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported by explearn {__version__} (it reads "
            f"versions 1 to {FORMAT_VERSION}); the file was written by "
            f"{_written_by(payload)}: load it with that version, or retrain"
        )
    meta_json, state, digest = payload.get("meta"), payload.get("state_dict"), payload.get("digest")
    if not isinstance(meta_json, str) or not isinstance(state, dict) or not isinstance(digest, str):
        raise CheckpointError(f"{path}: an explearn checkpoint must hold 'meta', 'state_dict' and 'digest'; this one "
                              "lacks one of them or holds the wrong type (damaged or not written by explearn)")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its state_dict holds values that are not tensors")
    if _digest(meta_json, state) != digest:
        raise CheckpointError(f"{path}: its contents do not match the digest stored when it was saved: the file was "
                              "changed afterwards (edited, tampered with or corrupted); refusing to use it")
    meta = json.loads(meta_json)
    net = _rebuild(path, meta, model, backbone)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the stored weights do not fit the network: {err}") from None
    net.eval()
    return Checkpoint(net, meta["class_names"], tuple(meta["input_shape"]), meta.get("preprocess"),
                      meta.get("config", {}), meta.get("metrics", {}), meta.get("explearn_version", "?"))


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a file holding an explearn checkpoint (of any format version); reads it weights-only."""
    try:
        return Path(path).is_file() and isinstance(_read(Path(path)), dict)
    except (CheckpointError, OSError):
        return False


#: first bytes of files given as a checkpoint by mistake -> what the file is (a checkpoint is a zip or a pickle)
_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
               b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"%PDF": "a PDF document",
               b"\x1f\x8b": "a gzip archive", b"\x93NUMPY": "a NumPy array (.npy)"}
#: bytes read to tell what a file is
_HEAD = 512
#: what torch's weights-only unpickler says when it refuses an object that could run code
_REFUSED = re.compile(r"Unsupported global|is blocked|Can only create new object|unrecognized function|"
                      r"must be imported to load")


def _read(path: Path) -> dict[str, Any]:
    """The payload of a PyTorch file, read weights-only. Files that cannot be PyTorch files (neither a zip archive,
    PyTorch's format, nor a pickle, its legacy format) are named for what they are without being unpickled."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or type(err).__name__})") from None
    kind = _foreign_kind(head)
    if kind is not None:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint file: it is {kind}; a checkpoint is the "
                              "file `explearn fit --out` writes (e.g. model.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _torch_reason(err)
        if _REFUSED.search(reason):
            raise CheckpointError(
                f"{path}: refused by weights-only loading: the file holds pickled objects other than tensors and "
                f"plain data, which could execute code when loaded; explearn checkpoints never do ({reason})"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint file: its contents are damaged or not "
                              f"written by PyTorch ({reason})") from None
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a foreign file (KeyError, EOFError ...)
        what = "a zip archive that PyTorch cannot read (a truncated copy, or another kind of zip file)" \
            if head.startswith(b"PK") else "a Python pickle that PyTorch did not write, or a damaged PyTorch file"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint file: {what} ({_torch_reason(err)})"
                              ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = f"a {type(payload).__name__}" if not isinstance(payload, dict) else f"keys {sorted(map(str, payload))[:6]}"
        raise CheckpointError(f"{path}: not an explearn checkpoint (it holds {what}, without format {FORMAT!r}); "
                              "explearn writes checkpoints with `explearn fit` or explearn.checkpoint.save_checkpoint")
    return payload


def _rebuild(path: Path, meta: Mapping[str, Any], model: nn.Module | None, backbone: str | None) -> nn.Module:
    """The network described by the checkpoint: ``model``, a user's backbone rebuilt from the factory the caller
    names, or a registered model rebuilt from its options."""
    from explearn.models.mapping import IdentityMapping

    spec = meta["model"]
    if backbone is not None and spec.get("name") != "backbone":
        raise CheckpointError(f"{path}: this checkpoint holds the registered model {spec.get('name')!r}, not a network "
                              f"built by --backbone; leave --backbone {backbone} out")
    if model is not None:
        net = model
    elif spec.get("name") == "backbone":
        net = _rebuild_backbone(path, meta, backbone)
    elif spec.get("name") == "custom":
        raise CheckpointError(
            f"{path}: this checkpoint holds a user-defined network ({spec.get('class', '?')}); pass a freshly built "
            "network of the same architecture: load_checkpoint(path, model=...)"
        )
    else:
        net = _rebuild_registered(path, meta)
    if spec.get("mapping_removed"):
        net.mapping = IdentityMapping()
    return net


def _rebuild_registered(path: Path, meta: Mapping[str, Any]) -> nn.Module:
    from explearn.config import from_dict
    from explearn.models import MODELS

    spec = meta["model"]
    try:
        builder, options_cls = MODELS.get(spec["name"])
        opts = from_dict(options_cls, spec.get("options", {}), f"model {spec['name']!r} in {path}")
    except ConfigError as err:
        raise CheckpointError(f"{path}: cannot rebuild its model with explearn {__version__}: {err}") from None
    return builder(tuple(meta["input_shape"]), len(meta["class_names"]), opts)


def _rebuild_backbone(path: Path, meta: Mapping[str, Any], backbone: str | None) -> nn.Module:
    from explearn.models.factory import backbone_model

    spec = meta["model"]
    if backbone is None:
        raise CheckpointError(
            f"{path}: this checkpoint holds a network built by {spec['factory']} and split at "
            f"{spec['feature_layer']!r}; name that function to rebuild it (--backbone {spec['factory']}, or "
            "load_checkpoint(path, backbone=...)); explearn never imports code named by a file on its own"
        )
    if backbone != spec["factory"]:
        raise CheckpointError(f"{path}: trained with --backbone {spec['factory']}, not {backbone}")
    net, _ = backbone_model(backbone, len(meta["class_names"]), spec["feature_layer"], tuple(meta["input_shape"]),
                            spec.get("mapping", "conv1x1"), spec.get("output"))
    return net


def _digest(meta_json: str, state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _written_by(payload: Mapping[str, Any]) -> str:
    try:
        return f"explearn {json.loads(payload['meta'])['explearn_version']}"
    except Exception:  # noqa: BLE001 - only for the message
        return "an unknown explearn version"


def _foreign_kind(head: bytes) -> str | None:
    """What a file starting with ``head`` is, when it cannot be a PyTorch file; None when it may be one (a zip
    archive, PyTorch's format since 1.6, or a protocol-2+ pickle, its legacy format)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    if not head:
        return "empty (0 bytes)"
    for signature, kind in _SIGNATURES.items():
        if head.startswith(signature):
            return kind
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of the head
            return f"binary data of an unknown kind (it starts with {head[:8]!r})"
        text = head[:err.start].decode("utf-8")
    first = text.lstrip("\ufeff \t\r\n")
    if first.startswith(("{", "[")):
        return "JSON text (a result.json, for instance, holds metrics but no weights)"
    lines = [ln for ln in first.splitlines() if ln.strip()]
    whole = lines if len(head) < _HEAD else lines[:-1]  # the last line read may be cut
    if len(whole) >= 2 and len({ln.count(",") for ln in whole}) == 1 and whole[0].count(",") >= 1:
        return "CSV text"  # the same number of commas on every whole line read
    return "a text file"


def _torch_reason(err: BaseException) -> str:
    """The informative part of torch.load's error, whole sentences only: the unpickler's own words when torch wraps
    them in advice, its first line, and at most about 200 characters cut after a full sentence, marked with ..."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(err).__name__
    if len(line) <= 200:
        return line
    cut = line.rfind(". ", 0, 200)
    return (line[:cut + 1] if cut > 0 else line[:line.rfind(" ", 0, 200)]) + " \u2026"


def save_result(path: str | Path, result: Any, data: Any, model_spec: Mapping[str, Any] | None = None) -> Path:
    """Save the model of a ``TrainResult`` trained on ``data`` (``Splits``) as a checkpoint, with the data's class
    names and preprocessing (when the data came from image files), the run's config and metrics. ``model_spec``
    replaces the run's own model description (e.g. for a ``--backbone`` network)."""
    names = data.train.class_names or [str(k) for k in range(data.n_classes)]
    return save_checkpoint(path, result.model, input_shape=data.input_shape, class_names=list(names),
                           model_spec=model_spec or result.config["model"], preprocess=data.info.get("preprocess"),
                           config=result.config, metrics=result.metrics)
