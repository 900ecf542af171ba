"""The seeded validation split."""

from __future__ import annotations

import pytest
import torch

from visionkit import ConfigurationError
from visionkit.data import mnist_sample, split_indices


def test_same_seed_same_split() -> None:
    a = split_indices(1000, 0.2, seed=3)
    b = split_indices(1000, 0.2, seed=3)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_different_seed_different_split() -> None:
    _, val_a = split_indices(1000, 0.2, seed=0)
    _, val_b = split_indices(1000, 0.2, seed=1)
    assert not torch.equal(val_a.sort().values, val_b.sort().values)


def test_split_sizes_disjoint_and_complete() -> None:
    train, val = split_indices(1001, 0.2, seed=0)
    assert (len(train), len(val)) == (801, 200)  # floor(0.2 * 1001) held out, as seed 001
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1001))


def test_split_is_shuffled_not_a_prefix() -> None:
    _, val = split_indices(1000, 0.2, seed=0)
    assert val.tolist() != list(range(200))


def test_factory_split_follows_seed() -> None:
    a, b, c = mnist_sample(seed=0), mnist_sample(seed=0), mnist_sample(seed=1)
    assert torch.equal(a.val.images, b.val.images)  # type: ignore[union-attr]
    assert not torch.equal(a.val.images, c.val.images)  # type: ignore[union-attr]
    assert len(a.val) == len(c.val) == 800  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fraction(fraction: float) -> None:
    with pytest.raises(ConfigurationError, match=r"val_fraction must be in \[0, 1\)"):
        split_indices(10, fraction)
