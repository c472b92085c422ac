"""Train a sweep's runs on a Dask distributed cluster instead of local worker processes.

The task is the local one, ``execution.execute_group``: a few runs trained with one torch thread, returned as JSON
records or tracebacks. The client streams them back into its own ``RunStore`` as they finish, so workers need
explearn (and ``EXPLEARN_DATA`` for real datasets) but no filesystem shared with the client.

Failures:
  - a run that raises is caught inside the task and comes back as its traceback: Dask sees a task that succeeded
    and never retries it; the sweep records it and goes on (the next launch retries it);
  - a worker that dies (killed, out of memory, machine lost) takes its tasks with it: the scheduler reschedules
    them on the other workers. A task that was on more than ``distributed.scheduler.allowed-failures`` (Dask's
    default: 3) workers that died is given up (``KilledWorker``): its runs are recorded as failed, the sweep
    goes on;
  - ``retries=0``: a task that fails for another reason is not retried either; its runs are recorded as failed.
Before anything is submitted, every worker must import the client's explearn version (else ``ClusterError``).

Runs are claimed in the client's store group by group, as on local workers (``explearn.claims``), with at most one
task per worker thread in flight, so that two launches on one store sharing a cluster split the runs.
"""

from __future__ import annotations

import gc
import itertools
import os
import time
import traceback
import uuid
import warnings
from typing import TYPE_CHECKING, Iterator

from explearn.errors import ClusterError
from explearn.execution import BACKENDS, RunResult, execute_group, failed_runs

if TYPE_CHECKING:
    from explearn.claims import SweepQueue
    from explearn.run_config import RunSpec


#: Seconds to wait for the scheduler, unless ``EXPLEARN_CLUSTER_TIMEOUT`` says otherwise.
CONNECT_TIMEOUT_S = 10.0
TIMEOUT_ENV = "EXPLEARN_CLUSTER_TIMEOUT"


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://host:port``).

    Args:
        address: the scheduler's address, as ``dask scheduler`` prints it.
        timeout: seconds to keep trying (default ``$EXPLEARN_CLUSTER_TIMEOUT`` or 10).

    Raises:
        ClusterError: ``distributed`` is not installed, the address is malformed, or no scheduler answered.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(f"training on a Dask cluster ({address}) needs the 'distributed' package, an "
                           "optional dependency: pip install 'explearn[cluster]' (or 'dask[distributed]')") from None
    if timeout is None:
        timeout = float(os.environ.get(TIMEOUT_ENV) or CONNECT_TIMEOUT_S)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TypeError) as err:
        reason = f"{type(err).__name__}: {err}"
    gc.collect()  # the half-built client closes now, not noisily at exit
    raise ClusterError(f"cannot reach a Dask scheduler at {address!r} within {timeout:g} s ({reason}). Start one "
                       "with `dask scheduler` and workers with `dask worker ADDRESS`, pass its address as "
                       f"tcp://HOST:PORT, or raise {TIMEOUT_ENV}")


@BACKENDS.register("dask")
def cluster_results(queue: "SweepQueue", workers: int | None, address: str) -> Iterator[RunResult]:
    """Results of ``execute_group`` over the queue's groups on the scheduler at ``address``, as they finish
    (``workers`` is unused: the scheduler's workers train).

    Raises:
        ClusterError: the scheduler cannot be reached or lost the tasks, or a worker cannot run explearn.
    """
    from explearn.claims import dispatch

    with connect(address) as client:
        check_workers(client, address)  # before any claim: a refused cluster leaves the store untouched
        yield from dispatch(queue, DaskTasks(client, address))


class DaskTasks:
    """The sweep's groups as tasks on a Dask scheduler (the backend of ``claims.dispatch``): as many in flight as the
    cluster has worker threads, counted again every few seconds as workers join and leave."""

    #: seconds between two counts of the workers' threads
    RECOUNT_S = 5.0

    def __init__(self, client, address: str) -> None:
        from distributed import as_completed  # importable: connect succeeded

        self.client, self.address = client, address
        self.token = uuid.uuid4().hex[:8]  # this sweep's tasks are its own, even if another client submits them too
        self.serial = itertools.count()
        self.groups: dict = {}  # future -> its group
        self.arrived = as_completed(loop=client.loop, with_results=True, raise_errors=False)
        self.slots = self._threads()  # 0 while no worker has joined: tasks wait for one

    def _threads(self) -> int:
        self.counted = time.monotonic()
        return sum(self.client.nthreads().values())

    def capacity(self) -> int:
        if time.monotonic() - self.counted > self.RECOUNT_S:
            self.slots = self._threads()
        return max(1, self.slots)

    def busy(self) -> int:
        return len(self.groups)

    def submit(self, group: list[RunSpec]) -> None:
        key = f"explearn_runs-{group[0].run_id}-{self.token}-{next(self.serial)}"
        future = self.client.submit(execute_group, group, key=key, retries=0)
        self.groups[future] = group
        self.arrived.add(future)

    def results(self, timeout: float) -> list[RunResult]:
        deadline = time.monotonic() + timeout
        while not self.arrived.has_ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        out: list[RunResult] = []
        for future, result in self.arrived.next_batch(block=False):
            out += self._unpack(self.groups.pop(future), result)
            future.release()
        return out

    def _unpack(self, group: list[RunSpec], result) -> list[RunResult]:
        # decided by what arrived, not by the future's state now: a worker that dies after its result was
        # gathered makes the scheduler forget that result, and the future's status changes under us
        if isinstance(result, list):  # execute_group's own result
            return result
        if _is_error(result):  # not a run's exception (caught in the task): the task itself failed
            typ, exc, tb = result
            text = "".join(traceback.format_exception(typ, exc, tb))
            if type(exc).__name__ == "KilledWorker":
                text += ("\nthe task's worker died each time Dask ran it (distributed.scheduler.allowed-failures "
                         "sets how often it tries): these runs may exhaust a worker's memory or crash it\n")
            return failed_runs(group, text)
        raise ClusterError(f"the scheduler at {self.address} cancelled the sweep's tasks ({result}); the runs "
                           "finished so far are stored, launch again to resume")


def _is_error(result: object) -> bool:
    """Whether ``as_completed(..., raise_errors=False)`` gave the (type, exception, traceback) of a failed task."""
    return isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException)


def check_workers(client, address: str) -> None:
    """Every worker of the cluster imports the same explearn version as this process.

    A worker that cannot unpickle a task drops its connection instead of failing the task, so a sweep on workers
    without explearn would wait for ever. Workers that join later are not checked.

    Raises:
        ClusterError: a worker cannot import explearn or runs another version.
    """
    from explearn.version import __version__

    # the probe is a builtin, so that it reaches a worker without explearn; on_error: collect every failure
    versions = client.run(eval, "__import__('explearn').__version__", on_error="return")
    if not versions:
        warnings.warn(f"the Dask scheduler at {address} has no workers yet: the runs wait for one", stacklevel=3)
    # any other error (a worker dying right now, a lost connection) is for the scheduler to handle
    bad = {worker: v for worker, v in versions.items()
           if isinstance(v, ImportError) or (isinstance(v, str) and v != __version__)}
    if bad:
        worker, version = next(iter(bad.items()))
        what = (f"cannot import explearn ({type(version).__name__}: {version})" if isinstance(version, BaseException)
                else f"runs explearn {version}, this process {__version__}")
        raise ClusterError(f"{len(bad)} of the {len(versions)} workers of {address} cannot take runs, e.g. {worker} "
                           f"{what}: install this explearn on every worker, in the environment that runs "
                           "`dask worker`")
