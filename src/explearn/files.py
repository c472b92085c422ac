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
    error, removed when it raises (``target`` is then left as it was).

    The temporary name is hidden (a leading dot), unique per process, thread and call (two launches writing the
    same report at once never share one), and keeps ``target``'s suffix, so writers that choose a format by
    the file name (matplotlib's ``savefig``) still work.

    Raises:
        OSError: the folder cannot be written; the rename fails.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.{next(_counter)}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(target: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``target`` atomically (``atomic_path``); returns ``target``."""
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return target
