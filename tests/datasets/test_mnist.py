import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from explearn.datasets import mnist
from explearn.datasets.mnist import IMAGES_MAGIC, LABELS_MAGIC, MNIST_FILES, download_mnist, load_mnist, parse_idx
from explearn.errors import DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]



def _idx(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_mnist(folder: Path, n_train: int = 6, n_test: int = 4, n_train_labels: int | None = None) -> dict:
    """Write four tiny IDX gzip files; returns their md5 sums by name (to patch into MNIST_FILES)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": (IMAGES_MAGIC, rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": (LABELS_MAGIC, rng.integers(0, 10, n_train_labels or n_train)),
        "t10k-images-idx3-ubyte.gz": (IMAGES_MAGIC, rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": (LABELS_MAGIC, rng.integers(0, 10, n_test)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, (magic, array) in arrays.items():
        data = gzip.compress(_idx(magic, array), mtime=0)
        (folder / name).write_bytes(data)
        sums[name] = hashlib.md5(data).hexdigest()
    return sums


# --- the real files ---------------------------------------------------------------------------------------------


def test_reads_the_real_files_with_shapes_and_class_counts(mnist_dir):
    train_x, train_y, test_x, test_y = load_mnist(mnist_dir)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == test_x.dtype == train_y.dtype == np.uint8
    assert np.bincount(train_y).tolist() == TRAIN_COUNTS
    assert np.bincount(test_y).tolist() == TEST_COUNTS
    # real digits: dark background, bright strokes, the corners empty
    assert train_x.max() == 255 and (train_x[:, 0, 0] == 0).all()
    assert 0.1 < (train_x > 0).mean() < 0.3


def test_loading_is_cached_per_folder_and_read_only(mnist_dir):
    a, b = load_mnist(mnist_dir), load_mnist(str(mnist_dir) + "/")
    assert a.train_x is b.train_x
    with pytest.raises(ValueError):
        a.train_x[0, 0, 0] = 1  # the cache is shared: writing must be impossible


def test_folder_from_the_environment(mnist_dir, monkeypatch):
    monkeypatch.setenv("EXPLEARN_DATA", str(mnist_dir.parent))
    assert load_mnist().train_x.shape == (60000, 28, 28)


def test_a_corrupted_copy_is_rejected_naming_the_file(mnist_dir, tmp_path):
    for name in MNIST_FILES:
        shutil.copy(mnist_dir / name, tmp_path / name)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert "train-labels-idx1-ubyte.gz" in message
    assert MNIST_FILES["train-labels-idx1-ubyte.gz"] in message  # the expected md5
    assert hashlib.md5(bytes(data)).hexdigest() in message  # the actual md5
    assert "download" in message  # what to do


def test_download_from_a_file_mirror_and_skip_present_files(mnist_dir, tmp_path):
    dest = tmp_path / "dest"
    assert download_mnist(dest, mirrors=[mnist_dir.as_uri()]) == dest
    for name, md5 in MNIST_FILES.items():
        assert mnist.file_md5(dest / name) == md5
    assert sorted(p.name for p in dest.iterdir()) == sorted(MNIST_FILES)  # no temporary files left
    stamps = {name: (dest / name).stat().st_mtime_ns for name in MNIST_FILES}
    download_mnist(dest, mirrors=[(tmp_path / "nowhere").as_uri()])  # all present: no mirror is asked
    assert stamps == {name: (dest / name).stat().st_mtime_ns for name in MNIST_FILES}
    assert load_mnist(dest).train_x.shape == (60000, 28, 28)


def test_download_rejects_a_corrupt_mirror_and_writes_nothing(mnist_dir, tmp_path):
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    mirror.mkdir()
    for name in MNIST_FILES:
        shutil.copy(mnist_dir / name, mirror / name)
    bad = mirror / "t10k-labels-idx1-ubyte.gz"
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match=r"(?s)could not download t10k-labels-idx1-ubyte\.gz.*md5 .* does not match"):
        download_mnist(dest, mirrors=[mirror.as_uri()])
    assert not (dest / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in dest.iterdir() if p.name.endswith(".part")]
    # a good mirror after the corrupt one is used instead
    download_mnist(dest, mirrors=[mirror.as_uri(), mnist_dir.as_uri()])
    assert mnist.file_md5(dest / "t10k-labels-idx1-ubyte.gz") == MNIST_FILES["t10k-labels-idx1-ubyte.gz"]


# --- errors without the real files ------------------------------------------------------------------------------


def test_missing_folder_and_files_are_named(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    for name in MNIST_FILES:
        assert (name in str(err.value)) == (name != "train-images-idx3-ubyte.gz")
    monkeypatch.delenv("EXPLEARN_DATA", raising=False)
    with pytest.raises(DataError, match=r"set \$EXPLEARN_DATA"):
        load_mnist()


def test_tiny_files_with_their_own_md5s_load(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_FILES", _fake_mnist(tmp_path))
    data = load_mnist(tmp_path)
    assert data.train_x.shape == (6, 28, 28) and data.test_y.shape == (4,)


def test_image_and_label_counts_must_agree(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_FILES", _fake_mnist(tmp_path, n_train_labels=5))
    with pytest.raises(DataError, match="train has 6 images but 5 labels"):
        load_mnist(tmp_path)


def test_idx_parser_reads_shape_and_values():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(_idx(IMAGES_MAGIC, array), IMAGES_MAGIC)
    assert out.shape == (2, 3, 4) and (out == array).all()


def test_idx_parser_rejects_a_bad_magic_number():
    labels = _idx(LABELS_MAGIC, np.zeros(5))
    with pytest.raises(DataError, match="magic number 2049 .* where 2051"):
        parse_idx(labels, IMAGES_MAGIC, "x.gz")
    with pytest.raises(DataError, match="magic number"):
        parse_idx(b"\x1f\x8b\x08\x00" + bytes(20), LABELS_MAGIC)  # still gzip-compressed


@pytest.mark.parametrize("cut, message", [(-1, "truncated"), (-20, "truncated"), (8, "header needs"), (2, "too short")])
def test_idx_parser_rejects_truncated_data(cut, message):
    data = _idx(IMAGES_MAGIC, np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match=message):
        parse_idx(data[:cut], IMAGES_MAGIC)


def test_idx_parser_rejects_trailing_bytes():
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(_idx(LABELS_MAGIC, np.zeros(5)) + b"\x00", LABELS_MAGIC)
