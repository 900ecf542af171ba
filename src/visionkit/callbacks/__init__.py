"""Callbacks: code that runs at fixed points of training.

Subclass [`Callback`][visionkit.callbacks.Callback] and override only the hooks you need; subclass
[`MonitorCallback`][visionkit.callbacks.MonitorCallback] to watch a metric in min or max mode.
"""

from visionkit.callbacks.averaging import EMA, SWA, WeightAveraging
from visionkit.callbacks.base import Batch, Callback, MonitorCallback, StepOutput
from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.callbacks.csv_logger import CSVLogger
from visionkit.callbacks.early_stopping import EarlyStopping
from visionkit.callbacks.finetune import FineTune, fine_tune_param_groups
from visionkit.callbacks.lr_monitor import LearningRateMonitor
from visionkit.callbacks.mixing import CutMix, MixUp, MixUpCutMix
from visionkit.callbacks.mlflow import MLflowLogger
from visionkit.callbacks.nan import TerminateOnNaN
from visionkit.callbacks.progress import ProgressBar
from visionkit.callbacks.tensorboard import TensorBoardLogger

__all__ = [
    "Batch",
    "CSVLogger",
    "Callback",
    "CutMix",
    "EMA",
    "EarlyStopping",
    "FineTune",
    "LearningRateMonitor",
    "MLflowLogger",
    "MixUp",
    "MixUpCutMix",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgressBar",
    "SWA",
    "StepOutput",
    "TensorBoardLogger",
    "TerminateOnNaN",
    "WeightAveraging",
    "fine_tune_param_groups",
]
