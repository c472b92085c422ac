"""The one atomic-write helper: a reader never sees half a file, a failed write leaves the old file."""

import pytest

from explearn.files import atomic_path, atomic_write


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("old")
    assert atomic_write(target, "new") == target
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_the_temporary_keeps_the_suffix_and_is_unique(tmp_path):
    target = tmp_path / "fig.png"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a.suffix == ".png" and a.name.startswith(".") and a != b
        a.write_bytes(b"1")
        b.write_bytes(b"2")
    assert target.read_bytes() in (b"1", b"2")
