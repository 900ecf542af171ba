"""Training: the ``Trainer``, its metrics and its history."""

from visionkit._threads import available_cpus, default_num_threads
from visionkit.training._signals import TrainingPreempted
from visionkit.training.distributed import DDPStrategy, Strategy
from visionkit.training.finetune import fine_tune
from visionkit.training.history import History
from visionkit.training.lr_finder import LRFinderResult, lr_find
from visionkit.training.metrics import ClassificationMetrics, EvaluationReport
from visionkit.training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "ClassificationMetrics",
    "DDPStrategy",
    "EvaluationReport",
    "History",
    "LRFinderResult",
    "NonFiniteLossError",
    "Strategy",
    "Trainer",
    "TrainingPreempted",
    "available_cpus",
    "default_num_threads",
    "fine_tune",
    "lr_find",
]
