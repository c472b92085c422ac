"""Run many training runs, in parallel worker processes or on a Dask cluster, into a store that survives interruption.

Each run is a ``RunSpec``: its full configuration, with every default filled in, hashed into a ``run_id``. The
store keeps one folder per run id; a run counts as finished only once its ``done`` marker exists, and its result
is written to a temporary file and renamed before the marker is written, so a sweep killed at any moment leaves
no half-written record and loses no finished run. A relaunched sweep skips every finished run: one whose ``done``
marker exists and whose ``result.json`` reads as a record (a record damaged since is trained again). A run that raises
is recorded with its traceback (``error.txt``) and retried by the next launch; the others go on.

Several launches may share one store at the same time (``explearn.claims``): each claims a run (``RunStore.claim``,
an OS file lock that dies with its holder) right before training it, group by group, so they split the work; a
launch left with nothing of its own waits for the runs another one holds, and takes over those of a launch that stops.

Both backends, local worker processes (``explearn.pool``) and a Dask scheduler (``explearn.cluster``), run the same
task, ``execute_group``: it trains a few runs and returns each one's record as JSON text, or its traceback. Only
the process that launched the sweep writes the store, as results arrive, so workers need no shared filesystem. A
worker that dies takes only its unfinished runs with it: they are trained again elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from explearn.config import config_hash, from_dict, json_ready, to_dict
from explearn.errors import ConfigError, DataError
from explearn.files import atomic_write

if TYPE_CHECKING:
    from filelock import FileLock

    from explearn.claims import SweepQueue


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


#: errno values by which a filesystem says it has no file locks (NFS without a lock daemon, some SMB and FUSE mounts)
_NO_LOCKS = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP})


class LocksUnsupported(OSError):
    """The store's filesystem has no file locks, so runs cannot be claimed."""


#: the fields of one ``history`` entry of a record (``TrainResult.history``: one per epoch, split and metric)
HISTORY_FIELDS = frozenset({"epoch", "split", "metric", "value"})


def record_problem(record: Any) -> str | None:
    """What makes a stored record unusable, or None: the fields every record has (``record_json``: ``run``, then
    ``TrainResult.to_json()``) with the types their readers (choosing hyperparameters, the reports) rely on:
    ``run`` and ``metrics`` objects, ``config`` with ``hparams`` and ``data.data_seed``, a non-empty ``history``
    of {epoch, split, metric, value} entries (a run trains at least one epoch), and a ``predictions`` object."""
    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__}, not a run record"
    missing = [key for key in ("run", "config", "metrics", "history", "predictions") if key not in record]
    if missing:
        return f"not a run record: no {', '.join(missing)}"
    config = record["config"]
    if not isinstance(config, dict) or not isinstance(config.get("hparams"), dict) \
            or not isinstance(config.get("data"), dict) or "data_seed" not in config["data"]:
        return "no 'config' with 'hparams' and 'data.data_seed'"
    for key in ("run", "metrics", "predictions"):
        if not isinstance(record[key], dict):
            return f"'{key}' is not an object"
    history = record["history"]
    if not isinstance(history, list) or not history or not all(
            isinstance(entry, dict) and HISTORY_FIELDS <= entry.keys() for entry in history):
        return "no 'history' list of {epoch, split, metric, value} entries"
    return None


class RunStore:
    """``root/<run_id>/`` holds ``config.json``, then ``result.json`` and the ``done`` marker once finished, or
    ``error.txt`` if the last attempt failed, and ``claim``, the lock file of the launch training it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_done(self, run_id: str) -> bool:
        return (self.path(run_id) / "done").exists()

    def load(self, run_id: str) -> dict[str, Any]:
        """The stored record of a finished run: ``run`` (its RunSpec config), ``config``, ``metrics``, ``history``,
        ``predictions``, ``examples``.

        Raises:
            DataError: ``result.json`` is missing, unreadable or not a record (damaged since it was written),
                naming the file and how to train the run again.
        """
        record, reason = self.read(run_id)
        if record is None:
            raise DataError(f"{self.path(run_id) / 'result.json'}: the stored result of a finished run is damaged "
                            f"({reason}); run the sweep again (e.g. the same `explearn reproduce` command): it trains "
                            "the run again")
        return record

    def damaged(self, run_id: str) -> str | None:
        """Why a run's ``result.json`` is not a record (missing, unreadable, not JSON, ``record_problem``), or None
        when it is one. Reads and parses the whole file."""
        return self.read(run_id)[1]

    def read(self, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the record, None), or (None, why ``result.json`` is not a record): the one rule for a usable record
        (``record_problem``), for the sweep deciding what to train again and for the reports."""
        path = self.path(run_id) / "result.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, "the file is missing"
        except OSError as err:
            return None, f"cannot be read: {err.strerror or err}"
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            return None, f"not JSON: {err}"
        problem = record_problem(record)
        return (None, problem) if problem else (record, None)

    def unmark_damaged(self, run_id: str, log: Callable[[str], None]) -> bool:
        """Whether a run marked ``done`` has a damaged record; if so, its ``done`` marker is removed (so that it is
        trained again) and ``log`` says so."""
        reason = self.damaged(run_id)
        if reason is None:
            return False
        (self.path(run_id) / "done").unlink(missing_ok=True)
        log(f"{self.path(run_id) / 'result.json'}: damaged ({reason}); the run is trained again")
        return True

    def finished(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*/done")) if self.root.is_dir() else []

    def save(self, run: RunSpec, result: Mapping[str, Any]) -> None:
        self.save_record(run, record_json(run, result))

    def save_record(self, run: RunSpec, record: str) -> None:
        """Store a finished run's record, the JSON text made by ``record_json`` (as ``execute_group`` returns it)."""
        folder = self.path(run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "result.json", record)
        (folder / "error.txt").unlink(missing_ok=True)
        _atomic_write(folder / "done", "")

    def save_error(self, run: RunSpec, text: str) -> None:
        folder = self.path(run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "config.json", json.dumps(run.config(), indent=1))
        _atomic_write(folder / "error.txt", text)

    def claim(self, run_id: str) -> "FileLock | None":
        """Claim a run for this process, so that another launch on the same store does not train it too.

        The claim is an exclusive OS lock (``flock``; on Windows ``LockFileEx``), taken without waiting, on
        ``root/<run_id>/claim``, a file that names its holder (``claim_holder``). The OS drops the lock when the
        process ends, however it ends (a SIGKILL included), so no claim outlives its launch.

        Returns:
            The held ``filelock.FileLock`` (call ``.release()`` once the run's result or error is stored), or None
            when another live process holds the claim.

        Raises:
            LocksUnsupported: the filesystem has no file locks (some NFS, SMB and FUSE mounts).
        """
        from filelock import FileLock, Timeout

        folder = self.path(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        # no fallback to a lock file whose mere existence locks: it would outlive a killed holder
        lock = FileLock(folder / "claim", thread_local=False, fallback_to_soft=False, preserve_lock_file=True,
                        on_acquired=_name_holder)
        try:
            lock.acquire(blocking=False)
        except Timeout:  # a TimeoutError, hence an OSError: caught first
            return None
        except OSError as err:
            if err.errno in _NO_LOCKS:
                raise LocksUnsupported(err.errno, f"{self.root} has no file locks ({err.strerror})") from err
            raise
        return lock

    def claim_holder(self, run_id: str) -> str:
        """Who holds (or last held) the claim on a run, as ``pid 4242 on host-1 since 2025-01-31 12:00:00``."""
        try:
            holder = json.loads((self.path(run_id) / "claim").read_text())
            return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
        except (OSError, ValueError, KeyError, TypeError):  # not written yet, or unreadable while locked (Windows)
            return "another process"


def _name_holder(fd: int) -> None:
    """Write who holds a claim into its lock file (``on_acquired`` hook: the lock is held, ``fd`` is borrowed)."""
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())


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


#: What a task returns per run: (run id, the record as JSON text or None, the traceback or None).
RunResult = tuple[str, str | None, str | None]


def failed_runs(group: list[RunSpec], text: str) -> list[RunResult]:
    """The results of a group whose task failed as a whole: every run failed with ``text``."""
    return [(run.run_id, None, text) for run in group]


def run_sweep(runs: Iterable[RunSpec], store: RunStore, workers: int | None = None,
              progress: Callable[[int, int], None] | None = None, cluster: str | None = None,
              log: Callable[[str], None] | None = None) -> SweepOutcome:
    """Train every run that is not finished in ``store``, sharing the work with other launches on the same store.

    Runs are claimed (``RunStore.claim``) group by group, right before they are submitted, with at most one group
    per worker in flight, so that launches on one store at the same time each train a share. A run another live
    launch has claimed is not trained here: once this launch has nothing of its own left, it waits for such runs
    (saying once why, through ``log``) and takes over those whose launch stopped. It returns when every run is
    finished or failed, by whichever launch.

    Args:
        runs: the runs (duplicates, by run id, are trained once).
        store: where results go; only this process writes it (and only the runs it claimed), as results arrive.
        workers: local worker processes; default one per CPU core; 0 trains in this process (no parallelism).
            Every run uses one torch thread, so results do not depend on the number of workers. Unused with
            ``cluster``. A worker process exits when this process dies.
        progress: called as ``progress(settled_so_far, total_to_train)`` each time a run is stored, here or by
            another launch.
        cluster: address of a Dask scheduler (``tcp://host:port``) to train on instead of local processes
            (see ``explearn.cluster``); None or "" for local processes.
        log: where to say why the sweep waits, that runs cannot be claimed, or that a finished run's record is
            damaged (it is trained again); default: standard error.

    Returns:
        A ``SweepOutcome``. Failed runs do not stop the sweep; their tracebacks are in the outcome and the store.

    Raises:
        ClusterError: the scheduler cannot be reached, ``distributed`` is not installed, or the workers cannot
            import explearn (runs finished before are stored).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers must be an integer >= 0 (0: train in this process), got {workers!r}")
    unique = {r.run_id: r for r in runs}
    outcome = SweepOutcome()
    log = log or _to_stderr
    todo = []
    for run_id, run in unique.items():
        # a finished run's record is read once per launch: a damaged one would stop whoever reads it later
        if store.is_done(run_id) and not store.unmark_damaged(run_id, log):
            outcome.skipped.append(run_id)
        else:
            todo.append(run)
    if not todo:  # nothing to train: no workers started, no scheduler contacted
        return outcome
    from explearn.claims import SweepQueue

    queue = SweepQueue(todo, store, outcome, progress, log)
    if cluster:
        from explearn.cluster import cluster_results

        results = cluster_results(queue, cluster)
    else:
        results = _local_results(queue, (os.cpu_count() or 1) if workers is None else workers)
    try:
        with contextlib.closing(results):  # an error here shuts the workers or the client down at once
            for run_id, record, error in results:
                queue.store_result(run_id, record, error)
    finally:
        queue.release_all()  # a launch that stops on an error leaves its runs to the others at once
    return outcome


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
                out.append((run.run_id, record_json(run, run.execute().to_json()), None))
            except Exception:  # noqa: BLE001 - a failing run is reported, the sweep goes on
                out.append((run.run_id, None, traceback.format_exc()))
        return out


def _execute_together(group: list[RunSpec]) -> list[RunResult]:
    from explearn.vectorized import train_many

    first = group[0]
    datas = [_cached_data(r.dataset, r.data_seed, json.dumps(dict(r.data_options), sort_keys=True)) for r in group]
    results = train_many(datas, [r.seed for r in group], first.method, hparams=first.hparams, model=first.model,
                         model_options=first.model_options, epochs=first.epochs, batch_size=first.batch_size,
                         select=first.select, curves=first.curves, attributions=first.attributions)
    return [(run.run_id, record_json(run, result.to_json()), None) for run, result in zip(group, results)]


def record_json(run: RunSpec, result: Mapping[str, Any]) -> str:
    """The stored record of a finished run: its configuration and its ``TrainResult.to_json()``, as JSON text
    (numpy scalars and 0-d tensors as numbers; anything else not JSON-ready is a TypeError naming its key)."""
    return json.dumps({key: json_ready(value, key) for key, value in {"run": run.config(), **result}.items()})


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


def _local_results(queue: "SweepQueue", workers: int) -> Iterator[RunResult]:
    """Results of ``execute_group`` over the queue's groups, in this process or a pool of ``workers`` processes
    (``explearn.pool``)."""
    from explearn.claims import dispatch
    from explearn.pool import InProcess, WorkerPool

    if workers == 0 or len(queue.todo) <= 1:
        yield from dispatch(queue, InProcess())
        return
    with contextlib.closing(WorkerPool(workers, len(queue.todo))) as pool:
        yield from dispatch(queue, pool)


def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, text)  # a temporary name per process: where files have no locks, two launches may write
