"""Seeding and capturing every random number generator, for reproducible and resumable runs."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch

from visionkit._checks import check_seed

__all__ = ["get_rng_state", "seed_everything", "set_rng_state"]


def seed_everything(seed: int, *, deterministic: bool = False) -> int:
    """Seed Python's ``random``, NumPy, torch and every CUDA device with ``seed``.

    Args:
        seed: The seed.
        deterministic: Also ask torch for deterministic algorithms (slower on GPU; ops that
            have none raise an error) and set ``CUBLAS_WORKSPACE_CONFIG`` accordingly.

    Returns:
        The seed as a Python ``int`` (NumPy integers are accepted), for logging.

    Raises:
        ConfigurationError: if ``seed`` is not an integer in ``[-2**63, 2**64 - 1]``.
    """
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def get_rng_state() -> dict[str, Any]:
    """Every global RNG state (Python, NumPy, torch CPU and CUDA), in checkpoint-safe types.

    The result holds only tensors, lists, tuples, ints, floats, strings and ``None``, so a
    checkpoint that contains it still loads with ``torch.load(weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    numpy_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    kind, keys, pos, has_gauss, cached = numpy_state
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys).copy()),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if _cuda_in_use():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by `get_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _cuda_in_use() -> bool:
    """Whether CUDA is initialized (asking for its RNG state must not initialize it)."""
    initialized: Callable[[], bool] = torch.cuda.is_initialized
    return torch.cuda.is_available() and initialized()
