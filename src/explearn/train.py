"""``train(data, method, seed)``: one run of one method on one benchmark, as an importable function.

The loop never names a method: it shuffles, batches, calls ``method.update(batch)`` and ``end_epoch()``, evaluates
every split after every epoch, and keeps the model of the epoch chosen on the validation split.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from explearn.config import check, from_dict, json_ready, to_dict
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.errors import ConfigError
from explearn.files import atomic_write
from explearn.explain.attribution import ATTRIBUTION, Estimate, alignment_estimate, wrong_score_estimate
from explearn.explain.gradcam import has_feature_map
from explearn.methods.base import METHODS, Batch, Method
from explearn.metrics import (accuracy, balanced_accuracy, confidence, minority_class, per_class_accuracy,
                              shortcut_metrics)
from explearn.models import MODELS, check_model, check_outputs
from explearn.run_config import TrainConfig, training_default
from explearn.selection import PROTOCOLS, Tracker, has_intervention, intervene, score_metric
from explearn.version import __version__


@dataclass
class TrainResult:
    """The outcome of one run.

    Attributes:
        config: the full configuration, with every setting resolved (JSON-ready).
        metrics: final metrics of the selected model, keyed ``split/metric`` (``test/acc``, ``val/acc`` ...).
        history: tidy records, one per (epoch, split, metric): ``{"epoch", "split", "metric", "value"}``;
            epoch 0 is before training.
        predictions: predicted classes of the selected model on each evaluation split except train.
        examples: for the first ``attributions`` test images: ``image`` (k, C, H, W), ``mask``, ``label``,
            ``attribution`` (the input gradient behind ``*/align``, (k, C, H, W)), as nested lists; else empty.
        model: the trained model (selected epoch), on CPU.
        protocols: the model each selection protocol chose (``explearn.selection``): ``{protocol:
            {"selected_epoch", "tied_epochs", "metrics"}}``, for ``train_like`` always, ``oracle`` where the data
            have ``val_oracle``, ``explanation`` where the validation split has wrong-reason masks.
    """

    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    predictions: dict[str, list[int]]
    examples: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    protocols: dict[str, Any] = field(default_factory=dict)

    def curve(self, metric: str = "acc", split: str = "test") -> list[float]:
        """Values of one metric per epoch (index 0 = before training)."""
        rows = sorted((r for r in self.history if r["split"] == split and r["metric"] == metric), key=lambda r: r["epoch"])
        return [r["value"] for r in rows]

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "metrics": self.metrics, "history": self.history,
                "predictions": self.predictions, "examples": self.examples, "protocols": self.protocols}

    def save(self, out_dir: str | Path) -> Path:
        """Write ``result.json`` (config, metrics, history, predictions, protocols) into ``out_dir``; returns its path.

        Numpy scalars and 0-d tensors (e.g. a metric a user added) are written as numbers.

        Raises:
            TypeError: a value that is not JSON-serialisable, naming its key (``metrics['x']: numpy.ndarray ...``);
                nothing is written then.
        """
        text = json.dumps({key: json_ready(value, key) for key, value in self.to_json().items()}, indent=1,
                          allow_nan=True)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return atomic_write(out / "result.json", text)  # a reader never sees half a file


def train(data: Splits, method: str | TrainConfig = "two_stage", seed: int | None = None, *,
          model: str | nn.Module | None = None, quiet: bool = False, **options: Any) -> TrainResult:
    """Train one model with one method.

    Args:
        data: the benchmark splits (e.g. ``datasets.triangles(n_train=500, seed=0)``).
        method: a registered method name (``explearn list``), or a whole ``TrainConfig`` (a ``RunSpec`` gives its
            training part); then no other setting may be given.
        seed: the run seed (default 0): model initialisation and data order. It does not depend on the method, so
            runs of different methods with the same seed are paired.
        model: a registered model name (default ``small_cnn``), or an ``nn.Module`` with ``features``,
            ``mapping``, ``classifier`` (trained in place; it is then not re-initialised by ``seed``).
        quiet: no progress bar.
        **options: the other fields of ``explearn.run_config.TrainConfig``, where each is defined once with its
            default and help: ``hparams`` (the method's settings, see its ``HParams``; unknown keys are an error),
            ``model_options``, ``epochs`` (30), ``batch_size`` (32), ``select`` (``best_val`` keeps the epoch with
            the highest validation accuracy, earliest on ties; ``best_val_balanced`` the highest validation
            balanced accuracy, for imbalanced classes; ``last`` the last epoch; selection never looks at the
            test split), ``device`` (``auto``: CUDA if available, else CPU), ``curves`` (``val``: only the
            validation split is evaluated after every epoch, which selection reads; ``all``: every split, for
            convergence curves on test; the final metrics cover every split either way), ``attributions``
            (store images, masks and attribution maps of this many test images in ``examples``).

    Returns:
        A ``TrainResult``.

    Raises:
        ConfigError: an unknown setting (with the closest known name) or a bad value.
    """
    if isinstance(method, TrainConfig):
        check(seed is None and not options and (model is None or isinstance(model, nn.Module)), "train",
              "a TrainConfig holds every setting: give it alone (or a method name and keywords); only your own "
              "network may go beside it, as model=net")
        cfg = method.training()
        if isinstance(model, nn.Module):
            cfg = dataclasses.replace(cfg, model="custom")
    else:
        check(isinstance(method, str), "train", f"method must be a registered name or a TrainConfig, got {method!r}")
        if "device" in options:
            options["device"] = str(options["device"])  # a torch.device is welcome too
        cfg = TrainConfig.of(method, seed=0 if seed is None else seed,
                             model=(model if isinstance(model, str) else "custom") if model is not None
                             else training_default("model"), **options)
    model = cfg.model if model is None else model
    method_cls = METHODS.get(cfg.method)
    hp = from_dict(method_cls.HParams, cfg.hparams, f"method {cfg.method!r}")
    if method_cls.uses_masks and not bool((data.train.has_mask | data.train.has_wrong_mask).any()):
        raise ConfigError(f"method {cfg.method!r} needs explanation masks (right- or wrong-reason), but no training "
                          "sample has one")
    dev = resolve_device(cfg.device)

    torch.manual_seed(cfg.seed)
    net, model_config = build_model(model, cfg, data)
    # channels-last layout: same values, 1.3x faster training and 3.7x faster evaluation on CPU (benchmarks/), for
    # the registered models, which are tested in it; a user's network keeps the default layout, which its code
    # may assume (x.view(B, -1) fails on a channels-last map)
    layout = torch.channels_last if isinstance(model, str) else torch.contiguous_format
    net = check_model(net).to(dev, memory_format=layout)
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)  # data as the weights
    splits = {name: ds.to(dev, channels_last=layout == torch.channels_last, dtype=dtype)
              for name, ds in data.eval_splits().items()}
    batches_per_epoch = len(batch_bounds(len(data.train), cfg.batch_size))
    algo: Method = method_cls(net, hp, batches_per_epoch)
    minority = minority_class(data.drawn_class_counts())  # as drawn: oversampling balances the counts

    fit = _fit(algo, splits, cfg, minority, quiet)
    shortcut = data.info.get("shortcut_splits")
    last = copy.deepcopy(algo.model.state_dict()) if "oracle" in fit.chosen else None  # the oracle's model
    algo.model.load_state_dict(fit.best_state)
    metrics, predictions = final_metrics(algo, splits, minority, shortcut)
    protocols = protocol_metrics(algo, splits, minority, shortcut, fit.chosen, fit.best_state, fit.history,
                                 last, (fit.best_epoch, metrics))
    metrics.update({
        "selected_epoch": fit.best_epoch,
        "time/total_s": fit.seconds,  # training and per-epoch evaluation
        "time/epoch_s": fit.train_seconds / cfg.epochs,  # training steps only
    })
    config = result_config(data, cfg, hp, model_config, dev)
    examples = attribution_examples(algo.model, splits["test"], cfg.attributions) if cfg.attributions else {}
    return TrainResult(config, metrics, fit.history, predictions, examples, algo.model.cpu(), protocols)


def result_config(data: Splits, cfg: TrainConfig, hp: Any, model_config: dict[str, Any],
                  dev: torch.device) -> dict[str, Any]:
    """``TrainResult.config``: the version, the data's ``info``, every field of ``cfg`` with the method's settings
    resolved (``hp``), the model as built and the device it trained on. ``train_many`` writes the same, so that
    stored results of either are interchangeable."""
    config = {"version": __version__, "data": dict(data.info), **asdict(cfg), "hparams": to_dict(hp),
              "model": model_config, "device": str(dev), "attribution": ATTRIBUTION}
    config.pop("model_options")
    return config


@dataclass
class _Fit:
    history: list[dict[str, Any]]
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    train_seconds: float
    seconds: float
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)


def curve_splits(splits: dict[str, ExplanationDataset], curves: str) -> dict[str, ExplanationDataset]:
    """The splits evaluated after every epoch: every split under ``curves="all"``, else those the selection
    protocols read: ``val``, ``val_oracle`` where the data have it and ``val_intervened`` (``selection.intervene``
    of ``val``) where the validation split has wrong-reason masks."""
    out = dict(splits) if curves == "all" else {"val": splits["val"]}
    if "val_oracle" in splits:
        out["val_oracle"] = splits["val_oracle"]
    if has_intervention(splits["val"]):
        out["val_intervened"] = intervene(splits["val"])
    return out


def protocol_metrics(algo: Method, splits: dict[str, ExplanationDataset], minority: int | None,
                     shortcut: list[str] | None, chosen: dict[str, dict[str, Any]], best_state: dict[str, Any],
                     history: list[dict[str, Any]], last_state: dict[str, Any] | None,
                     scored: tuple[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The model each selection protocol chose, scored on every evaluation split but train (accuracies, and the
    shortcut's reliance and worst-group accuracy where the data name the pair; no attribution metrics), with
    its epoch, the number of epochs tied with it, and the curve splits' scores at that epoch (``val_oracle``,
    ``val_intervened``) from the history.

    Args:
        best_state: the train-like choice, which the model holds when this is called and holds again after it.
        last_state: the last epoch's state (the ``oracle`` protocol's model), if that protocol applies.
        scored: (epoch, final metrics) of the model the caller already scored: a protocol that chose the same
            epoch takes its values from there instead of predicting again.

    Returns: ``{protocol: {"selected_epoch", "tied_epochs", "metrics": {"split/metric": value}}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    loaded = False
    for name, entry in chosen.items():
        if entry["selected_epoch"] == scored[0]:
            metrics = {k: v for k, v in scored[1].items() if _protocol_key(k)}
        else:
            state = last_state if name == "oracle" else entry["state"] if entry["state"] is not None else best_state
            algo.model.load_state_dict(state)
            loaded = True
            metrics = {}
            for split, ds in splits.items():
                if split != "train":
                    metrics.update({f"{split}/{k}": v for k, v in split_scores(_predict(algo, ds), ds, minority).items()})
            if shortcut:
                metrics.update(shortcut_metrics(metrics, shortcut[0], shortcut[1], splits[shortcut[0]].n_classes))
        for r in history:
            if r["epoch"] == entry["selected_epoch"] and r["split"] == "val_intervened" and \
                    r["metric"] in ("acc", "balanced_acc"):
                metrics[f"val_intervened/{r['metric']}"] = r["value"]
        out[name] = {"selected_epoch": entry["selected_epoch"], "tied_epochs": entry["tied_epochs"],
                     "metrics": metrics}
    if loaded:
        algo.model.load_state_dict(best_state)
    return {name: out[name] for name in PROTOCOLS if name in out}


def _protocol_key(key: str) -> bool:
    """Whether a final-metric key is one a protocol reports: the scores of an evaluation split (``split_scores``) and
    the shortcut's metrics."""
    split, _, metric = key.partition("/")
    if split == "shortcut":
        return True
    return split != "train" and (metric in ("acc", "balanced_acc", "minority_acc") or metric.startswith("acc_class"))


def _fit(algo: Method, splits: dict[str, ExplanationDataset], cfg: TrainConfig, minority: int | None, quiet: bool) -> _Fit:
    """The epoch loop: train, evaluate the curve splits, keep the state of the selected epoch."""
    order = torch.Generator().manual_seed(cfg.seed)  # data order: the run seed, never the method
    curves = curve_splits(splits, cfg.curves)
    history: list[dict[str, Any]] = []
    record_scores(history, 0, _evaluate(algo, curves, minority))
    best_score, best_epoch, best_state = -1.0, 0, {}
    tracker = Tracker(score_metric(cfg.select), "val_intervened" in curves, "val_oracle" in curves,
                      keep_best=cfg.select == "last")
    train_seconds = 0.0
    start = time.perf_counter()
    bar = progress_bar(cfg.epochs, quiet, f"{cfg.method} seed {cfg.seed}")
    for epoch in range(1, cfg.epochs + 1):
        tic = time.perf_counter()
        logs = _run_epoch(algo, splits["train"], cfg.batch_size, order)
        train_seconds += time.perf_counter() - tic
        check_finite(logs, algo.model.parameters(), epoch, cfg)
        scores = _evaluate(algo, curves, minority)
        record_scores(history, epoch, scores)
        record_scores(history, epoch, {"train": logs})
        score = scores["val"][score_metric(cfg.select)]
        if cfg.select == "last" or score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(algo.model.state_dict())
        tracker.observe(epoch, scores, lambda: copy.deepcopy(algo.model.state_dict()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val=f"{scores['val']['acc']:.3f}")
    if bar is not None:
        bar.close()
    return _Fit(history, best_epoch, best_state, train_seconds, time.perf_counter() - start, tracker.chosen())


class TrainingDiverged(ConfigError):
    """A loss or a weight became NaN or infinite during training (a learning rate or loss weight too large)."""


def check_finite(logs: Mapping[str, float], params: Any, epoch: int, cfg: TrainConfig, seed: int | None = None) -> None:
    """Stop a run whose training diverged, instead of evaluating a model of NaN weights (its predictions would
    all be class 0, an accuracy that looks like a result).

    Args:
        logs: the epoch's mean logged values (losses, gradient norms).
        params: the model's parameters after the epoch.
        epoch, cfg, seed: for the message (``seed`` defaults to the config's).

    Raises:
        TrainingDiverged: a logged value or a parameter is NaN or infinite.
    """
    bad = [f"{key} = {value}" for key, value in logs.items() if not math.isfinite(value)]
    if not bad and not all(bool(torch.isfinite(p).all()) for p in params):
        bad = ["a weight"]
    if bad:
        raise TrainingDiverged(
            f"method {cfg.method!r}, run seed {cfg.seed if seed is None else seed}: training diverged in epoch "
            f"{epoch} ({', '.join(bad)} is not finite); " + divergence_advice(cfg.method)
        )


#: what to change, per method setting, when training diverges (``divergence_advice``)
_REMEDIES = {"lam": "lower lam", "lr_ratio": "lower lr_ratio", "dual_lr": "lower dual_lr", "epsilon": "raise epsilon"}


def divergence_advice(method: str) -> str:
    """What to try after a diverged run of ``method``: the learning rate, and the method's own loss weights."""
    names = {f.name for f in dataclasses.fields(METHODS.get(method).HParams)} if method in METHODS else set()
    remedies = [text for key, text in _REMEDIES.items() if key in names]
    return "lower the learning rate (--hp lr=...)" + (f", or {', or '.join(remedies)}" if remedies else "")


def build_model(model: str | nn.Module, cfg: TrainConfig, data: Splits) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(model, nn.Module):
        if cfg.model_options:
            raise ConfigError("model_options apply to registered models only, not to a model instance")
        check_outputs(check_model(model), data.input_shape)  # a user's network: logits, in both modes
        return model, {"name": "custom", "class": type(model).__name__}
    builder, options_cls = MODELS.get(model)
    opts = from_dict(options_cls, cfg.model_options, f"model {model!r}")
    return build_registered(model, builder, opts, data.input_shape, data.n_classes), {"name": model,
                                                                                    "options": to_dict(opts)}


def build_registered(name: str, builder: Any, options: Any, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """``builder(input_shape, n_classes, options)``, any failure of the network on that input shape (e.g. images
    too small for its pooling) reported as a ConfigError naming the model and the shape.

    Raises:
        ConfigError: the model cannot be built for this input shape.
    """
    try:
        return builder(tuple(input_shape), n_classes, options)
    except ConfigError:
        raise
    except (RuntimeError, ValueError) as err:  # torch's own message on a too small map, a zero-size output ...
        raise ConfigError(f"model {name!r} cannot take images of shape (C, H, W) = {tuple(input_shape)}: "
                          f"{str(err).splitlines()[0]}") from None


def resolve_device(name: str) -> torch.device:
    """The device named ``name`` (``auto``: CUDA if available, else CPU), checked to exist on this machine now,
    before any data or model is built (torch itself would only fail at the first tensor moved there).

    Raises:
        ConfigError: an unknown device name, a CUDA (or MPS, XPU) device this machine lacks, or one that cannot
            hold training data (``meta``); the message lists the devices there are.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; this machine has {', '.join(_devices())}") from None
    if dev.type == "cpu":
        return dev
    backend = getattr(torch, dev.type, None)  # torch.cuda, torch.xpu, torch.mps; None for meta and the like
    if backend is None or not backend.is_available():
        raise ConfigError(f"device {name!r} is not available here; this machine has {', '.join(_devices())}")
    if dev.index is not None and dev.index >= backend.device_count():
        raise ConfigError(f"device {name!r} does not exist: this machine has {', '.join(_devices())}")
    return dev


def _devices() -> list[str]:
    """The devices explearn can train on here, e.g. ``['cpu', 'cuda:0', 'cuda:1']``."""
    out = ["cpu"]
    for kind in ("cuda", "xpu", "mps"):
        backend = getattr(torch, kind, None)
        if backend is not None and backend.is_available():
            out += [f"{kind}:{i}" for i in range(backend.device_count())]
    return out


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch over ``n`` samples: batches of ``batch_size``, except that a last
    batch of a single sample joins the one before it (a batch of one cannot train BatchNorm layers, which need
    more than one value per channel; with ``batch_size`` 1 every batch has one sample and this is left as it is).
    """
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if batch_size > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _run_epoch(algo: Method, train: ExplanationDataset, batch_size: int, order: torch.Generator) -> dict[str, float]:
    """One pass over the shuffled training data (batches as ``batch_bounds`` cuts them); returns the mean of each
    logged value."""
    algo.model.train()
    perm = torch.randperm(len(train), generator=order).to(train.x.device)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for start, stop in batch_bounds(len(train), batch_size):
        idx = perm[start:stop]
        logs = algo.update(Batch(train.x[idx], train.y[idx], train.mask[idx], train.has_mask[idx],
                                 train.wrong_mask[idx], train.has_wrong_mask[idx]))
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    for key, value in algo.end_epoch().items():
        sums[key] = sums.get(key, 0.0) + value
        counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sums}


def _predict(algo: Method, ds: ExplanationDataset, batch_size: int = 256) -> torch.Tensor:
    return _logits(algo, ds, batch_size).argmax(1)


def _logits(algo: Method, ds: ExplanationDataset, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([algo.predict(ds.x[i:i + batch_size]) for i in range(0, len(ds), batch_size)])


def split_scores(pred: torch.Tensor, ds: ExplanationDataset, minority: int | None) -> dict[str, float]:
    """Accuracy, balanced accuracy, the accuracy of each class (``acc_class{k}``) and, only where the training
    classes are imbalanced (``minority`` is the class with the fewest training samples, None on balanced data),
    the minority class's accuracy (``minority_acc``). Shape: pred (N,)."""
    per_class = per_class_accuracy(pred, ds.y, ds.n_classes)  # type: ignore[arg-type]
    out = {"acc": accuracy(pred, ds.y), "balanced_acc": balanced_accuracy(pred, ds.y, ds.n_classes)}  # type: ignore[arg-type]
    if minority is not None:  # on balanced classes "minority" would just be class 0
        out["minority_acc"] = per_class[minority]
    out.update({f"acc_class{k}": v for k, v in enumerate(per_class)})
    return out


def _evaluate(algo: Method, splits: dict[str, ExplanationDataset], minority: int | None) -> dict[str, dict[str, float]]:
    return {name: split_scores(_predict(algo, ds), ds, minority) for name, ds in splits.items()}


def final_metrics(algo: Method, splits: dict[str, ExplanationDataset], minority: int | None,
                   shortcut: tuple[str, str] | list[str] | None = None):
    """Scores, confidence (``ce``, ``max_prob``, ``margin``) and attribution metrics of every split (``align``
    under the input gradient; ``align_gradcam`` under Grad-CAM where m(f(x)) is a feature map), and the
    shortcut's reliance and worst-group accuracy where the data name an aligned and a swapped split (``shortcut``,
    from ``Splits.info["shortcut_splits"]``)."""
    metrics: dict[str, Any] = {}
    predictions: dict[str, list[int]] = {}
    spatial = has_feature_map(algo.model, next(iter(splits.values())))
    for name, ds in splits.items():
        out = _logits(algo, ds)
        pred = out.argmax(1)
        for key, value in {**split_scores(pred, ds, minority), **confidence(out, ds.y)}.items():
            metrics[f"{name}/{key}"] = value
        if name != "train":
            predictions[name] = pred.cpu().tolist()
            metrics.update(_estimate(f"{name}/align", alignment_estimate(algo.model, ds)))
            if spatial:  # the same share under a second attribution (issue 16), where the model has a feature map
                metrics.update(_estimate(f"{name}/align_gradcam", alignment_estimate(algo.model, ds,
                                                                                     attribution="gradcam")))
            if bool(ds.has_wrong_mask.any()):  # only splits with wrong-reason masks (a confounder) get the score
                metrics.update(_estimate(f"{name}/wrong_score", wrong_score_estimate(algo.model, ds)))
    if shortcut:
        metrics.update(shortcut_metrics(metrics, shortcut[0], shortcut[1], splits[shortcut[0]].n_classes))
    return metrics, predictions


def _estimate(key: str, e: Estimate) -> dict[str, float]:
    """An attribution metric read on a subsample (``ATTRIBUTION_SAMPLES`` images): its value under ``key``, and
    ``key_ci_low``, ``key_ci_high``, ``key_n`` (images read) beside it."""
    return {key: e.mean, f"{key}_ci_low": e.ci_low, f"{key}_ci_high": e.ci_high, f"{key}_n": e.n}


def attribution_examples(model: nn.Module, test: ExplanationDataset, k: int) -> dict[str, Any]:
    """Images, masks, labels and attribution maps of the first k test images (4 significant digits)."""
    from explearn.explain.gradients import input_gradients
    from explearn.models.base import eval_mode

    k = min(k, len(test))
    with eval_mode(model):
        grad = input_gradients(model, test.x[:k], target="predicted")

    def tolist(t: torch.Tensor) -> list:
        return [[[[float(f"{v:.4g}") for v in row] for row in ch] for ch in img] for img in t.cpu().tolist()]

    return {"index": list(range(k)), "label": test.y[:k].tolist(), "image": tolist(test.x[:k]),
            "mask": tolist(test.mask[:k]), "attribution": tolist(grad), "attribution_method": ATTRIBUTION}


def record_scores(history: list[dict[str, Any]], epoch: int, scores: dict[str, dict[str, float]]) -> None:
    for split, values in scores.items():
        for metric, value in values.items():
            history.append({"epoch": epoch, "split": split, "metric": metric, "value": float(value)})


def progress_bar(total: int, quiet: bool, desc: str):
    if quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False)
