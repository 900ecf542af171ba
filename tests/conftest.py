"""Shared fixtures: paths to the real sample data in ../shared/data, skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VISIONKIT_SHARED_DATA", REPO.parent / "shared" / "data"))

# One intra-op thread: the tests train tiny models, where a second thread only adds
# contention, and bitwise comparisons need the same thread count in every run.
torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="also run the long part of the reliability suite (tests/reliability, marker long)",
    )


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(
            f"real sample data not found at {path}: clone the project beside its shared/ folder "
            "or set VISIONKIT_SHARED_DATA"
        )
    return path


@pytest.fixture
def mnist_dir() -> Path:
    """Folder with the real MNIST test set (t10k-*.gz)."""
    return _shared("mnist")


@pytest.fixture
def flowers_dir() -> Path:
    """The real Oxford-102 flowers sample: train/ valid/ test/ and cat_to_name.json."""
    return _shared("flowers")


@pytest.fixture
def cifar_batches_dir() -> Path:
    """The CIFAR-10 sample in the python pickle batch format."""
    return _shared("cifar10_batches")


@pytest.fixture
def cifar_png_dir() -> Path:
    """The CIFAR-10 sample as PNG files in class folders."""
    return _shared("cifar10")


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own folder, so default output folders never land in the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
