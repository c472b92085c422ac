"""Where a command may write, checked before any work: no explearn command writes over one of its inputs or over
a file it did not make, and none trains for minutes and then finds that it cannot save.

The rules (docs/user-guide.md, "From the shell"): the destination's folder is created, a probe file is created and
deleted in it, and the folders the probe created are removed again (the command creates them when it writes, so one that fails
leaves nothing behind); an output path that is (or, through a link, resolves to) an input is refused; an existing
file at an output path is replaced only when it is what the same command writes (``ours``), anything else is an
error asking to remove it or to choose another name; an output folder must not be or hold a folder the inputs are
read from, nor lie inside a folder that is read with its subfolders; a folder a command fills as a whole (a report)
must be new, empty or one that command wrote; two outputs of one command are two files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from explearn.errors import ConfigError

#: tells whether an existing file is one the command itself writes (and so may replace)
Ours = Callable[[Path], bool]


def check_output_file(path: str | Path, option: str, *, ours: Ours, what: str,
                      inputs: Iterable[str | Path] = ()) -> Path:
    """Check that the file ``path`` can be written now: its folder is created, a file can be made in it, it is not
    a folder, not one of ``inputs``, and no file is there unless ``ours(path)`` says the command wrote it.

    Args:
        path: the file the command will write.
        option: the option as the user typed it (``--out``), for messages.
        ours: whether an existing file at ``path`` was written by this command (it is then replaced).
        what: what the command writes there, for messages ("an explearn checkpoint").
        inputs: files the command reads; none of them may be ``path``.

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: naming ``option`` and ``path``, saying what is wrong and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give the name of a file to write ({what})")
    _refuse_inputs([path], option, inputs)
    if (path.exists() or path.is_symlink()) and not _is_ours(path, ours):
        raise ConfigError(f"{option} {path}: a file of that name exists and is not {what}; explearn does not "
                          "replace files it did not write: remove it or choose another name")
    probe_folder(path.parent, option)
    return path


def check_output_folder(folder: str | Path, option: str, *, input_folders: Iterable[str | Path] = (),
                        read_folders: Iterable[str | Path] = (), targets: Iterable[Path] = (),
                        ours: Ours | None = None, what: str = "", inputs: Iterable[str | Path] = (),
                        reason: str | None = None) -> Path:
    """Check that ``folder`` can receive a command's files now: it is (or is created as) a folder, a file can be
    made in it, and it neither is nor holds one of ``input_folders`` (the folders of the input files) nor is, holds
    or lies inside one of ``read_folders`` (folders read with their subfolders, where outputs would be taken for
    inputs next time); resolved paths, so links count. The ``targets`` to be written in it must not be ``inputs``
    or folders, nor exist unless ``ours`` says the command wrote them; every clash is reported at once.
    ``reason`` says why a folder of the inputs is refused, where the default (images and masks) does not fit.

    Raises:
        ConfigError: naming ``option`` and ``folder`` (one line per clashing file).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: is a file, not a folder; give a folder to write into")
    here = folder.resolve()
    read = {Path(f).resolve() for f in read_folders}
    for source in dict.fromkeys([*(Path(f).resolve() for f in input_folders), *read]):
        inside = source in read and source in here.parents
        if source == here or here in source.parents or inside:
            where = "is" if source == here else "holds" if here in source.parents else "is inside"
            why = reason or ("it is read with its subfolders, so a later run would take the outputs for inputs"
                             if inside else "writing there could replace or mix with your images and masks")
            raise ConfigError(f"{option} {folder}: {where} the folder the inputs are read from ({source}); {why}: "
                              "choose a folder outside it")
    targets = list(targets)
    _refuse_inputs(targets, option, inputs)
    clashes = [t for t in targets if t.is_dir() or ((t.exists() or t.is_symlink()) and not _is_ours(t, ours))]
    if clashes:
        raise ConfigError(f"{option} {folder}: {len(clashes)} file(s) there would be replaced that are not {what}; "
                          "explearn does not replace files it did not write: remove them or choose another folder:"
                          "\n  " + "\n  ".join(map(str, clashes)))
    probe_folder(folder, option)
    return folder


def check_own_folder(folder: str | Path, option: str, *, ours: Ours, what: str) -> Path:
    """Check that a command that fills ``folder`` as a whole (a report with its runs) may write there: ``folder``
    does not exist, is empty, or ``ours(folder)`` says the command wrote it. Names starting with a dot
    (``.DS_Store``, ``.git``) are not counted: explearn writes none, save its own temporaries.

    Raises:
        ConfigError: naming ``option`` and ``folder`` and listing what is there (the first ten names).
    """
    folder = Path(folder)
    if not folder.is_dir():  # missing; a file there is check_output_folder's to report
        return folder
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    if not entries or _is_ours(folder, ours, folder_too=True):
        return folder
    shown = ", ".join(entries[:10]) + (f" and {len(entries) - 10} more" if len(entries) > 10 else "")
    raise ConfigError(f"{option} {folder}: holds {shown}; it is not {what}, and explearn writes only into a new or "
                      "empty folder or one it wrote before, so as never to replace or mix with files it did not write: "
                      "choose another folder")


def check_distinct(option_paths: dict[str, str | Path | None]) -> None:
    """Check that the outputs of one command (option -> path; None: not written) are distinct files, compared
    resolved (links count) and, where both exist, as the same file (hard links, case-insensitive names): one
    would otherwise replace what the other wrote.

    Raises:
        ConfigError: naming both options and the path.
    """
    seen: dict[Path, tuple[str, Path]] = {}
    for option, path in option_paths.items():
        if path is None:
            continue
        path = Path(path)
        for other, (first, first_path) in seen.items():
            if other == path.resolve() or _same_file(first_path, path):
                raise ConfigError(f"{first} {first_path} and {option} {path} are the same file: each would replace "
                                  f"what the other wrote; give {option} another name")
        seen[path.resolve()] = (option, path)


def json_with(*keys: str) -> Ours:
    """Whether a file is a JSON object holding ``keys`` (False for a file that cannot be read or parsed as JSON):
    how a command recognises a JSON file it wrote."""

    def ours(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
            return False
        return isinstance(data, dict) and all(k in data for k in keys)

    return ours


def probe_folder(folder: str | Path, option: str) -> Path:
    """Check that files can be written in ``folder`` now: create it (and its parents), create and delete a file in
    it, then remove again the folders this created, so that a destination that cannot be written is found before
    any work rather than after it, and a command that then fails leaves no empty folder behind (writers create
    their folder when they write: ``explearn.files.atomic_path``).

    Raises:
        ConfigError: naming ``option``, the folder and the operating system's reason.
    """
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{option}: cannot write into {folder}: {existing} is a file, not a folder")
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        _make_and_delete_a_file(folder)
    except OSError as err:  # PermissionError, NotADirectoryError, FileExistsError, a read-only file system ...
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{option}: cannot write into {folder or '.'} ({reason}); choose a place you can write to"
                          ) from None
    finally:
        for path in created:
            try:
                path.rmdir()
            except OSError:  # not empty: another process writes there now; it stays
                break
    return folder


def _make_and_delete_a_file(folder: Path) -> None:
    for attempt in range(3):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".explearn-probe-")
        except FileNotFoundError:  # another launch's probe removed the folder it had created too: once more
            if attempt == 2:
                raise
            continue
        os.close(fd)
        os.unlink(probe)
        return


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_inputs(targets: list[Path], option: str, inputs: Iterable[str | Path]) -> None:
    sources = {Path(p).resolve(): Path(p) for p in inputs}
    for target in targets:
        source = sources.get(target.resolve())
        if source is not None:
            raise ConfigError(f"{option}: would write {target}, which is the input {source}; explearn never writes "
                              "over its inputs: choose another name or folder")


def _is_ours(path: Path, ours: Ours | None, folder_too: bool = False) -> bool:
    try:
        return ours is not None and (path.is_file() or folder_too and path.is_dir()) and ours(path)
    except (OSError, ValueError):  # unreadable or undecodable: not a file this command wrote
        return False
