"""Run many training runs, in parallel worker processes, into a store that survives interruption.

Each run is a ``RunSpec``: its full configuration, with every default filled in, hashed into a ``run_id``. The
store keeps one folder per run id; a run counts as finished only once its ``done`` marker exists, and its result
is written to a temporary file and renamed before the marker is written, so a sweep killed at any moment leaves
no half-written record and loses no finished run. A relaunched sweep skips every finished run. A run that raises
is recorded with its traceback (``error.txt``) and retried by the next launch; the others go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import multiprocessing
import os
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from explearn.config import config_hash, from_dict, to_dict


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one training run. Build with ``RunSpec.create`` to fill in defaults, so that
    equal runs get equal ids whether or not a default was spelled out."""

    dataset: str
    data_options: Mapping[str, Any]
    data_seed: int
    method: str
    hparams: Mapping[str, Any]
    model: str
    model_options: Mapping[str, Any]
    seed: int
    epochs: int
    batch_size: int = 32
    select: str = "best_val"
    curves: str = "all"
    attributions: int = 0

    @classmethod
    def create(cls, dataset: str, data_options: Mapping[str, Any], data_seed: int, method: str,
               hparams: Mapping[str, Any], model: str, model_options: Mapping[str, Any], seed: int, epochs: int,
               **train_options: Any) -> "RunSpec":
        from explearn.datasets import normalize_options
        from explearn.methods import METHODS
        from explearn.models import MODELS

        data = normalize_options(dataset, data_options)
        hp = to_dict(from_dict(METHODS.get(method).HParams, hparams, f"method {method!r}"))
        opts = to_dict(from_dict(MODELS.get(model)[1], model_options, f"model {model!r}"))
        return cls(dataset, data, data_seed, method, hp, model, opts, seed, epochs, **train_options)

    def config(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @property
    def run_id(self) -> str:
        return config_hash(self.config(), length=16)

    def execute(self, quiet: bool = True):
        """Train this run (the data are built once per process and reused). Returns a ``TrainResult``."""
        from explearn.train import train

        data = _cached_data(self.dataset, self.data_seed, json.dumps(dict(self.data_options), sort_keys=True))
        return train(data, self.method, self.seed, hparams=self.hparams, model=self.model,
                     model_options=self.model_options, epochs=self.epochs, batch_size=self.batch_size,
                     select=self.select, curves=self.curves, attributions=self.attributions, quiet=quiet)


@functools.lru_cache(maxsize=4)
def _cached_data(dataset: str, seed: int, options_json: str):
    from explearn.datasets import load

    return load(dataset, seed=seed, **json.loads(options_json))


class RunStore:
    """``root/<run_id>/`` holds ``config.json``, then ``result.json`` and the ``done`` marker once finished, or
    ``error.txt`` if the last attempt failed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_done(self, run_id: str) -> bool:
        return (self.path(run_id) / "done").exists()

    def load(self, run_id: str) -> dict[str, Any]:
        """The stored result of a finished run (config, metrics, history, predictions, examples)."""
        return json.loads((self.path(run_id) / "result.json").read_text())

    def finished(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*/done")) if self.root.is_dir() else []

    def save(self, run: RunSpec, result: Mapping[str, Any]) -> None:
        folder = self.path(run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "result.json", json.dumps({"run": run.config(), **result}))
        (folder / "error.txt").unlink(missing_ok=True)
        _atomic_write(folder / "done", "")

    def save_error(self, run: RunSpec, text: str) -> None:
        folder = self.path(run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "config.json", json.dumps(run.config(), indent=1))
        _atomic_write(folder / "error.txt", text)


@dataclass
class SweepOutcome:
    """What a sweep did: run ids trained now, skipped as already finished, and failed (id -> traceback)."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_sweep(runs: Iterable[RunSpec], store: RunStore, workers: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> SweepOutcome:
    """Train every run that is not finished in ``store``.

    Args:
        runs: the runs (duplicates, by run id, are trained once).
        store: where results go.
        workers: worker processes; default one per CPU core; 0 trains in this process (no parallelism). Every
            run uses one torch thread, so results do not depend on the number of workers.
        progress: called as ``progress(finished_so_far, total_to_train)`` after each run.

    Returns:
        A ``SweepOutcome``. Failed runs do not stop the sweep; their tracebacks are in the outcome and the store.
    """
    unique = {r.run_id: r for r in runs}
    outcome = SweepOutcome()
    todo = []
    for run_id, run in unique.items():
        if store.is_done(run_id):
            outcome.skipped.append(run_id)
        else:
            todo.append(run)
    workers = (os.cpu_count() or 1) if workers is None else workers
    groups = _group_by_data(todo)
    count = 0
    if workers == 0 or len(todo) <= 1:
        for group in groups:
            for run_id, error in _execute_group(group, str(store.root), threads=1):
                count += 1
                _note(outcome, run_id, error, count, len(todo), progress)
        return outcome
    # small tasks (at most 4 runs, at most a quarter of a worker's share) balance the load and report progress
    # often; the runs of one dataset stay together, and a worker keeps its last datasets in memory
    size = max(1, min(4, len(todo) // (workers * 4)))
    groups = [group[i:i + size] for group in groups for i in range(0, len(group), size)]
    ctx = multiprocessing.get_context("spawn")  # no fork: torch's thread pools do not survive it
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_execute_group, group, str(store.root), 1) for group in groups]
        for future in cf.as_completed(futures):
            for run_id, error in future.result():
                count += 1
                _note(outcome, run_id, error, count, len(todo), progress)
    return outcome


def _note(outcome: SweepOutcome, run_id: str, error: str | None, count: int, total: int, progress) -> None:
    if error is None:
        outcome.trained.append(run_id)
    else:
        outcome.failed[run_id] = error
    if progress is not None:
        progress(count, total)


def _group_by_data(runs: list[RunSpec]) -> list[list[RunSpec]]:
    """Runs that share a dataset, in order, so that a worker builds the data once (it keeps the last few)."""
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        key = json.dumps([run.dataset, run.data_seed, dict(run.data_options)], sort_keys=True)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def _execute_group(group: list[RunSpec], root: str, threads: int) -> list[tuple[str, str | None]]:
    """Train each run of a group and store it at once; returns (run id, traceback or None) per run.

    Every run uses ``threads`` torch threads (sweeps use 1): float sums are split differently with another
    thread count, so a fixed count makes a stored run bit-identical to a rerun whatever the number of workers.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _execute_runs(group, RunStore(root))
    finally:
        torch.set_num_threads(previous)


def _execute_runs(group: list[RunSpec], store: RunStore) -> list[tuple[str, str | None]]:
    out = []
    for run in group:
        try:
            result = run.execute()
            store.save(run, result.to_json())
            out.append((run.run_id, None))
        except Exception:  # noqa: BLE001 - a failing run is reported, the sweep goes on
            text = traceback.format_exc()
            store.save_error(run, text)
            out.append((run.run_id, text))
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
