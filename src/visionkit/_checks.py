"""Argument checks shared by the public API: one clear error instead of a failure deep inside.

Each check returns the value in its plain Python type (``numpy.int64(3)`` becomes ``3``), so
what is stored, recorded in checkpoints or passed to torch is always a builtin. ``bool`` is
refused where a number is expected: ``True`` as a count or a fraction is a mistake, not a 1.
Every error is a :class:`~visionkit.ConfigurationError` (a ``ValueError``) unless the caller
asks for another :class:`~visionkit.VisionKitError`, and says what was expected, what was
found and what to pass instead.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.exceptions import ConfigurationError, VisionKitError

__all__ = [
    "SEED_RANGE",
    "check_bool",
    "check_fraction",
    "check_int",
    "check_number",
    "check_path",
    "check_seed",
    "describe",
]

SEED_RANGE = (-(2**63), 2**64 - 1)
"""Seeds ``torch.Generator.manual_seed`` accepts."""


def describe(value: Any) -> str:
    """``value`` for an error message: its repr (shortened) and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_int(
    name: str,
    value: Any,
    *,
    least: int | None = None,
    most: int | None = None,
    error: type[VisionKitError] = ConfigurationError,
) -> int:
    """``value`` as an ``int`` in ``[least, most]``; NumPy and 0-d tensor integers are accepted.

    Example:
        >>> check_int("batch_size", 4, least=1)
        4
        >>> check_int("batch_size", 1.5, least=1)
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: batch_size must be an integer >= 1, got 1.5 (float)
    """
    bounds = _bounds(least, most)
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise error(f"{name} must be an integer{bounds}, got {describe(value)}")
    try:
        number = operator.index(value)
    except TypeError:  # e.g. a float tensor, which has __index__ but refuses it
        raise error(f"{name} must be an integer{bounds}, got {describe(value)}") from None
    if (least is not None and number < least) or (most is not None and number > most):
        raise error(f"{name} must be an integer{bounds}, got {number}")
    return number


def check_number(
    name: str,
    value: Any,
    *,
    least: float | None = None,
    below: float | None = None,
    finite: bool = True,
    error: type[VisionKitError] = ConfigurationError,
) -> float:
    """``value`` as a ``float``, finite unless ``finite=False``, ``>= least`` and ``< below``."""
    if least is not None and below is not None:
        expected = f"{name} must be in [{least:g}, {below:g})"
    else:
        expected = f"{name} must be a {'finite ' if finite else ''}number"
        expected += f" >= {least:g}" if least is not None else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{expected}, got {describe(value)}")
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise error(f"{expected}, got {number}")
    if (least is not None and number < least) or (below is not None and number >= below):
        raise error(f"{expected}, got {number}")
    return number


def check_fraction(name: str, value: Any) -> float:
    """A fraction in ``[0, 1)``, e.g. a share of samples held out or a dropout probability."""
    return check_number(name, value, least=0.0, below=1.0)


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy booleans too), not a truthy string such as ``"no"``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigurationError(f"{name} must be True or False, got {describe(value)}")


def check_seed(name: str, value: Any) -> int:
    """A seed for ``torch.Generator.manual_seed``: an integer in ``[-2**63, 2**64 - 1]``."""
    low, high = SEED_RANGE
    seed = check_int(name, value)
    if not low <= seed <= high:
        raise ConfigurationError(
            f"{name} must lie between -2**63 and 2**64 - 1 (what torch.manual_seed accepts), "
            f"got {seed}: reduce it, e.g. {name} % 2**32"
        )
    return seed


def check_path(name: str, value: Any) -> Path:
    """A ``str`` or ``os.PathLike`` path (not ``None``, bytes or a number) as a ``Path``."""
    if isinstance(value, str) or (isinstance(value, os.PathLike) and not isinstance(value, bytes)):
        path = os.fspath(value)
        if isinstance(path, str):
            if "\x00" in path:
                raise ConfigurationError(f"{name} must not contain NUL characters, got {path!r}")
            return Path(path)
    raise ConfigurationError(
        f"{name} must be a path (a str or pathlib.Path), got {describe(value)}"
    )


def _bounds(least: int | None, most: int | None) -> str:
    if least is not None and most is not None:
        return f" in {least}..{most}"
    if least is not None:
        return f" >= {least}"
    if most is not None:
        return f" <= {most}"
    return ""
