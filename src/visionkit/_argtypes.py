"""Types for command-line options: a bad value is refused by the parser, naming its flag.

``argparse`` reports an ``ArgumentTypeError`` as ``argument --epochs: <message>``, so the user
reads the flag they typed (not the Python argument it becomes) before any data is loaded.
"""

from __future__ import annotations

import argparse
import re

from visionkit._device import resolve_device
from visionkit.exceptions import ConfigurationError

__all__ = ["device_name", "positive_int"]


def positive_int(text: str) -> int:
    """A whole number >= 1.

    Examples:
        >>> positive_int("3")
        3
        >>> positive_int("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a whole number >= 1, got '0'
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def device_name(text: str) -> str:
    """A device visionkit can use here: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Examples:
        >>> device_name("cpu")
        'cpu'
        >>> device_name("gpu")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: unknown device 'gpu': use 'auto', 'cpu', ...
    """
    try:
        resolve_device(text)
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(_as_flag(str(error))) from None
    return text


def _as_flag(message: str) -> str:
    """A device message's fix written as the flag (``--device cpu``), not as Python."""
    message = message.replace("device='auto' or 'cpu'", "--device auto or --device cpu")
    return re.sub(r"device='([^']*)'", r"--device \1", message)
