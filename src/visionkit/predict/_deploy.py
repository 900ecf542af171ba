"""Deploying a model: [`export`][visionkit.predict.export], and checking an exported file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit._checks import check_number
from visionkit.predict._export import ExportFormat, resolve_format
from visionkit.predict.predictor import Predictor

__all__ = ["ParityReport", "check_onnx_parity", "export"]


def export(
    source: str | os.PathLike[str] | Predictor | nn.Module,
    path: str | os.PathLike[str],
    *,
    format: ExportFormat | None = None,
    example_input: torch.Tensor | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
) -> Path:
    """Export a model to a file that runs without visionkit, then check its outputs.

    The exported model maps a preprocessed float batch ``(N, C, H, W)`` to logits; the
    class names and preprocessing of the checkpoint travel inside the file (see
    [`load_exported`][visionkit.predict.load_exported] and
    [`Predictor.from_exported`][visionkit.Predictor.from_exported]).

    Args:
        source: A checkpoint path, a [`Predictor`][visionkit.Predictor], or a model.
        path: Where to write: ``.pt2`` for ``torch.export``, ``.pt`` for TorchScript,
            ``.onnx`` for ONNX.
        format: ``"torch.export"`` (``torch.export.save``; load with ``torch.export.load``),
            ``"torchscript"`` (traced; load with ``torch.jit.load``; TorchScript is
            deprecated in recent PyTorch releases), ``"onnx"`` (ONNX opset 18, written by
            PyTorch's ``torch.export``-based exporter; needs the ``onnx`` extra), or
            ``None``: ``"onnx"`` for a ``.onnx`` path, else ``"torch.export"``.
        example_input: A batch to export with. Defaults to two random images of the
            checkpoint's input shape; needed for a bare model or a checkpoint whose input
            size is not fixed.
        dynamic_batch: Let the exported model take any batch size (``torch.export`` and
            ONNX; a traced TorchScript model accepts any batch size unless the model fixes
            it). A model whose forward fixes the batch size is exported with a fixed one,
            with a warning.
        check: Run the exported model (ONNX: in ONNX Runtime) on ``example_input`` and
            raise if its outputs differ from the original model's.

    Returns:
        The path written (atomically: a failed export leaves an earlier file as it was).

    Raises:
        ConfigurationError: for an unknown format, a missing example input, a missing
            ``onnx`` extra, a model the format cannot hold (naming the layer that fails,
            when it can be found), or an exported model whose outputs differ.

    Examples:
        >>> import tempfile
        >>> from visionkit.models import create_model
        >>> model = create_model("mlp", in_features=4, hidden=[3], num_classes=2)
        >>> folder = Path(tempfile.mkdtemp())
        >>> export(model, folder / "tiny.pt2", example_input=torch.zeros(2, 1, 2, 2)).name
        'tiny.pt2'
    """
    resolve_format(format, Path(path))
    was_training = isinstance(source, nn.Module) and source.training
    predictor = _as_predictor(source)  # puts the model in eval mode
    try:
        return predictor.export(
            path,
            format=format,
            example_input=example_input,
            dynamic_batch=dynamic_batch,
            check=check,
        )
    finally:
        if was_training:
            predictor.model.train()


def _as_predictor(source: str | os.PathLike[str] | Predictor | nn.Module) -> Predictor:
    if isinstance(source, Predictor):
        return source
    if isinstance(source, nn.Module):
        parameter = next(source.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        return Predictor(source, device=device)
    return Predictor.from_checkpoint(source, device="cpu")


@dataclass(frozen=True)
class ParityReport:
    """How an exported model's predictions compare with the original model's.

    Attributes:
        num_images: Images compared.
        max_abs_diff: Largest absolute difference of one class probability.
        top1_mismatches: Indices of the images whose most probable class differs (a
            difference within ``atol`` of a tie does not count).
        same_classes: Whether both models name their classes alike.
        atol: The largest ``max_abs_diff`` that passes.
    """

    num_images: int
    max_abs_diff: float
    top1_mismatches: tuple[int, ...]
    same_classes: bool
    atol: float

    @property
    def passed(self) -> bool:
        """Same class names, same top-1 class on every image and probabilities within ``atol``."""
        return self.same_classes and not self.top1_mismatches and self.max_abs_diff <= self.atol

    def __str__(self) -> str:
        same = self.num_images - len(self.top1_mismatches)
        names = "" if self.same_classes else ", different class names"
        return (
            f"{'passed' if self.passed else 'FAILED'}: {self.num_images} images, max "
            f"probability difference {self.max_abs_diff:.2e} (tolerance {self.atol:.0e}), "
            f"same top-1 class on {same}/{self.num_images}{names}"
        )


def check_onnx_parity(
    reference: str | os.PathLike[str] | Predictor,
    exported: str | os.PathLike[str] | Predictor,
    images: Any,
    *,
    atol: float = 1e-4,
    batch_size: int = 64,
) -> ParityReport:
    """Predict ``images`` with a model and its exported file, and compare the results.

    Each side reads the images with its own preprocessing: the checkpoint's for the
    reference, the exported file's metadata for the export, so the whole deployed path is
    compared. Made for ONNX files (run in ONNX Runtime), it takes any file
    [`export`][visionkit.predict.export] writes.

    Args:
        reference: The original: a checkpoint path or a [`Predictor`][visionkit.Predictor].
        exported: The exported file (or a ``Predictor`` made with
            [`Predictor.from_exported`][visionkit.Predictor.from_exported]).
        images: Anything [`Predictor.predict`][visionkit.Predictor.predict]
            takes: files, a folder, raw arrays.
        atol: The largest probability difference that passes.
        batch_size: Images per forward pass.

    Returns:
        A [`ParityReport`][visionkit.predict.ParityReport]; ``report.passed`` tells whether
        the two agree.
    """
    atol = check_number("atol", atol, least=0.0)
    ours = reference if isinstance(reference, Predictor) else Predictor.from_checkpoint(reference)
    theirs = exported if isinstance(exported, Predictor) else Predictor.from_exported(exported)
    expected = ours.predict_proba(images, batch_size=batch_size)
    got = theirs.predict_proba(images, batch_size=batch_size)
    if got.shape != expected.shape:
        return ParityReport(len(expected), float("inf"), tuple(range(len(expected))), False, atol)
    return ParityReport(
        num_images=len(expected),
        max_abs_diff=float((got - expected).abs().max()) if len(expected) else 0.0,
        top1_mismatches=_top1_mismatches(expected, got, atol),
        same_classes=_names(ours) == _names(theirs),
        atol=atol,
    )


def _top1_mismatches(expected: torch.Tensor, got: torch.Tensor, atol: float) -> tuple[int, ...]:
    ours, theirs = expected.argmax(dim=1), got.argmax(dim=1)
    rows = torch.arange(len(expected))
    # the exported top class may win a near-tie of the original's (within atol)
    margin = expected[rows, ours] - expected[rows, theirs]
    return tuple(int(i) for i in ((ours != theirs) & (margin > atol)).nonzero().flatten())


def _names(predictor: Predictor) -> Sequence[str] | None:
    return list(predictor.classes) if predictor.classes is not None else None
