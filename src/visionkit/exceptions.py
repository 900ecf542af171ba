"""Exceptions raised by visionkit.

Every error visionkit raises on purpose is a [`VisionKitError`][visionkit.VisionKitError], so user
code can catch them all with one ``except``. The subclasses tell apart the three places things go
wrong: data on disk, checkpoints, and the configuration of a model or a run.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "DataError",
    "NonFiniteLossError",
    "VisionKitError",
]


class VisionKitError(Exception):
    """Base class of every error raised by visionkit.

    Messages say what was expected, what was found, and what to do about it.
    """


class DataError(VisionKitError, ValueError):
    """A data set on disk, or a sample in it, is missing, malformed or inconsistent."""


class CheckpointError(VisionKitError):
    """A checkpoint file cannot be written, read, trusted or used for the requested model."""


class ConfigurationError(VisionKitError, ValueError):
    """An argument, model or combination of options cannot work together."""


class NonFiniteLossError(VisionKitError, FloatingPointError):
    """The loss or the weights became NaN or infinite; training stopped, nothing was saved.

    The message says which came first: the input batch, the weights (after a step whose
    gradients were not finite), the model's outputs, or the loss itself.
    """
