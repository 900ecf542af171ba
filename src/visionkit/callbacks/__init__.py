"""Callbacks: code that runs at fixed points of training.

Subclass :class:`Callback` and override only the hooks you need; subclass
:class:`MonitorCallback` to watch a metric in min or max mode.
"""

from visionkit.callbacks.base import Batch, Callback, MonitorCallback, StepOutput
from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.callbacks.early_stopping import EarlyStopping
from visionkit.callbacks.progress import ProgressBar

__all__ = [
    "Batch",
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgressBar",
    "StepOutput",
]
