"""Writing a file so that no reader ever sees half of it: write a temporary file beside it, then rename it into
place (atomic on POSIX and Windows filesystems). The one helper every part of explearn that writes results,
records, checkpoints, manifests, reports or downloads goes through."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path
from typing import Iterator

_counter = itertools.count()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; renamed onto ``target`` when the block ends without an
    error, removed when it raises (``target`` is then left as it was). ``target``'s folder is created if missing
    (commands check their destinations before any work but create them only when they write).

    The temporary name is hidden (a leading dot), unique per process, thread and call (two launches writing the
    same report at once never share one), and keeps ``target``'s suffix, so writers that choose a format by
    the file name (matplotlib's ``savefig``) still work.

    Raises:
        OSError: the folder cannot be created or written, or the rename fails. It names ``target``, never the
            temporary name (``[Errno 30] cannot write reports/paper/results.csv: Read-only file system``), and
            keeps the error's class and errno. An OSError of the block about another file passes unchanged.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.{next(_counter)}{target.suffix}")
    try:
        with _named(target, tmp, own=True):
            target.parent.mkdir(parents=True, exist_ok=True)
        with _named(target, tmp, own=False):
            yield tmp
        with _named(target, tmp, own=True):
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):  # gone (renamed), or cannot be removed: never hide the error of the write
            tmp.unlink()


@contextlib.contextmanager
def _named(target: Path, tmp: Path, own: bool) -> Iterator[None]:
    """Re-raise an OSError that names ``tmp`` (or, with ``own``, any OSError: our own mkdir and rename) as one naming
    ``target``: the temporary name means nothing to the reader of the message."""
    try:
        yield
    except OSError as err:
        if not (own or tmp.name in str(err)) or err.errno is None:
            raise
        raise type(err)(err.errno, f"cannot write {target}: {err.strerror or err}") from err


def atomic_write(target: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``target`` atomically (``atomic_path``); returns ``target``."""
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return target
