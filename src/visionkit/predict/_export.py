"""Exported models: ``torch.export``, TorchScript and ONNX files that run without visionkit.

This module works on a model with its class names and preprocessing; the
[`Predictor`][visionkit.Predictor] and [`export`][visionkit.predict.export] call it.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
from torch import nn
from typing_extensions import Self

from visionkit._images import Preprocess
from visionkit.exceptions import CheckpointError, ConfigurationError, VisionKitError
from visionkit.predict._onnx import onnx_model_bytes, read_onnx
from visionkit.predict.checkpoint import atomic_write, unwrap_model

__all__ = [
    "ExportFormat",
    "ExportOptions",
    "export_model",
    "exported_parts",
    "load_exported",
    "resolve_format",
]

ExportFormat = Literal["torch.export", "torchscript", "onnx"]
"""Formats [`export`][visionkit.predict.export] writes: ``torch.export``, TorchScript, ONNX."""
_FORMATS = ("torch.export", "torchscript", "onnx")


class ExportOptions(TypedDict, total=False):
    """The options of [`export`][visionkit.predict.export] that ``Predictor.export`` takes."""

    format: ExportFormat | None
    example_input: torch.Tensor | None
    dynamic_batch: bool
    check: bool


_METADATA = "visionkit.json"
# How close an exported model's logits must be to the original's: ONNX Runtime's kernels
# sum in another order than PyTorch's, so its outputs differ in the last bits.
_TOLERANCE = {"torch.export": 1e-5, "torchscript": 1e-5, "onnx": 1e-4}


def export_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None,
    preprocess: Preprocess,
    format: ExportFormat | None = None,
    example_input: torch.Tensor | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
) -> Path:
    """Write ``model`` (in eval mode) and its metadata; see [`export`][visionkit.predict.export]."""
    path = Path(path)
    chosen = resolve_format(format, path)
    model = unwrap_model(model)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    example = _example_input(preprocess, example_input).to(device)
    metadata = _metadata(model, classes, preprocess)
    path = _write(model, example, path, chosen, dynamic_batch, metadata)
    if check:
        _check_outputs(model, load_exported(path)[0], example, path, chosen)
    return path


def resolve_format(format: ExportFormat | None, path: Path) -> ExportFormat:
    """``format``, checked, or the one the suffix of ``path`` calls for."""
    if format is None:
        return "onnx" if path.suffix.lower() == ".onnx" else "torch.export"
    if format not in _FORMATS:
        raise ConfigurationError(
            f"format must be 'torch.export', 'torchscript' or 'onnx' (or None to choose by "
            f"the file's suffix: .onnx for ONNX), got {format!r}"
        )
    return format


def _write(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    format: ExportFormat,
    dynamic_batch: bool,
    metadata: dict[str, Any],
) -> Path:
    # Serialised in memory first: torch's writers abort the whole process (a C++
    # std::terminate) when a file write fails part-way, e.g. on a full disk.
    if format == "onnx":
        data = onnx_model_bytes(model, example, dynamic_batch=dynamic_batch, metadata=metadata)
        return atomic_write(path, lambda stream: stream.write(data), kind="exported model")
    files = {_METADATA: json.dumps(metadata, default=str)}
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
    """Load a file written by [`export`][visionkit.predict.export]: the module and its metadata.

    The metadata holds ``classes``, ``preprocess`` and ``model`` as written by visionkit.
    The module maps a preprocessed float batch ``(N, C, H, W)`` to logits. An ONNX file
    (``.onnx``, or any file that is not a zip archive) is run by ONNX Runtime on the CPU
    through an [`OnnxModule`][visionkit.predict.OnnxModule] (the ``onnx`` extra).

    Raises:
        CheckpointError: if the file is missing or is not an exported model.
        ConfigurationError: for an ONNX file when ONNX Runtime is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported model not found: {path}")
    if _is_onnx(path):
        onnx_module, metadata = read_onnx(path)
        return onnx_module, metadata
    files = {_METADATA: ""}
    loaders = [_load_program, _load_script]
    if path.suffix != ".pt2":
        loaders.reverse()
    try:
        module = loaders[0](path, files)
    except Exception:
        try:
            module = loaders[1](path, files)
        except Exception as error:
            raise CheckpointError(
                f"cannot read {path} as an exported model ({type(error).__name__}): pass a "
                "file written by visionkit.predict.export, or export it again"
            ) from error
    raw = files[_METADATA]
    text = raw.decode() if isinstance(raw, bytes) else raw
    return module, json.loads(text) if text else {}


def exported_parts(
    path: str | os.PathLike[str],
) -> tuple[nn.Module, list[str] | None, Preprocess | None]:
    """The module, class names and preprocessing of an exported file, for a ``Predictor``."""
    module, metadata = load_exported(path)
    classes = metadata.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise CheckpointError(f"{path}: 'classes' must be a list of strings, got {classes!r:.80}")
    preprocess = None
    if metadata.get("preprocess"):
        try:
            preprocess = Preprocess.from_dict(metadata["preprocess"])
        except (VisionKitError, TypeError, AttributeError) as error:
            raise CheckpointError(
                f"{path}: invalid 'preprocess' metadata {metadata['preprocess']!r:.120}: {error}"
            ) from None
    return _Exported(module), classes, preprocess


class _Exported(nn.Module):
    """An exported module whose mode never changes (``torch.export`` programs refuse it)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.module(batch)
        return result

    def train(self, mode: bool = True) -> Self:
        self.training = mode
        return self


def _is_onnx(path: Path) -> bool:
    if path.suffix.lower() == ".onnx":
        return True
    with path.open("rb") as stream:
        return stream.read(4) != b"PK\x03\x04"  # torch.export and TorchScript files are zips


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


def _example_input(preprocess: Preprocess, given: torch.Tensor | None) -> torch.Tensor:
    if given is not None:
        return given.float()
    shape = preprocess.input_shape
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
            stacklevel=4,
        )
        return torch.export.export(model, (example,))


def _check_outputs(
    original: nn.Module, exported: nn.Module, example: torch.Tensor, path: Path, format: str
) -> None:
    with torch.no_grad():
        expected = original(example).float().cpu()
        got = exported(example.cpu() if _on_cpu(exported) else example).float().cpu()
    tolerance = _TOLERANCE[format]
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=tolerance):
        difference = (
            f"max difference {(got - expected).abs().max().item():.3g}"
            if got.shape == expected.shape
            else f"shape {tuple(got.shape)} instead of {tuple(expected.shape)}"
        )
        raise ConfigurationError(
            f"the model exported to {path} gives different outputs than the original "
            f"({difference}); export with another format, or check the model for "
            "input-dependent Python control flow"
        )


def _on_cpu(module: nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in module.parameters())


def _metadata(
    model: nn.Module, classes: list[str] | None, preprocess: Preprocess
) -> dict[str, Any]:
    from visionkit.models import model_spec

    spec = model_spec(model)
    return {
        "classes": classes,
        "preprocess": preprocess.to_dict(),
        "model": {"name": spec.name, "kwargs": spec.kwargs} if spec else None,
    }
