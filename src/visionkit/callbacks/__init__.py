"""Callbacks: code that runs at fixed points of training.

Subclass :class:`Callback` and override only the hooks you need; subclass
:class:`MonitorCallback` to watch a metric in min or max mode.
"""

from visionkit.callbacks.base import Batch, Callback, MonitorCallback, StepOutput
from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.callbacks.csv_logger import CSVLogger
from visionkit.callbacks.early_stopping import EarlyStopping
from visionkit.callbacks.finetune import FineTune, fine_tune_param_groups
from visionkit.callbacks.lr_monitor import LearningRateMonitor
from visionkit.callbacks.nan import TerminateOnNaN
from visionkit.callbacks.progress import ProgressBar
from visionkit.callbacks.tensorboard import TensorBoardLogger

__all__ = [
    "Batch",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FineTune",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgressBar",
    "StepOutput",
    "TensorBoardLogger",
    "TerminateOnNaN",
    "fine_tune_param_groups",
]
