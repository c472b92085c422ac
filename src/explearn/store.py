"""The run store: one folder per run id under a root, with the run's record once it finished, its error if the
last attempt failed, and the claim (an OS file lock) of the launch training it. Everything that reads or writes
stored runs (the sweep, the claims of launches sharing a store, the reports) goes through ``RunStore``."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from explearn.config import json_ready
from explearn.errors import DataError
from explearn.files import atomic_write

if TYPE_CHECKING:
    from filelock import FileLock

    from explearn.run_config import RunSpec


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
    """Every file is written atomically with a temporary name per process (``files.atomic_write``): where files
    have no locks, two launches may write the same run.

    ``root/<run_id>/`` holds ``config.json``, then ``result.json`` and the ``done`` marker once finished, or
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
        atomic_write(folder / "result.json", record)
        (folder / "error.txt").unlink(missing_ok=True)
        atomic_write(folder / "done", "")

    def save_error(self, run: RunSpec, text: str) -> None:
        folder = self.path(run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "config.json", json.dumps(run.config(), indent=1))
        atomic_write(folder / "error.txt", text)

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


def record_json(run: RunSpec, result: Mapping[str, Any]) -> str:
    """The stored record of a finished run: its configuration and its ``TrainResult.to_json()``, as JSON text
    (numpy scalars and 0-d tensors as numbers; anything else not JSON-ready is a TypeError naming its key)."""
    return json.dumps({key: json_ready(value, key) for key, value in {"run": run.config(), **result}.items()})
