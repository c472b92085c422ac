"""Shared fixtures: tiny seeded data so that every test runs in well under a second or two."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from explearn import datasets


@pytest.fixture(scope="session")
def tiny() -> datasets.Splits:
    """16x16 triangles: 24 training, 16 validation, 32 test samples."""
    return datasets.triangles(n_train=24, seed=0, n_val=16, n_test=32, image_size=16)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder: $EXPLEARN_DATA, else ../shared/data beside the repository.

    Missing data fails the test under CI (CI=true) and skips it elsewhere, with the reason.
    """
    root = Path(os.environ.get("EXPLEARN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not root.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real data not found at {root} (set EXPLEARN_DATA)")
        pytest.skip(f"real data not found at {root} (set EXPLEARN_DATA)")
    return root


def _dataset_folder(data_dir: Path, name: str) -> Path:
    folder = data_dir / name
    if not folder.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} data not found at {folder}")
        pytest.skip(f"{name} data not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def mnist_dir(data_dir: Path) -> Path:
    """The MNIST folder of the real data (fails under CI, skips elsewhere when missing)."""
    return _dataset_folder(data_dir, "mnist")


@pytest.fixture(scope="session")
def ph2_dir(data_dir: Path) -> Path:
    """The PH2 folder of the real data (research-only: read in place, never copied)."""
    return _dataset_folder(data_dir, "ph2")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread():
    """One torch (OpenMP) thread for the test, the count restored after.

    Float sums are split across threads differently by different CPUs and thread counts, so results that must be
    bit-identical (``train_many`` against ``train``, a rerun against a stored run) are compared the way sweeps
    train: with one thread. On a 2-core Intel Xeon with 2 threads, a two-stage MLP's mapping weight differed by
    3.9e-5 after three epochs (issue 12, item 7).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
