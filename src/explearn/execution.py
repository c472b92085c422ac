"""What a sweep's backends run, and nothing of the sweep itself: a task trains a group of runs
(``execute_group``) and returns each one's record as JSON text or its traceback; ``plan_groups`` cuts the runs to
train into such groups; ``SweepOutcome`` says what a sweep did. The backends (``explearn.pool``: this process or
local worker processes; ``explearn.cluster``: a Dask scheduler) and the claims of launches sharing a store
(``explearn.claims``) import this module, and ``explearn.sweep`` imports them: no import cycle.

A backend registers in ``BACKENDS`` a function giving the results of a queue's groups; it trains them with
objects that follow ``explearn.claims.Backend`` (``claims.dispatch`` drives them): ``InProcess`` and
``WorkerPool`` (``explearn.pool``, "local") and ``DaskTasks`` (``explearn.cluster``, "dask").
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from explearn.registry import Registry
from explearn.store import record_json

if TYPE_CHECKING:
    from explearn.run_config import RunSpec


#: name -> results(queue, workers, address): the results of ``execute_group`` over a ``claims.SweepQueue``'s
#: groups, as they finish. ``explearn.pool`` registers "local" (this process or worker processes), and
#: ``explearn.cluster`` "dask" (a Dask scheduler at ``address``); ``run_sweep`` picks one by name.
BACKENDS: Registry = Registry("sweep backend")


@dataclass
class SweepOutcome:
    """What a sweep did: run ids trained now, skipped as already finished, and failed (id -> traceback).

    ``by_other`` holds the runs of ``skipped`` that another launch on the same store finished while this one ran.
    """

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    by_other: list[str] = field(default_factory=list)

    def merge(self, other: "SweepOutcome") -> "SweepOutcome":
        """The outcome of this sweep followed by ``other`` (e.g. a search then an evaluation)."""
        return SweepOutcome(self.trained + other.trained, self.skipped + other.skipped,
                            {**self.failed, **other.failed}, self.by_other + other.by_other)

    def describe(self) -> str:
        """``8 runs trained, 4 reused (3 by another launch), 0 failed``; no parenthesis when no other launch
        finished any."""
        shared = f" ({len(self.by_other)} by another launch)" if self.by_other else ""
        return f"{len(self.trained)} runs trained, {len(self.skipped)} reused{shared}, {len(self.failed)} failed"


@functools.lru_cache(maxsize=4)
def cached_data(dataset: str, seed: int, options_json: str):
    """A dataset built by ``datasets.load``, kept for the next runs of this process that use the same one."""
    from explearn.datasets import load

    return load(dataset, seed=seed, **json.loads(options_json))


def execute_run(run: RunSpec, quiet: bool = True):
    """Train one run (its data are built once per process and reused). Returns a ``TrainResult``."""
    from explearn.train import train

    data = cached_data(run.dataset, run.data_seed, json.dumps(dict(run.data_options), sort_keys=True))
    return train(data, run.training(), quiet=quiet)


#: What a task returns per run: (run id, the record as JSON text or None, the traceback or None).
RunResult = tuple[str, str | None, str | None]


def failed_runs(group: list[RunSpec], text: str) -> list[RunResult]:
    """The results of a group whose task failed as a whole: every run failed with ``text``."""
    return [(run.run_id, None, text) for run in group]


def plan_groups(runs: list[RunSpec], slots: int) -> list[list[RunSpec]]:
    """The tasks of a sweep on ``slots`` parallel workers, in small groups.

    Runs that differ only in their seeds and that gain from being trained together (``vectorized_key``) form
    groups of up to ``VECTOR_GROUP``, trained as one computation; the others are grouped by dataset, so that a
    worker builds the data once for the whole group (and keeps the last few datasets). Tasks of at most
    ``GROUP_RUNS`` runs and at most a quarter of a worker's share balance the load and report progress often.
    """
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        key = vectorized_key(run)
        if key is None:
            key = json.dumps([run.dataset, run.data_seed, dict(run.data_options)], sort_keys=True)
        groups.setdefault(key, []).append(run)
    size = max(1, min(GROUP_RUNS, len(runs) // (max(1, slots) * 4)))
    out = []
    for key, group in groups.items():
        step = max(size, min(VECTOR_GROUP, -(-len(group) // max(1, slots)))) if key.startswith("vector:") else size
        out += [group[i:i + step] for i in range(0, len(group), step)]
    return out


#: most runs one task trains together as one vectorised computation (``explearn.vectorized.train_many``)
VECTOR_GROUP = 10
#: most runs of one dataset in one task: the paper's full preset trains its 685 evaluation runs (80 datasets)
#: in 113 tasks with 8 (221 with 4; building a triangle dataset costs about a second, as much as 3-4 training epochs)
GROUP_RUNS = 8


def vectorized_key(run: RunSpec) -> str | None:
    """What runs trained together share (everything but the run and data seeds), or None when ``run`` is not worth
    vectorising: its method or model has no vectorised form, or (on a CPU without CUDA) its model convolves, where
    stacking models is no faster than training them one by one (docs/performance.md, "Speed and scale")."""
    if not _worth_stacking(run.method, run.model, json.dumps(dict(run.model_options), sort_keys=True),
                           json.dumps(dict(run.hparams), sort_keys=True)):
        return None
    config = run.config()
    config.pop("seed")
    config.pop("data_seed")
    return "vector:" + json.dumps(config, sort_keys=True)


@functools.lru_cache(maxsize=256)
def _worth_stacking(method: str, model: str, options_json: str, hparams_json: str) -> bool:
    """Whether runs of this method and model gain from ``train_many`` here; decided once per configuration (it
    builds the model), not once per run."""
    import torch
    from torch import nn

    from explearn.config import from_dict
    from explearn.models import MODELS
    from explearn.vectorized import vectorizable

    options = json.loads(options_json)
    if not vectorizable(method, model, options, json.loads(hparams_json)):
        return False
    if torch.cuda.is_available():
        return True
    builder, options_cls = MODELS.get(model)
    net = builder((1, 28, 28), 2, from_dict(options_cls, options, f"model {model!r}"))
    return not any(isinstance(m, nn.Conv2d) for m in net.modules())  # stacked convolutions do not pay on a CPU


def execute_group(group: list[RunSpec]) -> list[RunResult]:
    """Train each run of a group; the task of every backend. Writes nothing: the caller stores the results.

    A group of runs that differ only in their seeds (``plan_groups``) trains as one vectorised computation
    (``explearn.vectorized.train_many``, whose models equal those of separate runs); if that raises, each run is
    trained alone, so that a failing run is reported by itself.

    Returns:
        Per run, in order: (run id, its record as JSON text, None), or (run id, None, traceback) if it raised.
        A failing run is caught here, so the task itself succeeds and no scheduler retries it.

    Every run uses one torch thread: float sums are split differently with another thread count, so a fixed count
    makes a stored run bit-identical to a rerun whatever the number of workers or the backend.
    """
    with _one_torch_thread():
        keys = {vectorized_key(run) for run in group}
        if len(group) > 1 and len(keys) == 1 and None not in keys:
            try:
                return _execute_together(group)
            except Exception:  # noqa: BLE001 - fall back to one run at a time, which reports each failure alone
                pass
        out: list[RunResult] = []
        for run in group:
            try:
                out.append((run.run_id, record_json(run, execute_run(run).to_json()), None))
            except Exception:  # noqa: BLE001 - a failing run is reported, the sweep goes on
                out.append((run.run_id, None, traceback.format_exc()))
        return out


def _execute_together(group: list[RunSpec]) -> list[RunResult]:
    from explearn.vectorized import train_many

    first = group[0]
    datas = [cached_data(r.dataset, r.data_seed, json.dumps(dict(r.data_options), sort_keys=True)) for r in group]
    results = train_many(datas, [r.seed for r in group], first.training())
    return [(run.run_id, record_json(run, result.to_json()), None) for run, result in zip(group, results)]


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 1


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One torch thread while inside; the count from before is restored when the last concurrent user leaves (a
    Dask worker with several threads runs several groups at once in one process)."""
    import torch

    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
        _threads_users += 1
        torch.set_num_threads(1)  # in every entering thread: OpenMP keeps the setting per thread
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)
