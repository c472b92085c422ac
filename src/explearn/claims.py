"""Launches that share one run store at the same time: each claims runs group by group, trains its share, waits
for the runs the others hold, and takes over the runs of a launch that stops.

A claim is ``RunStore.claim``, an OS file lock that dies with its holder. ``SweepQueue`` is one launch's side of a
sweep; ``dispatch`` feeds its claimed groups to a backend (``explearn.pool`` or ``explearn.cluster``), at most one
group per free worker, so that claims are taken only as workers free up and a second launch gets a share.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from explearn.execution import RunResult, SweepOutcome, plan_groups
from explearn.store import LocksUnsupported, RunStore

if TYPE_CHECKING:
    from explearn.run_config import RunSpec


#: Seconds between looks at the runs that another launch on the same store is training.
POLL_S = 0.5


@dataclass
class _Waiting:
    """A run that another launch held when this one tried to claim it."""

    run: RunSpec
    holder: str  # as ``RunStore.claim_holder`` names it
    error: tuple[int, int] | None  # (inode, mtime) of its error.txt then: a new one means that launch's try failed


class SweepQueue:
    """One launch's side of a sweep: the groups it has yet to submit, the runs it has claimed, the runs that another
    launch on the same store holds (waited for, taken over if that launch stops), and the stored results.

    The backends (``dispatch``) ask it for the next claimed group when a worker is free and hand it each result.
    """

    def __init__(self, todo: list[RunSpec], store: RunStore, outcome: SweepOutcome,
                 progress: Callable[[int, int], None] | None, log: Callable[[str], None]) -> None:
        self.todo, self.store, self.outcome, self.progress, self.log = todo, store, outcome, progress, log
        self.runs = {run.run_id: run for run in todo}
        self.slots = 1
        self.pending: deque[list[RunSpec]] = deque()
        self.claims: dict[str, Any] = {}  # run id -> its held lock (None where the filesystem has no locks)
        self.waiting: dict[str, _Waiting] = {}
        self.locking = True
        self.settled = 0
        self.told_wait = False
        self.last_poll = 0.0
        self.poll_every = POLL_S

    def plan(self, slots: int) -> None:
        """Group the runs for ``slots`` parallel workers (``plan_groups``); nothing is claimed yet."""
        self.slots = slots
        self.pending.extend(plan_groups(self.todo, slots))

    @property
    def finished(self) -> bool:
        """No group left to submit and no run waited for (the groups in flight are the backend's to count)."""
        return not self.pending and not self.waiting

    def next_group(self) -> list[RunSpec] | None:
        """The next runs to train, each claimed by this launch now, or None when no run is free for it now."""
        self._poll_waiting()
        while self.pending:
            group = [run for run in self.pending.popleft() if self._claim(run)]
            if group:
                return group
        return None

    def idle(self) -> None:
        """Nothing of this launch's own is left: wait a moment for the runs another launch holds (said once)."""
        if not self.told_wait:
            self.told_wait = True
            holders = _names(self.store.claim_holder(run_id) for run_id in self.waiting)  # as they are now
            self.log(f"waiting for {len(self.waiting)} runs that another launch on {self.store.root} is training "
                     f"({holders}); the runs of a launch that stops are taken over")
        time.sleep(POLL_S)

    def store_result(self, run_id: str, record: str | None, error: str | None) -> None:
        """Store a result (the record's JSON text, or the traceback) and release the run's claim. A result for a
        run this launch does not hold (a backend's repeat) is ignored: each run is written once."""
        if run_id not in self.claims:
            return
        if error is None:
            self.store.save_record(self.runs[run_id], record)
            self.outcome.trained.append(run_id)
        else:
            self.store.save_error(self.runs[run_id], error)
            self.outcome.failed[run_id] = error
        self._release(run_id)  # after the done marker: a launch that then takes the claim finds the run finished
        self._settle()

    def release_all(self) -> None:
        for run_id in list(self.claims):
            self._release(run_id)

    def _release(self, run_id: str) -> None:
        lock = self.claims.pop(run_id)
        if lock is not None:
            lock.release()

    def _settle(self) -> None:
        self.settled += 1
        if self.progress is not None:
            self.progress(self.settled, len(self.todo))

    def _claim(self, run: RunSpec) -> bool:
        """Whether this launch holds ``run`` now; a run held by another launch is added to those waited for."""
        state = self._take(run)
        if state == "held":
            self.waiting[run.run_id] = _Waiting(run, self.store.claim_holder(run.run_id),
                                                _stamp(self.store.path(run.run_id) / "error.txt"))
        return state == "mine"

    def _take(self, run: RunSpec) -> str:
        """Try to claim ``run``: "mine" (claimed, not finished), "held" (by another live launch), or "finished"
        (by another launch: counted as reused)."""
        run_id = run.run_id
        if run_id in self.claims:  # claimed when taken over, submitted later
            return "mine"
        if not self.store.is_done(run_id):
            try:
                lock = self.store.claim(run_id) if self.locking else None
            except LocksUnsupported as err:
                self.locking, lock = False, None
                self.log(f"{err.strerror}: runs are not claimed, so another launch on this folder at the same time "
                         "would train them again")
            if self.locking and lock is None:
                return "held"
            if not self.store.is_done(run_id):  # checked again: a launch may have finished it and let go just now
                self.claims[run_id] = lock
                return "mine"
            if lock is not None:
                lock.release()
        self.outcome.skipped.append(run_id)
        self.outcome.by_other.append(run_id)
        self._settle()
        return "finished"

    def _poll_waiting(self) -> None:
        """Settle the waited-for runs that another launch finished; take over those whose launch stopped."""
        started = time.monotonic()
        if not self.waiting or started - self.last_poll < self.poll_every:
            return
        taken = []
        for run_id, waiting in list(self.waiting.items()):
            state = self._take(waiting.run)
            if state == "held":
                continue
            del self.waiting[run_id]
            if state == "mine" and self._failed_elsewhere(waiting):
                self._release(run_id)
                self._settle()
            elif state == "mine":
                taken.append(waiting)
        self.last_poll = time.monotonic()
        # where a look is slow (NFS: round trips for each run), look less often, so as not to load the server
        self.poll_every = max(POLL_S, 10 * (self.last_poll - started))
        if taken:
            # named as they were when first found held: the claim files now name this launch
            self.log(f"taking over {len(taken)} runs claimed by a launch that stopped "
                     f"({_names(w.holder for w in taken)})")
            self.pending.extend(plan_groups([w.run for w in taken], self.slots))

    def _failed_elsewhere(self, waiting: _Waiting) -> bool:
        """Whether the launch that held a run wrote its error while this one waited: recorded as failed here too,
        not trained again (the next launch retries it, as any failed run)."""
        path = self.store.path(waiting.run.run_id) / "error.txt"
        stamp = _stamp(path)
        if stamp is None or stamp == waiting.error:
            return False
        try:
            text = path.read_text()
        except OSError:
            return False
        self.outcome.failed[waiting.run.run_id] = f"failed in another launch ({waiting.holder}):\n{text}"
        return True


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's (inode, mtime in ns), None if it does not exist: it changes when the file is rewritten (each write
    renames a new file into place)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _names(holders: Iterable[str]) -> str:
    """The distinct holders, at most three named: ``pid 1 on a since ..., pid 2 on b since ... and 4 more``."""
    names = sorted(set(holders))
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class Backend(Protocol):
    """Where groups train: this process or local worker processes (``explearn.pool``), or a Dask cluster
    (``explearn.cluster``). Each group goes to ``execution.execute_group``."""

    slots: int  # parallel workers, to size the groups (``plan_groups``)

    def capacity(self) -> int:
        """How many groups it takes at once now."""

    def busy(self) -> int:
        """Groups submitted whose results have not been returned yet."""

    def submit(self, group: list[RunSpec]) -> None:
        """Start training a group."""

    def results(self, timeout: float) -> list[RunResult]:
        """The results of the groups that finished within ``timeout`` seconds (none if none did)."""


def dispatch(queue: SweepQueue, backend: Backend) -> Iterator[RunResult]:
    """Results of ``execute_group`` over the queue's groups, trained by ``backend`` as they are claimed.

    At most ``backend.capacity()`` groups are in flight, so that claims are taken only as workers free up and other
    launches on the same store get a share. Ends when every run of the queue is settled, here or elsewhere.
    """
    queue.plan(backend.slots)
    while True:
        while backend.busy() < backend.capacity():
            group = queue.next_group()
            if group is None:
                break
            backend.submit(group)
        if backend.busy():
            yield from backend.results(POLL_S)  # the timeout lets a free worker take over a stopped launch's runs
        elif queue.finished:
            return
        else:
            queue.idle()
