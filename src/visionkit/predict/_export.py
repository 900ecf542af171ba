"""Export a trained model to TorchScript or ``torch.export`` for use without visionkit."""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from visionkit.exceptions import ConfigurationError
from visionkit.predict.checkpoint import atomic_write, unwrap_model
from visionkit.predict.predictor import Predictor

__all__ = ["ExportFormat", "export", "load_exported"]

ExportFormat = Literal["torch.export", "torchscript"]
"""Formats :func:`export` writes: ``torch.export`` (``.pt2``) or TorchScript."""
_METADATA = "visionkit.json"


def export(
    source: str | os.PathLike[str] | Predictor | nn.Module,
    path: str | os.PathLike[str],
    *,
    format: ExportFormat = "torch.export",
    example_input: torch.Tensor | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
) -> Path:
    """Export a model to a file that runs with plain PyTorch, then check its outputs.

    The exported program maps a preprocessed float batch ``(N, C, H, W)`` to logits; the
    class names and preprocessing of the checkpoint are stored beside it in the file's
    ``visionkit.json`` extra file (see :func:`load_exported`).

    Args:
        source: A checkpoint path, a :class:`Predictor`, or a model.
        path: Where to write: ``.pt2`` for ``torch.export``, ``.pt`` for TorchScript.
        format: ``"torch.export"`` (``torch.export.save``; load with ``torch.export.load``)
            or ``"torchscript"`` (traced; load with ``torch.jit.load``; TorchScript is
            deprecated in recent PyTorch releases).
        example_input: A batch to trace with. Defaults to two zero images of the
            checkpoint's input shape; needed for a bare model or a checkpoint whose input
            size is not fixed.
        dynamic_batch: Let the exported program take any batch size (``torch.export``; a
            traced TorchScript model accepts any batch size unless the model fixes it).
        check: Run the exported model on ``example_input`` and raise if its outputs
            differ from the original model's.

    Returns:
        The path written.

    Raises:
        ConfigurationError: for an unknown format, a missing example input, or an
            exported model whose outputs differ.
    """
    if format not in ("torch.export", "torchscript"):
        raise ConfigurationError(f"format must be 'torch.export' or 'torchscript', got {format!r}")
    was_training = isinstance(source, nn.Module) and source.training
    predictor = _as_predictor(source)  # puts the model in eval mode
    model = unwrap_model(predictor.model)
    try:
        example = _example_input(predictor, example_input).to(predictor.device)
        path = _write(model, example, Path(path), format, dynamic_batch, _metadata(predictor))
        if check:
            _check_outputs(model, load_exported(path)[0], example, path)
    finally:
        if was_training:
            predictor.model.train()
    return path


def _write(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    format: ExportFormat,
    dynamic_batch: bool,
    metadata: dict[str, Any],
) -> Path:
    files = {_METADATA: json.dumps(metadata, default=str)}
    # Serialised in memory first: torch's writers abort the whole process (a C++
    # std::terminate) when a file write fails part-way, e.g. on a full disk.
    buffer = io.BytesIO()
    with torch.no_grad():
        if format == "torch.export":
            program = _torch_export(model, example, dynamic_batch)
            torch.export.save(program, buffer, extra_files=files)
        else:
            with warnings.catch_warnings():
                # "torch.jit is deprecated" and tracer warnings: the outputs are checked after
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
                torch.jit.save(traced, buffer, _extra_files=files)
    return atomic_write(
        path, lambda stream: stream.write(buffer.getbuffer()), kind="exported model"
    )


def load_exported(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Load a file written by :func:`export`: the runnable module and its metadata.

    The metadata holds ``classes``, ``preprocess`` and ``model`` as written by visionkit.
    """
    path = Path(path)
    files = {_METADATA: ""}
    loaders = [_load_program, _load_script]
    if path.suffix != ".pt2":
        loaders.reverse()
    try:
        module = loaders[0](path, files)
    except Exception:
        module = loaders[1](path, files)
    raw = files[_METADATA]
    text = raw.decode() if isinstance(raw, bytes) else raw
    return module, json.loads(text) if text else {}


def _load_program(path: Path, files: dict[str, Any]) -> nn.Module:
    module: nn.Module = torch.export.load(path, extra_files=files).module()
    return module


def _load_script(path: Path, files: dict[str, Any]) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated"
        module: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), _extra_files=files, map_location="cpu"
        )
    return module


def _as_predictor(source: str | os.PathLike[str] | Predictor | nn.Module) -> Predictor:
    if isinstance(source, Predictor):
        return source
    if isinstance(source, nn.Module):
        parameter = next(source.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        return Predictor(source, device=device)
    return Predictor.from_checkpoint(source, device="cpu")


def _example_input(predictor: Predictor, given: torch.Tensor | None) -> torch.Tensor:
    if given is not None:
        return given.float()
    shape = predictor.preprocess.input_shape
    if shape is None:
        raise ConfigurationError(
            "cannot tell the model's input shape (no fixed size in the checkpoint's "
            "preprocessing): pass example_input=torch.zeros(2, C, H, W)"
        )
    generator = torch.Generator().manual_seed(0)  # leaves the global RNG alone
    return torch.rand((2, *shape), generator=generator)


def _torch_export(model: nn.Module, example: torch.Tensor, dynamic: bool) -> Any:
    shapes = ({0: torch.export.Dim("batch", max=1 << 20)},) if dynamic else None
    try:
        return torch.export.export(model, (example,), dynamic_shapes=shapes)
    except Exception as error:
        if not dynamic:
            raise
        # some models specialise on the batch size; fall back to a fixed one
        warnings.warn(
            f"exporting with a dynamic batch size failed ({type(error).__name__}); the "
            f"exported program takes batches of exactly {example.shape[0]}",
            stacklevel=3,
        )
        return torch.export.export(model, (example,))


def _check_outputs(
    original: nn.Module, exported: nn.Module, example: torch.Tensor, path: Path
) -> None:
    with torch.no_grad():
        expected = original(example).cpu()
        got = exported(example.cpu() if _on_cpu(exported) else example).cpu()
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise ConfigurationError(
            f"the model exported to {path} gives different outputs than the original "
            f"(max difference {(got - expected).abs().max().item():.3g}); export with the "
            "other format, or check the model for input-dependent Python control flow"
        )


def _on_cpu(module: nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in module.parameters())


def _metadata(predictor: Predictor) -> dict[str, Any]:
    from visionkit.models import model_spec

    spec = model_spec(predictor.model)
    return {
        "classes": predictor.classes,
        "preprocess": predictor.preprocess.to_dict(),
        "model": {"name": spec.name, "kwargs": spec.kwargs} if spec else None,
    }
