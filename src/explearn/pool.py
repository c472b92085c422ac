"""Train a sweep's groups in this process or in local worker processes (the local counterpart of
``explearn.cluster``); every worker process exits as soon as the process that launched the sweep dies, or when
that process stops the sweep (Ctrl-C, an error). Ctrl-C is the launching process's to handle: the workers ignore
it, so that a terminal's SIGINT to the whole process group prints no traceback per worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Iterator

from explearn.execution import BACKENDS, RunResult, execute_group, failed_runs

if TYPE_CHECKING:
    from explearn.claims import SweepQueue
    from explearn.run_config import RunSpec


#: Times a group may be lost to a broken local worker pool (a worker process died) before its runs count as failed.
POOL_RESTARTS = 3


@BACKENDS.register("local")
def local_results(queue: "SweepQueue", workers: int, address: str | None = None) -> Iterator[RunResult]:
    """Results of ``execute_group`` over the queue's groups, in this process (``workers`` 0, or one group to
    train) or in a pool of ``workers`` processes; ``address`` is unused."""
    from explearn.claims import dispatch

    if workers == 0 or len(queue.todo) <= 1:
        yield from dispatch(queue, InProcess())
        return
    with contextlib.closing(WorkerPool(workers, len(queue.todo))) as pool:
        yield from dispatch(queue, pool)


class InProcess:
    """Groups trained one at a time in this process, when ``results`` is asked for."""

    slots = 1

    def __init__(self) -> None:
        self.groups: deque[list[RunSpec]] = deque()

    def capacity(self) -> int:
        return 1

    def busy(self) -> int:
        return len(self.groups)

    def submit(self, group: list[RunSpec]) -> None:
        self.groups.append(group)

    def results(self, timeout: float) -> list[RunResult]:
        return execute_group(self.groups.popleft())


class WorkerPool:
    """Groups trained by a pool of ``workers`` spawned processes, each of which exits when this process dies.

    A worker process that dies (killed, out of memory, a crash in native code) breaks the pool: it is replaced by a
    fresh one and the groups it had not returned go again, each at most ``POOL_RESTARTS`` times, after which their
    runs count as failed. Closed with groups still in flight (the launch was interrupted or failed, and will store
    none of their results), the pool ends its worker processes at once rather than waiting for their runs.
    """

    def __init__(self, workers: int, runs: int) -> None:
        self.slots = workers
        self.size = min(workers, runs)
        self.pool: cf.ProcessPoolExecutor | None = None  # started at the first submit: a launch may train nothing
        self.futures: dict[cf.Future, list[RunSpec]] = {}
        self.losses: dict[tuple[str, ...], int] = {}

    def capacity(self) -> int:
        return self.size

    def busy(self) -> int:
        return len(self.futures)

    def submit(self, group: list[RunSpec]) -> None:
        if self.pool is None:
            ctx = multiprocessing.get_context("spawn")  # no fork: torch's thread pools do not survive it
            self.pool = cf.ProcessPoolExecutor(max_workers=self.size, mp_context=ctx, initializer=exit_with_parent,
                                               initargs=(os.getpid(),))
        with _sigint_ignored():  # worker processes start in submit; they inherit the ignored SIGINT through exec
            self.futures[self.pool.submit(execute_group, group)] = group

    def results(self, timeout: float) -> list[RunResult]:
        done, _ = cf.wait(self.futures, timeout, return_when=cf.FIRST_COMPLETED)
        out: list[RunResult] = []
        lost = []
        for future in done:
            group = self.futures.pop(future)
            try:
                out += future.result()
            except cf.process.BrokenProcessPool:
                lost.append(group)
            except Exception:  # noqa: BLE001 - the task itself failed (e.g. a run that cannot be pickled)
                out += failed_runs(group, traceback.format_exc())
        if lost:
            out += self._replace(lost)
        return out

    def _replace(self, lost: list[list[RunSpec]]) -> list[RunResult]:
        """Stop the broken pool, keep what its other groups returned, and submit the lost groups to a fresh pool
        (or, lost too often, report their runs as failed)."""
        self._shutdown()
        out: list[RunResult] = []
        for future, group in self.futures.items():  # after shutdown, every future has its outcome
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or isinstance(error, cf.process.BrokenProcessPool):
                lost.append(group)
            elif error is not None:
                out += failed_runs(group, "".join(traceback.format_exception(error)))
            else:
                out += future.result()
        self.futures.clear()
        text = (f"a local worker process died during each of {POOL_RESTARTS + 1} attempts while these runs were "
                "pending (killed, out of memory, or a crash in native code); they are retried by the next launch\n")
        for group in lost:
            key = tuple(run.run_id for run in group)
            self.losses[key] = self.losses.get(key, 0) + 1
            if self.losses[key] > POOL_RESTARTS:
                out += failed_runs(group, text)
            else:
                self.submit(group)
        return out

    def close(self) -> None:
        """Shut the pool down; worker processes still training groups (whose results will not be stored) are ended
        first, so that an interrupted launch does not wait for their runs."""
        if self.pool is not None and self.futures:
            # the executor has no public way to end busy workers before Python 3.14 (terminate_workers)
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                with contextlib.suppress(OSError, ValueError):  # already gone
                    process.terminate()
            self.futures.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored in this process while inside (only the main thread may set handlers; elsewhere: unchanged),
    so that processes started meanwhile begin with it ignored, before they run any Python."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def exit_with_parent(parent_pid: int) -> None:
    """Initializer of a local worker process: a daemon thread ends the process as soon as its parent dies (a
    SIGKILLed sweep would otherwise leave its workers training on, re-parented, each holding its memory). SIGINT
    is ignored: Ctrl-C is for the parent, which ends its workers when it stops.

    The parent's sentinel (a pipe the parent holds open, on Windows its process handle) becomes ready when the
    parent dies, however it dies; the parent's pid is checked too, in case a process the parent forked keeps the
    pipe open. Unlike Linux's PR_SET_PDEATHSIG, this does not fire when merely the thread that spawned us exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    sentinels = [parent.sentinel] if parent is not None else []

    def watch() -> None:
        while os.getppid() == parent_pid:
            if sentinels:
                if multiprocessing.connection.wait(sentinels, timeout=1.0):
                    break
            else:
                time.sleep(1.0)
        os._exit(1)  # at once, from this thread: no cleanup that could block on the dead parent

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
