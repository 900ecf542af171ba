"""ONNX: writing a model as an ONNX graph, and running one with ONNX Runtime.

The optional ``onnx`` extra brings the packages (``onnx``, ``onnxscript`` for PyTorch's
exporter, ``onnxruntime``); every function here names that extra when one is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visionkit.exceptions import CheckpointError, ConfigurationError

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "OnnxModule", "onnx_model_bytes", "read_onnx"]

OPSET = 18
"""ONNX operator set of exported models: the oldest that PyTorch's exporter writes."""
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_PREFIX = "visionkit."  # metadata_props keys: visionkit.classes, visionkit.preprocess, ...
_SEARCH_SECONDS = 60.0  # time spent looking for the layer that cannot be exported
_MAX_BYTES = 2**31 - 1  # protobuf's limit on one serialized message
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def require(*names: str) -> list[Any]:
    """The modules ``names``, or a ``ConfigurationError`` naming the ``onnx`` extra."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ConfigurationError(
                f"ONNX export and inference need the packages onnx, onnxscript and "
                f"onnxruntime, but {name} is not installed ({error}): install them with "
                'pip install "visionkit-torch[onnx]"'
            ) from error
    return modules


# ---------------------------------------------------------------------------- export
def onnx_model_bytes(
    model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool, metadata: dict[str, Any]
) -> bytes:
    """``model`` as a serialized ONNX model, with ``metadata`` in its ``metadata_props``.

    Each metadata entry is stored as JSON under the key ``visionkit.<name>``. The graph
    maps the float batch ``input`` to ``logits``, with a dynamic batch size when
    ``dynamic_batch`` is set and the model allows it (else a warning says so).

    Raises:
        ConfigurationError: if a package is missing, or the model cannot be exported; the
            message names the layer that fails when it can be found.
    """
    require("onnx", "onnxscript", "onnxruntime")  # the runtime checks the export
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise ConfigurationError(
            f"ONNX export needs PyTorch 2.5 or later (its torch.export-based exporter), found "
            f"{torch.__version__}: upgrade torch, or export with format='torch.export'"
        )
    try:
        program = _export(model, (example,), dynamic=dynamic_batch)
    except Exception as error:
        if not dynamic_batch or _kind(_root_cause(error)) != "other":  # not the batch size
            raise _export_error(model, example, error) from error
        try:
            program = _export(model, (example,), dynamic=False)
        except Exception:
            raise _export_error(model, example, error) from error
    proto = program.model_proto
    fixed = _fixed_batch(proto)
    if dynamic_batch and fixed is not None:
        warnings.warn(
            f"{type(model).__name__} could not be exported to ONNX with a dynamic batch size "
            f"(its forward fixes the batch size); the ONNX model takes batches of exactly "
            f"{fixed}, and visionkit pads the last batch to that size when it runs the model",
            stacklevel=4,
        )
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = _PREFIX + key, json.dumps(value, default=str)
    if proto.ByteSize() > _MAX_BYTES:
        raise ConfigurationError(
            f"{type(model).__name__} is {proto.ByteSize() / 2**30:.1f} GiB as an ONNX model, "
            "over the 2 GiB a single ONNX file can hold: export it with "
            "format='torch.export' instead"
        )
    serialized: bytes = proto.SerializeToString()
    return serialized


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], *, dynamic: bool) -> Any:
    """``torch.onnx.export`` (the ``torch.export``-based exporter), silenced."""
    batch = args[0].shape[0] if args[0].dim() else None
    dim = torch.export.Dim("batch")
    shapes = tuple({0: dim} if a.dim() and a.shape[0] == batch else None for a in args)
    names = [INPUT_NAME] if len(args) == 1 else None
    with _quiet(), torch.no_grad():
        return torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            output_names=[OUTPUT_NAME] if names else None,
            dynamic_shapes=shapes if dynamic else None,
            verbose=False,
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporter's progress lines, graph dumps and warnings from the user.

    Its errors still reach the caller; whether the exported model computes what the
    original does is checked by running both.
    """
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        yield


def _fixed_batch(proto: Any) -> int | None:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None


def _export_error(model: nn.Module, example: torch.Tensor, error: Exception) -> Exception:
    """A ``ConfigurationError`` naming the layer that cannot be exported and why."""
    cause = _root_cause(error)
    reason = f"{type(cause).__name__}: {_first_line(cause)}"
    name, layer = _failing_layer(model, example)
    if name:
        where = f"its layer {name!r} ({type(layer).__name__}) cannot be exported"
    else:
        where = "the code of its own forward (outside its layers) cannot be exported"
    return ConfigurationError(
        f"cannot export {type(model).__name__} to ONNX: {where} ({reason}). {_hint(cause)}"
    )


def _root_cause(error: BaseException) -> BaseException:
    seen = {id(error)}
    while True:
        cause = error.__cause__ or error.__context__
        if cause is None or id(cause) in seen:
            return error
        seen.add(id(cause))
        error = cause


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    line = lines[0] if lines else "no message"
    return line if len(line) <= 300 else line[:297] + "..."


def _kind(cause: BaseException) -> str:
    """``"data-dependent"``, ``"operator"`` (no ONNX implementation) or ``"other"``."""
    text = f"{type(cause).__name__} {cause}"
    if "DataDependent" in text or "data-dependent" in text:
        return "data-dependent"
    if "No ONNX function" in text or "DispatchError" in text:
        return "operator"
    return "other"


def _hint(cause: BaseException) -> str:
    kind = _kind(cause)
    if kind == "data-dependent":
        return (
            "The forward branches on the values of a tensor (Python if/while on a tensor, "
            "int() or .item() of one), which a graph cannot hold: compute both branches "
            "and pick with torch.where, or use torch.cond."
        )
    if kind == "operator":
        return (
            f"It uses an operator that has no ONNX implementation in opset {OPSET}: "
            "rewrite it with other operators, or export with format='torch.export'."
        )
    return (
        "Rewrite that code for torch.export (see the exporter's error above), or export "
        "with format='torch.export' or 'torchscript'."
    )


def _failing_layer(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Module]:
    """The deepest layer that fails to export on its own, with its qualified name.

    Each layer is exported alone, with the inputs it received when the model ran on
    ``example``; the search descends into the first child that fails. ``("", model)``
    means no child fails: the problem is in the model's own forward code.
    """
    inputs = _layer_inputs(model, example)
    deadline = time.monotonic() + _SEARCH_SECONDS
    path: list[str] = []
    module = model
    while time.monotonic() < deadline:
        # PyTorch's own layers (Conv2d, ReLU, ...) almost always export: try the others first
        children = sorted(module.named_children(), key=lambda item: _is_builtin_layer(item[1]))
        failing = next(
            (
                (name, child)
                for name, child in children
                if child in inputs and time.monotonic() < deadline and _fails(child, inputs[child])
            ),
            None,
        )
        if failing is None:
            break
        path.append(failing[0])
        module = failing[1]
    return ".".join(path), module


def _is_builtin_layer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn.") and not any(module.children())


def _layer_inputs(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, tuple[Any, ...]]:
    """The tensors each layer got on its first call when ``model`` ran on ``example``."""
    inputs: dict[nn.Module, tuple[Any, ...]] = {}

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        tensors = all(isinstance(a, torch.Tensor) for a in args)
        if module not in inputs and args and tensors and not kwargs:
            inputs[module] = tuple(a.detach().clone() for a in args)

    layers = [m for m in model.modules() if m is not model]
    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in layers]
    try:
        with torch.no_grad():
            model(example)
    except Exception:
        pass  # the layers reached before the error are enough to search
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def _fails(module: nn.Module, args: tuple[Any, ...]) -> bool:
    try:
        _export(module, args, dynamic=False)
    except Exception:
        return True
    return False


# ---------------------------------------------------------------------------- runtime
class OnnxModule(nn.Module):
    """An ONNX model run by ONNX Runtime on the CPU, as a module: float batch to logits.

    A model exported with a fixed batch size gets its input in slices of that size, the
    last one padded with zeros, so any number of images can be passed.

    Args:
        session: An ``onnxruntime.InferenceSession``.
        source: Where the model was read from, for ``repr``.
    """

    def __init__(self, session: Any, source: str = "") -> None:
        super().__init__()
        self.session = session
        self.source = source
        first = session.get_inputs()[0]
        self.input_name: str = first.name
        self.fixed_batch: int | None = first.shape[0] if isinstance(first.shape[0], int) else None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        if self.fixed_batch is None or len(array) == self.fixed_batch:
            return torch.from_numpy(self._run(array))
        size, parts = self.fixed_batch, []
        for start in range(0, len(array), size):
            part = array[start : start + size]
            padding = np.zeros((size - len(part), *part.shape[1:]), dtype=part.dtype)
            parts.append(self._run(np.concatenate([part, padding]))[: len(part)])
        return torch.from_numpy(np.concatenate(parts))

    def _run(self, array: np.ndarray) -> np.ndarray:
        outputs = self.session.run(None, {self.input_name: array})
        result: np.ndarray = np.asarray(outputs[0], dtype=np.float32)
        return result

    def extra_repr(self) -> str:
        return repr(self.source)


def read_onnx(path: Path) -> tuple[OnnxModule, dict[str, Any]]:
    """An ONNX file as an [`OnnxModule`][visionkit.predict.OnnxModule], and its visionkit metadata.

    Raises:
        CheckpointError: if the file is missing, is not an ONNX model, or holds metadata
            that is not valid JSON.
        ConfigurationError: if ONNX Runtime is not installed.
    """
    (runtime,) = require("onnxruntime")
    if not path.is_file():
        raise CheckpointError(f"exported model not found: {path} (expected an ONNX file)")
    options = runtime.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimizer notes on stderr
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = runtime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        raise CheckpointError(
            f"cannot read {path} as an ONNX model ({_first_line(error)}): pass a file "
            "written by visionkit.predict.export(..., format='onnx'), or export it again"
        ) from None
    return OnnxModule(session, str(path)), _metadata(session, path)


def _metadata(session: Any, path: Path) -> dict[str, Any]:
    metadata = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        if not key.startswith(_PREFIX):
            continue
        try:
            metadata[key[len(_PREFIX) :]] = json.loads(value)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{path}: the ONNX metadata entry {key!r} is not valid JSON ({error}): "
                "export the model again"
            ) from None
    return metadata
