"""Prediction: the ``Predictor``, the checkpoint format, plots and export."""

from visionkit._images import ImageInput, Preprocess
from visionkit.plots import (
    plot_confusion_matrix,
    plot_history,
    plot_prediction_grid,
    plot_topk,
)
from visionkit.predict._deploy import ParityReport, check_onnx_parity, export
from visionkit.predict._export import ExportFormat, ExportOptions, load_exported
from visionkit.predict._onnx import OnnxModule
from visionkit.predict.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
)
from visionkit.predict.interpretation import Interpretation
from visionkit.predict.predictor import Prediction, Predictor

__all__ = [
    "FORMAT_VERSION",
    "ExportFormat",
    "ExportOptions",
    "ImageInput",
    "Interpretation",
    "OnnxModule",
    "ParityReport",
    "Prediction",
    "Predictor",
    "Preprocess",
    "check_onnx_parity",
    "export",
    "load_checkpoint",
    "load_exported",
    "make_checkpoint",
    "plot_confusion_matrix",
    "plot_history",
    "plot_prediction_grid",
    "plot_topk",
    "save_checkpoint",
]
