"""The original MNIST files: an IDX parser, md5-verified loading from a folder, and a download from mirrors.

The folder holds the four gzip files every MNIST loader uses (``train-images-idx3-ubyte.gz`` and the others below);
it comes from the caller, else from ``$EXPLEARN_DATA/mnist``. Every file's md5 is checked before it is parsed, and
the parsed arrays are cached per process, because a sweep builds the MNIST benchmarks many times.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple, Sequence

import numpy as np

from explearn.config import check, setting
from explearn.errors import DataError
from explearn.files import atomic_path

#: file name -> md5 of the gzip file, as published with the original downloads (../shared/data/mnist/SOURCE.txt)
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: Base URLs that serve the four files under their original names (the first is torchvision's primary mirror).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
ENV_VAR = "EXPLEARN_DATA"


class MNIST(NamedTuple):
    """The MNIST arrays, uint8 and read-only (they are shared by the per-process cache; copy before writing).

    Shape: train_x (60000, 28, 28), train_y (60000,), test_x (10000, 28, 28), test_y (10000,).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def parse_idx(data: bytes, expected_magic: int, name: str = "IDX data") -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes (the MNIST format).

    The header is a big-endian 32-bit magic number (0x0000 0x08 ndim: 2049 for labels, 2051 for images) and one
    big-endian 32-bit size per dimension; the payload follows, exactly prod(sizes) bytes.

    Args:
        data: the file's bytes, after gunzip.
        expected_magic: ``LABELS_MAGIC`` or ``IMAGES_MAGIC``.
        name: what the data are, for messages (the file name).

    Returns:
        A read-only uint8 array of the header's shape.

    Raises:
        DataError: a wrong magic number, a short header, or a payload shorter or longer than the header says.
    """
    if len(data) < 4:
        raise DataError(f"{name}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{name}: magic number {magic} (0x{magic:08x}) where {expected_magic} (0x{expected_magic:08x}) was "
            f"expected; this is not an MNIST {'image' if expected_magic == IMAGES_MAGIC else 'label'} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: the header needs {header} bytes, the file has {len(data)} (truncated)")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    actual = len(data) - header
    if actual != expected:
        state = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{name}: the header announces shape {dims} ({expected} bytes of data) but the file holds {actual} "
            f"bytes after the header ({state})"
        )
    out = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return out  # frombuffer on bytes is read-only


def file_md5(path: Path) -> str:
    """The md5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mnist_dir(data_dir: str | Path | None = None) -> Path:
    """The MNIST folder: ``data_dir`` if given, else ``$EXPLEARN_DATA/mnist``.

    Raises:
        DataError: neither is set, saying how to set it.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    root = os.environ.get(ENV_VAR)
    if not root:
        raise DataError(
            f"no MNIST folder given: pass data_dir (the dataset option data_dir=...) or set ${ENV_VAR} to a folder "
            f"whose mnist/ subfolder holds {', '.join(MNIST_FILES)} (explearn.datasets.download_mnist fetches them)"
        )
    return Path(root).expanduser() / "mnist"


def load_mnist(data_dir: str | Path | None = None) -> MNIST:
    """Read the four MNIST files from ``data_dir`` (default ``$EXPLEARN_DATA/mnist``), md5-checked and cached.

    Returns:
        ``MNIST(train_x, train_y, test_x, test_y)``, uint8, read-only; see ``MNIST`` for shapes.

    Raises:
        DataError: no folder, a missing folder or files (listed by name), an md5 mismatch (naming the file, the
            expected and the actual md5), or a malformed file.
    """
    folder = mnist_dir(data_dir).resolve()
    if not folder.is_dir():
        raise DataError(
            f"MNIST folder {folder} does not exist; create it with the four files {', '.join(MNIST_FILES)} "
            "(explearn.datasets.download_mnist(folder) downloads them) or point data_dir / "
            f"${ENV_VAR} elsewhere"
        )
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"MNIST folder {folder} lacks {', '.join(missing)}; download them from any MNIST mirror "
            "(explearn.datasets.download_mnist(folder) does it and checks the md5 sums)"
        )
    # the cache key includes size and modification time, so a file replaced in place is read again
    stamps = tuple((name, (folder / name).stat().st_size, (folder / name).stat().st_mtime_ns) for name in MNIST_FILES)
    return _load_cached(str(folder), stamps)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: str, stamps: tuple) -> MNIST:
    path = Path(folder)
    for name, md5 in MNIST_FILES.items():
        _verify(path / name, md5)
    arrays = {}
    for name in MNIST_FILES:
        try:
            raw = gzip.decompress((path / name).read_bytes())
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path / name}: not a readable gzip file ({err})") from None
        arrays[name] = parse_idx(raw, IMAGES_MAGIC if "images" in name else LABELS_MAGIC, str(path / name))
    out = MNIST(
        arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"],
        arrays["t10k-images-idx3-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"],
    )
    for split, x, y in (("train", out.train_x, out.train_y), ("t10k", out.test_x, out.test_y)):
        if x.ndim != 3 or x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: {split} has {x.shape[0]} images but {y.shape[0]} labels")
        if y.size and int(y.max()) > 9:
            raise DataError(f"{path}: {split} labels contain {int(y.max())}, MNIST labels are 0-9")
    return out


def _verify(path: Path, expected: str) -> None:
    actual = file_md5(path)
    if actual != expected:
        raise DataError(
            f"{path}: md5 {actual} does not match the published {expected}; the file is corrupt or a different "
            "version: delete it and download it again (explearn.datasets.download_mnist re-fetches and checks it)"
        )


def download_mnist(dest: str | Path | None = None, mirrors: Sequence[str] = MNIST_MIRRORS,
                   timeout: float = 60.0) -> Path:
    """Download the four MNIST files into ``dest`` (default ``$EXPLEARN_DATA/mnist``), trying each mirror in turn.

    A file already present with the right md5 is kept. Each download is written to a temporary file in ``dest``,
    checked against the published md5 and only then renamed into place, so an interrupted or corrupt download
    never leaves a file under the real name.

    Args:
        dest: the folder; created if missing.
        mirrors: base URLs (``https://...``, ``file://...``) under which the files lie by their original names.
        timeout: seconds per connection attempt.

    Returns:
        The folder, ready for ``load_mnist``.

    Raises:
        DataError: a file could not be fetched with the right md5 from any mirror (every mirror's failure listed).
    """
    folder = mnist_dir(dest)
    if not mirrors:
        raise DataError("download_mnist: no mirror given")
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_FILES.items():
        target = folder / name
        if target.is_file() and file_md5(target) == md5:
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                _fetch(url, target, md5, timeout)
                break
            except (OSError, DataError, ValueError) as err:  # URLError is an OSError
                failures.append(f"{url}: {err}")
        else:
            raise DataError(
                f"could not download {name} into {folder}:\n  " + "\n  ".join(failures)
                + "\nplace the file there by hand (any MNIST mirror; md5 " + md5 + ") or pass other mirrors"
            )
    return folder


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``target``; rename it into place only if its md5 matches."""
    with atomic_path(target) as tmp:
        digest = hashlib.md5()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:  # raising leaves the target as it was and removes the partial file
            raise DataError(f"md5 {digest.hexdigest()} does not match the published {md5} (corrupt mirror copy)")


# --- splits shared by the MNIST benchmarks ---------------------------------------------------------------------

N_TRAIN_FILE, N_TEST_FILE = 60000, 10000
SCALE = np.arange(256, dtype=np.float32) / np.float32(255.0)  # uint8 value -> [0, 1]
_PERMUTATION_KEY, _TEST_PERMUTATION_KEY = 1000, 1001  # random streams of the data seed, apart from the splits' own


@dataclass(frozen=True)
class MNISTSplitOptions:
    """Options every MNIST benchmark shares: split sizes, masks and where the files are."""

    n_train: int | None = setting(
        None, "training images from MNIST train; default: the full training set, i.e. all 60000 MNIST training "
              "images not in the validation split (60000 - n_val)"
    )
    n_val: int = setting(5000, "validation images, carved from MNIST train (disjoint from the training split)")
    n_test: int = setting(10000, "test images from MNIST test (a seeded subset when fewer than 10000)")
    mask_fraction: float = setting(1.0, "share of training images that have explanation masks")
    digit_threshold: float = setting(
        0.1, "right-reason mask: the digit's pixels with intensity above this (on the [0, 1] scale)"
    )
    data_dir: str | None = setting(None, "folder with the four MNIST files; default: $EXPLEARN_DATA/mnist")

    name: ClassVar[str] = "mnist"

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        check(1 <= self.n_val < N_TRAIN_FILE, where, f"n_val must lie in [1, {N_TRAIN_FILE - 1}], got {self.n_val}")
        if self.n_train is not None:
            check(self.n_train >= 1, where, f"n_train must be at least 1, got {self.n_train}")
            check(self.n_train + self.n_val <= N_TRAIN_FILE, where,
                  f"n_train + n_val must not exceed the {N_TRAIN_FILE} MNIST training images, got "
                  f"{self.n_train} + {self.n_val}")
        check(1 <= self.n_test <= N_TEST_FILE, where, f"n_test must lie in [1, {N_TEST_FILE}], got {self.n_test}")
        check(0.0 <= self.mask_fraction <= 1.0, where, f"mask_fraction must lie in [0, 1], got {self.mask_fraction}")
        check(0.0 <= self.digit_threshold < 1.0, where,
              f"digit_threshold must lie in [0, 1), got {self.digit_threshold}")

    @property
    def train_size(self) -> int:
        """n_train with the default resolved."""
        return N_TRAIN_FILE - self.n_val if self.n_train is None else self.n_train


def split_indices(opts: MNISTSplitOptions, seed: int) -> dict[str, np.ndarray]:
    """Which MNIST images form each split: indices into MNIST train (``train``, ``val``) and MNIST test (``test``).

    One permutation of the 60000 training images per data seed: the training split is its first ``n_train``
    entries, the validation split its last ``n_val`` entries read backwards. So a smaller training set is a prefix
    of a larger one, the validation split does not depend on ``n_train`` (nor the training split on ``n_val``), and
    the two never share an image. The test split is the prefix of a seeded permutation of MNIST test: its first
    and second halves come from different writer pools, so a plain prefix would not be representative.
    """
    perm = np.random.default_rng([seed, _PERMUTATION_KEY]).permutation(N_TRAIN_FILE)
    test = np.random.default_rng([seed, _TEST_PERMUTATION_KEY]).permutation(N_TEST_FILE)
    return {"train": perm[: opts.train_size], "val": perm[::-1][: opts.n_val], "test": test[: opts.n_test]}


def digit_mask(images: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels of the digit: intensity above ``threshold`` on the [0, 1] scale. Shape: (N, 28, 28) -> same, bool.

    MNIST's background is exactly 0 and its strokes are anti-aliased; a threshold of 0.1 keeps the stroke and most
    of its soft edge while dropping the faintest fringe (below 26/255), which is interpolation from the size
    normalisation rather than ink a reader would point at.
    """
    above = np.flatnonzero(SCALE > threshold)  # the uint8 values v with v / 255 > threshold, a contiguous range
    if not len(above):
        return np.zeros(images.shape, dtype=bool)
    return images >= above[0]


def scaled(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 x / 255 (computed in float32: half the time and memory of a float64 division)."""
    return np.divide(images, np.float32(255.0), dtype=np.float32)


def first_masked(n: int, fraction: float) -> np.ndarray:
    """``has_mask`` for a training split: the first round(fraction * n) samples. The split is already in a seeded
    random order, so these are a random subset, and they are nested across training-set sizes. Shape: (n,) bool."""
    keep = np.zeros(n, dtype=bool)
    keep[: round(fraction * n)] = True
    return keep
