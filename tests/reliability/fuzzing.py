"""Helpers shared by the fuzz tests: the clean-refusal oracle, counting and argument draws."""

from __future__ import annotations

import numbers
import operator
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

from visionkit import VisionKitError

Count = Callable[..., None]
Pair = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]
"""Strategies of the valid values of an argument, and of values it must refuse."""


def expect_clean(call: Callable[[], Any], *documented: type[BaseException]) -> tuple[bool, Any]:
    """``(True, result)``, or ``(False, error)`` for a clear refusal; anything else fails.

    A refusal is a :class:`VisionKitError` (or one of ``documented``) whose message says
    something: warnings raised as errors too, so a lossy cast cannot pass silently.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        try:
            result = call()
        except (VisionKitError, *documented) as error:
            message = str(error).strip()
            assert len(message) >= 20, f"uninformative {type(error).__name__}: {message!r}"  # noqa: PT017
            event("refused")
            return False, error
    event("accepted")
    return True, result


def checked(count: Count, target: str) -> None:
    """Record one example of ``target`` whose checks all passed."""
    count("fuzz_cases")
    count(f"fuzz_cases.{target}")


def as_int(value: Any) -> int | None:
    """The integer ``value`` stands for (NumPy and 0-d tensor integers too), else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_real(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def arguments(**pairs: Pair) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments: all valid half the time, else one of them (or all) from bad values.

    So a call with many arguments still succeeds often enough for its result to be checked,
    and each refusal can be traced to the argument that caused it.
    """
    names = list(pairs)

    @st.composite
    def draw_arguments(draw: st.DrawFn) -> dict[str, Any]:
        broken = (
            ()
            if draw(st.booleans())
            else draw(st.sampled_from([*[(name,) for name in names], tuple(names)]))
        )
        return {
            name: draw(pairs[name][1] if name in broken else pairs[name][0], label=name)
            for name in names
        }

    return draw_arguments()
