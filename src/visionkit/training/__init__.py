"""Training: the ``Trainer``, its metrics and its history."""

from visionkit._threads import available_cpus, default_num_threads
from visionkit.training.distributed import DDPStrategy, Strategy
from visionkit.training.history import History
from visionkit.training.metrics import ClassificationMetrics, EvaluationReport
from visionkit.training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "ClassificationMetrics",
    "DDPStrategy",
    "EvaluationReport",
    "History",
    "NonFiniteLossError",
    "Strategy",
    "Trainer",
    "available_cpus",
    "default_num_threads",
]
