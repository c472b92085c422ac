"""The labels CSV of a folder dataset: reading it (UTF-8, UTF-16 or UTF-32; comma, semicolon or tab) into rows, and
its labels (cleaned, checked for two spellings of one class, put in class order); the short name lists messages use.
"""

from __future__ import annotations

import codecs
import csv
import io
import posixpath
import re
import unicodedata
from collections import defaultdict
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from explearn.datasets.folder import FolderOptions

_LISTED = 10  # files named per message before "and N more"
_DELIMITERS = (",", ";", "\t")  # CSV delimiters, tried in this order on the header line
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")  # a label that is a number: 1, 1.0, 01, 1e0
_INTEGER = re.compile(r"[+-]?\d+")


def read_labels_csv(root: Path, opts: FolderOptions, problems: list[str]) -> list[tuple[int, str, str, str | None]] | None:
    """(line, image, label, split) of every CSV row, the cells stripped, labels cleaned (``_label``), image names
    in Unicode NFC, lines counted in the file as it is; None, with a problem, when the CSV is missing, unreadable
    or lacks a column. Its encoding is read by ``_csv_text``, its delimiter from an Excel ``sep=`` first line or
    by ``_delimiter``."""
    path = root / opts.labels
    if not path.is_file():
        twin = case_twin(root, opts.labels)
        hint = f"; {twin} exists, but file names are case-sensitive: {option_hint('labels', twin)}" if twin else ""
        problems.append(f"{opts.labels}: not found (expected a CSV with columns "
                        f"{opts.image_column}, {opts.label_column} and optionally {opts.split_column}){hint}")
        return None
    text = _csv_text(path, opts.labels, problems)
    if text is None:
        return None
    first, _, rest = text.partition("\n")
    sep = re.fullmatch(r"sep=(.)", first.rstrip("\r"))  # Excel's optional first line naming the delimiter
    text, skipped = (rest, 1) if sep else (text, 0)
    wanted = (opts.image_column, opts.label_column)
    delimiter = sep.group(1) if sep else _delimiter(text.partition("\n")[0].rstrip("\r"), wanted)
    out = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        found = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = found
        missing = [c for c in wanted if c not in found]
        if missing:
            problems.append(_missing_columns(opts, missing, found))
            return None
        split_col = opts.split_column if opts.split_column in found else None
        for rec in reader:
            cell = lambda c: (rec.get(c) or "").strip()  # noqa: E731 (short rows give None)
            out.append((reader.line_num + skipped, nfc(cell(opts.image_column)), clean_label(cell(opts.label_column)),
                        cell(split_col).lower() if split_col else None))
    except csv.Error as err:
        problems.append(f"{opts.labels}: cannot be read as a CSV file ({err})")
        return None
    if not out:
        problems.append(f"{opts.labels}: no rows")
    return out


def _csv_text(path: Path, name: str, problems: list[str]) -> str | None:
    """The CSV's text: UTF-8 (a leading BOM skipped), or UTF-16 / UTF-32 when it starts with their BOM (a
    spreadsheet's "Unicode text" export); None, with a problem saying how to re-save it, when it is neither."""
    data = path.read_bytes()
    boms = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
            (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 first: its little-endian BOM starts like UTF-16's
    encoding = next((enc for bom, enc in boms if data.startswith(bom)), "utf-8-sig")
    resave = "re-save it as UTF-8 (in a spreadsheet: \"CSV UTF-8\")"
    if encoding == "utf-8-sig" and b"\x00" in data:
        problems.append(f"{name}: holds NUL bytes, so it is not UTF-8 text (UTF-16 without a byte-order mark?); "
                        f"{resave}")
        return None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        where = f"line {line} holds the byte 0x{data[err.start]:02x}, " if encoding == "utf-8-sig" else ""
        guess = "not UTF-8 (Latin-1 or Windows-1252 text?)" if encoding == "utf-8-sig" else f"not valid {encoding}"
        problems.append(f"{name}: cannot be read: {where}{guess}; {resave}")
        return None


def _delimiter(header: str, wanted: tuple[str, ...]) -> str:
    """The delimiter that makes ``header`` hold the ``wanted`` columns: comma, semicolon or tab (spreadsheets in
    many languages write ``;``), first exactly, then up to case; else the one that splits it into most columns
    (comma on a tie), so that a message lists the columns as the file has them."""
    cells = {d: [c.strip() for c in next(csv.reader([header], delimiter=d), [])] for d in _DELIMITERS}
    for same in (lambda c: c, str.casefold):
        for d, found in cells.items():
            if all(same(w) in {same(c) for c in found} for w in wanted):
                return d
    return max(_DELIMITERS, key=lambda d: len(cells[d]))


def _missing_columns(opts: FolderOptions, missing: list[str], found: list[str]) -> str:
    """The problem of required columns the CSV lacks, with what to do: the column differing only in case, or the
    option that names a column."""
    keys = {opts.image_column: "image_column", opts.label_column: "label_column"}
    folded = {c.casefold(): c for c in found}
    close = {c: folded[c.casefold()] for c in missing if c.casefold() in folded}
    if close:
        how = (f"column names are case-sensitive: did you mean {', '.join(map(repr, close.values()))}? Rename the "
               "column, or " + " and ".join(option_hint(keys[c], v) for c, v in close.items()))
    else:
        how = "rename the column, or name it: " + " and ".join(option_hint(keys[c], "NAME") for c in missing)
    one = ("; one column: the delimiter is read as comma, semicolon or tab, whichever finds the columns"
           if len(found) == 1 else "")
    return (f"{opts.labels}: no column {', '.join(map(repr, missing))} (columns found: {', '.join(found) or 'none'}"
            f"{one}); {how}")


def option_hint(key: str, value: str) -> str:
    """How to set a folder option, on the command line and in Python."""
    return f"set --data {key}={value} ({key}=\"{value}\" in Python)"


def case_twin(root: Path, rel: str) -> str:
    """The file or folder beside ``root/rel`` whose name differs from it only in case (``Masks`` for ``masks``),
    relative to ``root``; empty when there is none."""
    path = root / rel
    if not path.parent.is_dir():
        return ""
    twins = sorted(p.name for p in path.parent.iterdir()
                   if p.name != path.name and p.name.casefold() == path.name.casefold())
    return posixpath.join(posixpath.dirname(PurePosixPath(rel).as_posix()), twins[0]) if twins else ""


def class_order(labels: list[str]) -> tuple[str, ...]:
    """The distinct labels sorted: by value when every one is an integer ('2' before '10'), else as text."""
    unique = set(labels)
    if unique and all(_INTEGER.fullmatch(label) for label in unique):
        return tuple(sorted(unique, key=lambda label: (int(label), label)))
    return tuple(sorted(unique))


def label_key(label: str) -> str | Decimal:
    """What two spellings of one class share: the number a label writes ("1", "1.0", "01": 1), else its case-folded
    text ("Melanoma", "melanoma")."""
    return Decimal(label) if _NUMBER.fullmatch(label) else label.casefold()


def label_variants(matched: list, labels_csv: str) -> list[str]:
    """A problem for each class written in several ways: labels that differ only in case ("Melanoma",
    "melanoma") or are the same number written differently ("1", "1.0", "01": pandas writes float columns as
    1.0): each spelling with its row count and CSV lines."""
    lines: dict[str, list[int]] = defaultdict(list)
    for line, _, label, _ in matched:
        if label:
            lines[label].append(line)
    groups: dict[str | Decimal, list[str]] = defaultdict(list)
    for label in sorted(lines):
        groups[label_key(label)].append(label)
    out = []
    for key, spellings in ((k, g) for k, g in groups.items() if len(g) > 1):
        each = " and ".join(f"{s!r} ({len(lines[s])} row{'s' if len(lines[s]) != 1 else ''}: line"
                            f"{'s' if len(lines[s]) != 1 else ''} {names_list([str(n) for n in lines[s]])})"
                            for s in spellings)
        how = "differ only in case" if isinstance(key, str) else "are the same number written differently"
        out.append(f"{labels_csv}: labels {each} {how}, so they would be separate classes; write each class one "
                   "way (or list them in --data classes=A,B,... to keep them apart on purpose)")
    return out


def clean_label(text: str) -> str:
    """A label as compared: Unicode NFC, spaces trimmed and runs of whitespace (tabs, non-breaking spaces)
    collapsed to one space."""
    return " ".join(nfc(text).split())


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def names_list(files: list[str]) -> str:
    more = f" and {len(files) - _LISTED} more" if len(files) > _LISTED else ""
    return ", ".join(files[:_LISTED]) + more
