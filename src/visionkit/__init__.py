"""visionkit: train, evaluate and use image classifiers with PyTorch in a few lines.

Examples:
    >>> from visionkit import Trainer, Predictor, seed_everything
"""

from visionkit._device import resolve_device
from visionkit._seed import seed_everything
from visionkit._version import __version__
from visionkit.exceptions import CheckpointError, ConfigurationError, DataError, VisionKitError
from visionkit.predict import Prediction, Predictor
from visionkit.training import EvaluationReport, History, NonFiniteLossError, Trainer

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "DataError",
    "EvaluationReport",
    "History",
    "NonFiniteLossError",
    "Prediction",
    "Predictor",
    "Trainer",
    "VisionKitError",
    "__version__",
    "resolve_device",
    "seed_everything",
]
