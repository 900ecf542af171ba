"""Argument checks shared by the public API: one clear error instead of a failure deep inside.

Each check returns the value in its plain Python type (``numpy.int64(3)`` becomes ``3``), so what is
stored, recorded in checkpoints or passed to torch is always a builtin. ``bool`` is refused where a
number is expected: ``True`` as a count or a fraction is a mistake, not a 1. Every error is a
[`ConfigurationError`][visionkit.ConfigurationError] (a ``ValueError``) unless the caller asks for
another [`VisionKitError`][visionkit.VisionKitError], and says what was expected, what was found and
what to pass instead.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import string
from collections.abc import Iterable, Mapping, Set
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.exceptions import ConfigurationError, VisionKitError

__all__ = [
    "SEED_RANGE",
    "check_bool",
    "check_file_name",
    "check_fraction",
    "check_int",
    "check_items",
    "check_name_template",
    "check_number",
    "check_optional_int",
    "check_optional_number",
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
    hint: str = "",
) -> int:
    """``value`` as an ``int`` in ``[least, most]``; NumPy and 0-d tensor integers are accepted.

    ``hint`` (what to pass instead) is appended to the message after a colon.

    Examples:
        >>> check_int("batch_size", 4, least=1)
        4
        >>> check_int("batch_size", 1.5, least=1)
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: batch_size must be an integer >= 1, got 1.5 (float)
    """
    expected = f"{name} must be an integer{_bounds(least, most)}"
    return _checked_int(expected, value, least, most, error, hint)


def check_optional_int(
    name: str,
    value: Any,
    *,
    least: int | None = None,
    most: int | None = None,
    hint: str = "",
) -> int | None:
    """``None``, or ``value`` as an ``int`` in ``[least, most]`` (see `check_int`).

    Examples:
        >>> check_optional_int("max_steps", 0, least=1)
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: max_steps must be an integer >= 1 or None, got 0
    """
    if value is None:
        return None
    expected = f"{name} must be an integer{_bounds(least, most)} or None"
    return _checked_int(expected, value, least, most, ConfigurationError, hint)


def _checked_int(
    expected: str,
    value: Any,
    least: int | None,
    most: int | None,
    error: type[VisionKitError],
    hint: str,
) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise error(f"{expected}, got {describe(value)}{_hint(hint)}")
    try:
        number = operator.index(value)
    except TypeError:  # e.g. a float tensor, which has __index__ but refuses it
        raise error(f"{expected}, got {describe(value)}{_hint(hint)}") from None
    if (least is not None and number < least) or (most is not None and number > most):
        raise error(f"{expected}, got {number}{_hint(hint)}")
    return number


def check_number(
    name: str,
    value: Any,
    *,
    least: float | None = None,
    below: float | None = None,
    finite: bool = True,
    error: type[VisionKitError] = ConfigurationError,
    above: float | None = None,
    hint: str = "",
) -> float:
    """``value`` as a ``float``, finite unless ``finite=False``, ``>= least`` and ``< below``.

    ``above`` is a strict lower bound (``> above``), for values such as a clipping norm that
    must be positive; ``hint`` (what to pass instead) is appended to the message.
    """
    expected = _expected_number(name, least, below, above, finite)
    return _checked_number(expected, value, least, below, above, finite, error, hint)


def check_optional_number(
    name: str,
    value: Any,
    *,
    least: float | None = None,
    above: float | None = None,
    finite: bool = True,
    hint: str = "",
) -> float | None:
    """``None``, or ``value`` as a ``float`` (see `check_number`).

    Examples:
        >>> check_optional_number("clip", -1.0, above=0.0)
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: clip must be a finite number > 0 or None, got -1.0
    """
    if value is None:
        return None
    expected = _expected_number(name, least, None, above, finite) + " or None"
    return _checked_number(expected, value, least, None, above, finite, ConfigurationError, hint)


def _expected_number(
    name: str, least: float | None, below: float | None, above: float | None, finite: bool
) -> str:
    if least is not None and below is not None:
        return f"{name} must be in [{least:g}, {below:g})"
    expected = f"{name} must be a {'finite ' if finite else ''}number"
    expected += f" >= {least:g}" if least is not None else ""
    expected += f" > {above:g}" if above is not None else ""
    return expected


def _checked_number(
    expected: str,
    value: Any,
    least: float | None,
    below: float | None,
    above: float | None,
    finite: bool,
    error: type[VisionKitError],
    hint: str,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{expected}, got {describe(value)}{_hint(hint)}")
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise error(f"{expected}, got {number}{_hint(hint)}")
    if (
        (least is not None and number < least)
        or (below is not None and number >= below)
        or (above is not None and number <= above)
    ):
        raise error(f"{expected}, got {number}{_hint(hint)}")
    return number


def check_fraction(name: str, value: Any) -> float:
    """A fraction in ``[0, 1)``, e.g. a share of samples held out or a dropout probability."""
    return check_number(name, value, least=0.0, below=1.0)


def check_items(
    name: str,
    value: Any,
    *,
    lengths: tuple[int, ...],
    what: str,
    error: type[VisionKitError] = ConfigurationError,
) -> tuple[Any, ...]:
    """The items of a list, tuple or array ``value``, as a tuple of one of ``lengths``.

    Only the container is checked (not a ``str``, ``bytes``, mapping, set or scalar); check
    each item with `check_int` or `check_number`. ``what`` describes the items,
    e.g. ``"(height, width)"``.

    Examples:
        >>> check_items("size", [28, 28], lengths=(2,), what="(height, width)")
        (28, 28)
        >>> check_items("size", 28, lengths=(2,), what="(h, w)")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: size must be a sequence of 2 ..., got 28 (int)
    """
    count = " or ".join(str(n) for n in lengths)
    expected = f"{name} must be a sequence of {count} values {what}"
    unordered = (str, bytes, bytearray, Mapping, Set)
    if isinstance(value, unordered) or not isinstance(value, Iterable):
        raise error(f"{expected}, got {describe(value)}")
    try:
        items = tuple(value)
    except (TypeError, ValueError, RuntimeError):  # e.g. a 0-d array or tensor
        raise error(f"{expected}, got {describe(value)}") from None
    if len(items) not in lengths:
        raise error(f"{expected}, got {len(items)} values: {describe(value)}")
    return items


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


def check_file_name(name: str, value: Any, *, example: str, folder: str) -> str:
    """A plain file name (no folder part, not absolute, not ``"."`` or ``".."``) as a ``str``.

    ``example`` is a valid name to suggest and ``folder`` the argument that holds folders, so
    ``"a/b.csv"`` or ``"/abs.csv"`` cannot write outside the folder the caller chose.

    Examples:
        >>> check_file_name("name", "a/b.csv", example="m.csv", folder="dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: name must be a plain file name ... 'a/b.csv' (str)
    """
    if not isinstance(value, str) or not _plain_name(value):
        raise ConfigurationError(_not_plain(name, value, example, folder, "file name"))
    return value


def check_name_template(name: str, value: Any, *, example: str, folder: str) -> str:
    """A ``str.format`` template of a plain file name, e.g. ``"epoch{epoch:03.0f}"``.

    Its literal text must make a plain file name (see `check_file_name`); the
    replacement fields may name any key, ``"{train/loss:.4f}"`` included, as they are
    filled with numbers.

    Examples:
        >>> check_name_template("name", "../e{epoch}", example="e{epoch}", folder="dir")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: name must be a plain file name template ...
    """
    if not isinstance(value, str):
        raise ConfigurationError(_not_plain(name, value, example, folder, "file name template"))
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as error:
        raise ConfigurationError(
            f"{name} must be a format template such as {example!r}, got {value!r}: {error} "
            "(write a literal brace as '{{' or '}}')"
        ) from None
    literal = "".join(text + ("x" if field is not None else "") for text, field, _, _ in parts)
    if not _plain_name(literal):
        raise ConfigurationError(_not_plain(name, value, example, folder, "file name template"))
    return value


def _plain_name(value: str) -> bool:
    return value not in ("", ".", "..") and "\x00" not in value and Path(value).name == value


def _not_plain(name: str, value: Any, example: str, folder: str, what: str) -> str:
    return (
        f"{name} must be a plain {what} such as {example!r} (no folder part: "
        f"put folders in {folder}), got {describe(value)}"
    )


def _hint(hint: str) -> str:
    return f": {hint}" if hint else ""


def _bounds(least: int | None, most: int | None) -> str:
    if least is not None and most is not None:
        return f" in {least}..{most}"
    if least is not None:
        return f" >= {least}"
    if most is not None:
        return f" <= {most}"
    return ""
