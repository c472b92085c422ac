"""``train_many(datas, seeds, method)``: S runs of ``train`` that differ only in their seeds (and perhaps their
training data), as one batched computation. Model i is the model ``train(datas[i], method, seeds[i], ...)``
makes: the same initialisation, data order, optimiser, evaluation records, model selection and final metrics.

On CPU with one torch thread (as sweeps train) we find every parameter, log and metric bit-identical to ``train``'s
(``tests/test_vectorized.py``); with more threads the matrix products split their sums by thread, so results agree
only up to float rounding. With one thread there are two exceptions within float rounding: stage 2 of the two-stage
method when some samples lack a mask (``train`` computes f on the masked samples alone, and a convolution of another
batch size may sum in another order), and the per-epoch predictions when a chunk of ``EVAL_SAMPLES // S`` images per
model differs from ``train``'s 256 in the same way (an accuracy can then differ only through an exact tie of two
logits). On a GPU the convolutions are grouped and the per-model losses vmapped: the same models up to float
rounding (measured on an H100 after 3 epochs: parameters within 2e-5 of ``train``'s, as close as two ``train`` runs
there; with cuDNN's default TF32 convolutions, which round grouped and single convolutions differently, within
5e-3).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from explearn.config import check, check_seed, from_dict
from explearn.datasets.base import ExplanationDataset, Splits
from explearn.errors import ConfigError, DataError
from explearn.methods.base import METHODS, Batch, Method, right_reasons, wrong_reasons
from explearn.methods.stacking import STACKED_METHODS, StackedBatch, StackedMethod, UpdateLogs
from explearn.metrics import minority_class
from explearn.models import MODELS, check_model
from explearn.models.base import eval_mode
from explearn.run_config import TrainConfig
from explearn.selection import Tracker, score_metric
from explearn.train import (TrainResult, attribution_examples, batch_bounds, build_model, check_finite, curve_splits,
                            final_metrics, progress_bar, protocol_metrics, record_scores, resolve_device, result_config,
                            split_scores)
from explearn.vectorized.stacked import model_state, repeat_for_models, stack_models, stacking_problem

#: Samples (over all models) per evaluation forward pass: bounds the activations held at once.
EVAL_SAMPLES = 2048


def why_not_vectorizable(method: str, model: str = "small_cnn", model_options: Mapping[str, Any] | None = None,
                         hparams: Mapping[str, Any] | None = None,
                         input_shape: tuple[int, int, int] = (3, 32, 32)) -> str | None:
    """Why runs of this configuration cannot be trained together by ``train_many``, or None when they can.

    The model is built once for images of ``input_shape`` (the global random state is left as it was) and
    checked (``stacked.stacking_problem``) for what a stacked model cannot carry per model: buffers (BatchNorm
    running statistics), dropout, or modules not known to act on each sample alone.
    """
    if method not in STACKED_METHODS:
        if method not in METHODS:
            return f"unknown method {method!r}"
        return (f"method {method!r} has no vectorised implementation (vectorised methods: "
                f"{', '.join(STACKED_METHODS.names())})")
    if not isinstance(model, str):
        return "the model must be a registered model name (an nn.Module instance is trained in place by train())"
    try:
        method_cls = METHODS.get(method)
        hp = from_dict(method_cls.HParams, hparams, f"method {method!r}")
        builder, options_cls = MODELS.get(model)
        opts = from_dict(options_cls, model_options, f"model {model!r}")
        with torch.random.fork_rng(devices=[]):
            net = method_cls(check_model(builder(input_shape, 2, opts)), hp, 1).model
    except ConfigError as err:
        return str(err)
    problem = stacking_problem(net)
    return f"model {model!r} cannot be vectorised: {problem}" if problem else None


def vectorizable(method: str, model: str = "small_cnn", model_options: Mapping[str, Any] | None = None,
                 hparams: Mapping[str, Any] | None = None) -> bool:
    """Whether ``train_many`` can train runs of this configuration together (``why_not_vectorizable`` says why
    not); callers fall back to one ``train`` per seed otherwise."""
    return why_not_vectorizable(method, model, model_options, hparams) is None


def train_many(datas: Splits | Sequence[Splits], seeds: Sequence[int], method: str | TrainConfig = "two_stage", *,
               quiet: bool = True, models_at_once: int | None = None, **options: Any) -> list[TrainResult]:
    """Train one model per seed, all at once, each exactly as ``train(datas[i], method, seeds[i], ...)`` would.

    The S models' parameters are stacked into (S, ...) tensors and every layer runs on all models' batches at
    once (``stacked``); the optimisers are elementwise, so minimising the sum of the models' losses gives each
    model its own update (``optim``). Each model has its own initialisation (``torch.manual_seed(seed)``, then
    the model is built, as ``train`` does), its own data order (a generator seeded with its seed), its own
    evaluation records and its own selected epoch. The final metrics and examples come from ``train``'s own
    functions, on each model rebuilt as an ``nn.Module``. On CPU with one torch thread the results are
    bit-identical to ``train``'s.

    Args:
        datas: one ``Splits`` for every seed, or one per seed (e.g. a training set per run seed); all of the same
            image shape, classes, split sizes and mask shapes.
        seeds: the run seeds, one model each.
        method: a registered method name, or a ``TrainConfig`` whose ``seed`` is replaced by each of ``seeds``
            (then no other setting may be given).
        quiet: no progress bar.
        **options: the other fields of ``explearn.run_config.TrainConfig``, as for ``train`` (the model by
            registered name).
        models_at_once: how many models share one stacked computation (the seeds are trained in consecutive
            groups of this size; the results do not depend on it). Default: all of them, except for
            convolutional models on CPU, 1: there the convolutions are compute-bound and larger stacks only
            spill the caches (measured 0.5-0.8x the speed of one ``train`` after another at S = 30).

    Returns:
        One ``TrainResult`` per seed, in order. ``config`` is ``train``'s (so run ids agree). The timings are
        shares: ``time/total_s`` and ``time/epoch_s`` are the stacked computation's wall time divided by its
        number of models, ``time/vectorized``.

    Raises:
        ConfigError: a method or model that cannot be vectorised (``why_not_vectorizable``: a model with
            BatchNorm, a method without a vectorised form), or any setting ``train`` rejects.
        DataError: datasets of different shapes or sizes.
    """
    if hasattr(seeds, "tolist") and not isinstance(seeds, (str, bytes)):  # a numpy array or a tensor of seeds
        seeds = seeds.tolist()
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ConfigError(f"train_many: seeds must be a list of run seeds, got {seeds!r}")
    seeds = [check_seed(s, f"train_many: seeds[{i}]") for i, s in enumerate(seeds)]
    if not seeds:
        raise ConfigError("train_many needs at least one seed")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ConfigError(f"train_many: seed(s) {', '.join(map(str, twice))} given more than once; each seed trains "
                          "one model, and the same seed trains the same model")
    data_list = [datas] * len(seeds) if isinstance(datas, Splits) else list(datas)
    if len(data_list) != len(seeds):
        raise ConfigError(f"train_many: {len(data_list)} datasets for {len(seeds)} seeds; give one, or one per seed")
    if models_at_once is not None and (isinstance(models_at_once, bool) or not isinstance(models_at_once, int)
                                       or models_at_once < 1):
        raise ConfigError(f"train_many: models_at_once must be an integer >= 1, got {models_at_once!r}")
    _check_compatible(data_list)
    check("seed" not in options, "train_many", "the run seeds are the list `seeds`, one model each; no seed=")
    if isinstance(method, TrainConfig):
        check(not options, "train_many", "a TrainConfig holds every setting: give it alone (and the seeds)")
        base = method.training()
    else:
        check(isinstance(method, str), "train_many", f"method must be a registered name or a TrainConfig, got "
                                                     f"{method!r}")
        if "device" in options:
            options["device"] = str(options["device"])
        base = TrainConfig.of(method, **options)
    method, model = base.method, base.model
    # what train() would refuse too is said as train() says it (names with suggestions), not as a vectorisation limit
    method_cls = METHODS.get(method)
    from_dict(method_cls.HParams, base.hparams, f"method {method!r}")
    MODELS.get(model)
    reason = why_not_vectorizable(method, model, base.model_options, base.hparams, data_list[0].input_shape)
    if reason is not None:
        raise ConfigError(f"train_many: {reason}; train these runs one by one with train()")
    cfgs = [dataclasses.replace(base, seed=seed) for seed in seeds]
    for data in _distinct(data_list)[0]:
        if method_cls.uses_masks and not bool((data.train.has_mask | data.train.has_wrong_mask).any()):
            raise ConfigError(f"method {method!r} needs explanation masks (right- or wrong-reason), but no training "
                              "sample has one")
    dev = resolve_device(cfgs[0].device)
    if models_at_once is None:
        models_at_once = 1 if dev.type == "cpu" and _convolutional(cfgs[0], data_list[0]) else len(seeds)
    results: list[TrainResult] = []
    for start in range(0, len(seeds), models_at_once):
        group = slice(start, start + models_at_once)
        results += _train_together(data_list[group], cfgs[group], dev, quiet)
    return results


def _train_together(data_list: list[Splits], cfgs: list[TrainConfig], dev: torch.device,
                    quiet: bool) -> list[TrainResult]:
    """``train_many``'s work for one group of models, trained as one stacked computation."""
    cfg0 = cfgs[0]
    method_cls = METHODS.get(cfg0.method)
    hp = from_dict(method_cls.HParams, cfg0.hparams, f"method {cfg0.method!r}")
    distinct, which = _distinct(data_list)
    batches_per_epoch = len(batch_bounds(len(data_list[0].train), cfg0.batch_size))
    algos: list[Method] = []
    model_configs: list[dict[str, Any]] = []
    for cfg, data in zip(cfgs, data_list):
        torch.manual_seed(cfg.seed)  # as train(): the same initialisation per seed
        net, model_config = build_model(cfg.model, cfg, data)
        algos.append(method_cls(check_model(net).to(dev, memory_format=torch.channels_last), hp, batches_per_epoch))
        model_configs.append(model_config)
    problem = stacking_problem(algos[0].model)
    if problem is not None:
        raise ConfigError(f"train_many: model {cfg0.model!r} cannot be vectorised: {problem}")
    n = len(cfgs)
    stepper = STACKED_METHODS.get(cfg0.method)(stack_models([a.model for a in algos], dev), hp, batches_per_epoch, n)
    minority = [minority_class(d.drawn_class_counts()) for d in data_list]

    fit = _Fit(stepper, distinct, which, [cfg.seed for cfg in cfgs], dev, cfg0, minority)
    histories, best_epochs, best, train_s, fit_s = fit.run(quiet)
    chosen, last = fit.chosen, fit.last
    dev_splits = [{name: ds.to(dev, channels_last=True) for name, ds in d.eval_splits().items()} for d in distinct]
    results = []
    for i, (algo, cfg, data) in enumerate(zip(algos, cfgs, data_list)):
        splits = dev_splits[which[i]]
        shortcut = data.info.get("shortcut_splits")
        algo.model.load_state_dict(best[i])
        metrics, predictions = final_metrics(algo, splits, minority[i], shortcut)
        protocols = protocol_metrics(algo, splits, minority[i], shortcut, chosen[i], best[i], histories[i], last[i],
                                     (best_epochs[i], metrics))
        metrics.update({
            "selected_epoch": best_epochs[i],
            "time/total_s": fit_s / n,  # training and per-epoch evaluation of all the models, per model
            "time/epoch_s": train_s / cfg.epochs / n,  # training steps only, per model
            "time/vectorized": n,  # models trained together
        })
        config = result_config(data, cfg, hp, model_configs[i], dev)  # train()'s own: results are interchangeable
        examples = attribution_examples(algo.model, splits["test"], cfg.attributions) if cfg.attributions else {}
        results.append(TrainResult(config, metrics, histories[i], predictions, examples, algo.model.cpu(), protocols))
    return results


class _Fit:
    """The epoch loop of ``train._fit`` for S models: shuffle per model, step, evaluate, select per model."""

    def __init__(self, stepper: StackedMethod, distinct: list[Splits], which: list[int], seeds: list[int],
                 dev: torch.device, cfg: TrainConfig, minority: list[int | None]) -> None:
        self.stepper, self.seeds, self.cfg, self.minority = stepper, seeds, cfg, minority
        self.n = len(seeds)
        self.net = stepper.net
        self.which = which
        trains = [d.train for d in distinct]
        self.n_train = len(trains[0])
        # per-sample training tensors of every distinct training set, concatenated, on the device; model i's rows
        # start at offset[i]. The reasons are computed once here: right_reasons / wrong_reasons are per-sample.
        fields: dict[str, list[torch.Tensor]] = {}
        for t in trains:
            b = _as_batch(t)
            (right, has_right), (wrong, has_wrong) = right_reasons(b), wrong_reasons(b)
            for name, value in (("x", t.x), ("y", t.y), ("right", right), ("has_right", has_right),
                                ("wrong", wrong), ("has_wrong", has_wrong)):
                fields.setdefault(name, []).append(value)
        self.train = {name: torch.cat(values).to(dev) for name, values in fields.items()}
        self.has_right = torch.cat(fields["has_right"])  # on the CPU: which models' batches have a mask
        self.offset = torch.tensor(which)[:, None] * self.n_train  # (S, 1)
        self.cpu_splits = [curve_splits(d.eval_splits(), cfg.curves) for d in distinct]
        kinds = {tuple(c) for c in self.cpu_splits}
        if len(kinds) > 1:  # e.g. one seed's validation split has wrong-reason masks (val_intervened), another's not
            raise ConfigError(f"train_many: the datasets are evaluated on different splits after each epoch "
                              f"({' / '.join(', '.join(k) for k in sorted(kinds))}), so their selection protocols "
                              "differ; train them in separate calls")
        self.curve_x = {name: self._eval_inputs([c[name] for c in self.cpu_splits], dev) for name in self.cpu_splits[0]}
        self.chosen: list[dict[str, dict[str, Any]]] = []
        self.last: list[dict[str, torch.Tensor]] = []

    def run(self, quiet: bool) -> tuple[list[list[dict[str, Any]]], list[int], list[dict[str, torch.Tensor]], float,
                                        float]:
        """Train every epoch; returns (history per model, selected epoch per model, state dict of each model at its
        selected epoch, training seconds, seconds in all), the seconds for all S models together."""
        cfg = self.cfg
        orders = [torch.Generator().manual_seed(seed) for seed in self.seeds]  # data order: each run seed
        histories: list[list[dict[str, Any]]] = [[] for _ in range(self.n)]
        for i, scores in enumerate(self._evaluate()):
            record_scores(histories[i], 0, scores)
        params = dict(self.net.named_parameters())
        best = {name: p.detach().clone() for name, p in params.items()}
        best_score, best_epoch = [-1.0] * self.n, [0] * self.n
        trackers = [Tracker(score_metric(cfg.select), "val_intervened" in self.curve_x, "val_oracle" in self.curve_x,
                            keep_best=cfg.select == "last") for _ in range(self.n)]
        train_seconds = 0.0
        start = time.perf_counter()
        bar = progress_bar(cfg.epochs, quiet, f"{cfg.method} seeds {self.seeds[0]}..{self.seeds[-1]} ({self.n} at once)")
        for epoch in range(1, cfg.epochs + 1):
            tic = time.perf_counter()
            logs = self._run_epoch(orders)
            train_seconds += time.perf_counter() - tic
            for i in range(self.n):
                check_finite(logs[i], [p[i] for p in params.values()], epoch, cfg, self.seeds[i])
            scores = self._evaluate()
            improved = []
            for i in range(self.n):
                record_scores(histories[i], epoch, scores[i])
                record_scores(histories[i], epoch, {"train": logs[i]})
                score = scores[i]["val"][score_metric(cfg.select)]
                if cfg.select == "last" or score > best_score[i]:
                    best_score[i], best_epoch[i] = score, epoch
                    improved.append(i)
                trackers[i].observe(epoch, scores[i], lambda i=i: model_state(params, i))
            if improved:
                rows = torch.tensor(improved, device=next(iter(best.values())).device)
                for name, p in params.items():
                    best[name].index_copy_(0, rows, p.detach().index_select(0, rows))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        self.chosen = [t.chosen() for t in trackers]
        self.last = [model_state(params, i) for i in range(self.n)]
        return histories, best_epoch, [model_state(best, i) for i in range(self.n)], train_seconds, seconds

    def _run_epoch(self, orders: list[torch.Generator]) -> list[dict[str, float]]:
        """One pass over each model's shuffled training data (``train._run_epoch``); each model's mean logs."""
        perm = torch.stack([torch.randperm(self.n_train, generator=g) for g in orders]) + self.offset  # (S, N)
        perm_dev = perm.to(self.train["x"].device)
        updates: list[UpdateLogs] = []
        for start, stop in batch_bounds(self.n_train, self.cfg.batch_size):
            idx = perm_dev[:, start:stop].flatten()  # (S * B,): model-major
            has_right = self.has_right[perm[:, start:stop]]  # (S, B) on the CPU
            batch = StackedBatch(self.train, idx, self.n, has_right.any(1), bool(has_right.all()))
            updates.append(self.stepper.update(batch))
        updates.append(self.stepper.end_epoch())
        return _epoch_means(updates, self.n)

    def _evaluate(self) -> list[dict[str, dict[str, float]]]:
        """Scores of every model on the curve splits (``train._evaluate``), all models in each forward pass."""
        out: list[dict[str, dict[str, float]]] = [{} for _ in range(self.n)]
        for name, x in self.curve_x.items():
            pred = self._logits(x).argmax(-1).cpu()  # (S, N)
            for i in range(self.n):
                out[i][name] = split_scores(pred[i], self.cpu_splits[self.which[i]][name], self.minority[i])
        return out

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every model's logits on a split's images, (N, C, H, W) shared or (S, N, C, H, W) per model -> (S, N, K)."""
        shared = x.dim() == 4
        size = x.shape[0] if shared else x.shape[1]
        chunk = max(1, min(256, EVAL_SAMPLES // self.n))  # per model; train() predicts 256 at a time
        out = []
        with eval_mode(self.net):
            for start in range(0, size, chunk):
                part = repeat_for_models(x[start:start + chunk], self.n) if shared else x[:, start:start + chunk]
                flat = part.flatten(0, 1) if not shared else part
                out.append(self.net(flat.contiguous(memory_format=torch.channels_last)).unflatten(0, (self.n, -1)))
        return torch.cat(out, 1)

    def _eval_inputs(self, splits: list[ExplanationDataset], dev: torch.device) -> torch.Tensor:
        """A split's images: (N, C, H, W) when every model evaluates the same, else (S, N, C, H, W)."""
        first = splits[0].x
        if all(s.x is first or torch.equal(s.x, first) for s in splits[1:]):
            return first.to(dev)
        return torch.stack([splits[w].x for w in self.which]).to(dev)


def _epoch_means(updates: list[UpdateLogs], n: int) -> list[dict[str, float]]:
    """Each model's epoch means of its logs, with ``train._run_epoch``'s arithmetic: every update's logs (a
    block's entry being the mean over the steps that model took, as ``TwoStage._flush``) summed in order and
    divided by their count. All values reach the CPU in one transfer."""
    tensors = [t for upd in updates for part in upd
               for t in (part.values() if isinstance(part, dict) else
                         [v for logs, _ in part.steps for v in logs.values()])]
    values = iter(torch.stack([t.detach().double() for t in tensors]).cpu().tolist() if tensors else [])

    def take(logs: dict[str, torch.Tensor]) -> dict[str, list[float]]:
        return {key: next(values) for key in logs}

    resolved = [[take(part) if isinstance(part, dict) else [(take(logs), active.tolist()) for logs, active in part.steps]
                 for part in upd] for upd in updates]  # in logging order, as the tensors were listed
    means = []
    for i in range(n):
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for parts in resolved:
            logs: dict[str, float] = {}  # what this model's update() returned
            for part in parts:
                if isinstance(part, dict):
                    logs.update({key: v[i] for key, v in part.items()})
                    continue
                entries = [{key: v[i] for key, v in step.items()} for step, active in part if active[i]]
                if entries:
                    logs.update({key: sum(e[key] for e in entries) / len(entries) for key in entries[0]})
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        means.append({key: sums[key] / counts[key] for key in sums})
    return means


def _convolutional(cfg: TrainConfig, data: Splits) -> bool:
    """Whether the run's model has convolutions (built aside: the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        net = build_model(cfg.model, cfg, data)[0]
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def _as_batch(ds: ExplanationDataset) -> Batch:
    return Batch(ds.x, ds.y, ds.mask, ds.has_mask, ds.wrong_mask, ds.has_wrong_mask)


def _distinct(datas: list[Splits]) -> tuple[list[Splits], list[int]]:
    """The distinct datasets (by identity) and, per model, the index of its own."""
    distinct: list[Splits] = []
    which = []
    for d in datas:
        pos = next((j for j, e in enumerate(distinct) if e is d), None)
        if pos is None:
            distinct.append(d)
            pos = len(distinct) - 1
        which.append(pos)
    return distinct, which


def _check_compatible(datas: list[Splits]) -> None:
    """Every dataset must have the first one's image shape, classes, splits, split sizes and mask shapes."""
    def layout(d: Splits) -> dict[str, Any]:
        return {"input shape": d.input_shape, "classes": d.n_classes,
                "splits": {name: (len(ds), tuple(ds.mask.shape[1:]), tuple(ds.wrong_mask.shape[1:]))
                           for name, ds in d.eval_splits().items()}}

    first = layout(datas[0])
    for i, d in enumerate(datas[1:], 1):
        mine = layout(d)
        for key in first:
            if mine[key] != first[key]:
                raise DataError(f"train_many: dataset {i} differs from dataset 0 in its {key} "
                                f"({mine[key]} vs {first[key]}); vectorised runs need data of one layout")

