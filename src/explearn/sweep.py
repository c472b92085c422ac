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
import os
import sys
from typing import Callable, Iterable

from explearn.errors import ConfigError
from explearn.execution import BACKENDS, SweepOutcome
from explearn.run_config import RunSpec
from explearn.store import RunStore


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
    import explearn.cluster  # noqa: F401  # the backends register themselves (execution.BACKENDS)
    import explearn.pool  # noqa: F401,F811

    backend = BACKENDS.get("dask" if cluster else "local")
    results = backend(queue, (os.cpu_count() or 1) if workers is None else workers, cluster or None)
    try:
        with contextlib.closing(results):  # an error here shuts the workers or the client down at once
            for run_id, record, error in results:
                queue.store_result(run_id, record, error)
    finally:
        queue.release_all()  # a launch that stops on an error leaves its runs to the others at once
    return outcome


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
