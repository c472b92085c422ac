"""Train a sweep's groups in this process or in local worker processes (the local counterpart of
``explearn.cluster``); every worker process exits as soon as the process that launched the sweep dies."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
import traceback
from collections import deque

from explearn.sweep import RunResult, RunSpec, execute_group, failed_runs

#: Times a group may be lost to a broken local worker pool (a worker process died) before its runs count as failed.
POOL_RESTARTS = 3


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
    runs count as failed.
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
        self.close()
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
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def exit_with_parent(parent_pid: int) -> None:
    """Initializer of a local worker process: a daemon thread ends the process as soon as its parent dies (a
    SIGKILLed sweep would otherwise leave its workers training on, re-parented, each holding its memory).

    The parent's sentinel (a pipe the parent holds open, on Windows its process handle) becomes ready when the
    parent dies, however it dies; the parent's pid is checked too, in case a process the parent forked keeps the
    pipe open. Unlike Linux's PR_SET_PDEATHSIG, this does not fire when merely the thread that spawned us exits.
    """
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
