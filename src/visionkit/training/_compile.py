"""``torch.compile`` for the training forward pass, with a fallback to eager execution."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Forward = Callable[[torch.Tensor], torch.Tensor]


class CompiledForward:
    """Call ``torch.compile(module)``; if compiling fails, warn once and run ``module`` eagerly.

    ``torch.compile`` compiles lazily, so most failures (no C++ compiler for the CPU
    backend, no Triton for CUDA, an unsupported platform or Python version) only surface
    on the first call. That call is retried eagerly: a real error in the model or the data
    is then raised by the eager module, with its own message. Later calls use whichever
    path the first call settled on.

    Args:
        module: The module to train through (the model, or its DDP wrapper).
        compile_fn: The compiler, ``torch.compile`` by default (replaceable in tests).
    """

    def __init__(self, module: nn.Module, *, compile_fn: Callable[..., Any] | None = None) -> None:
        self.module = module
        self.compiled: Forward | None = None
        self._settled = False
        try:
            self.compiled = (compile_fn or torch.compile)(module)
        except Exception as error:  # any failure means "run eagerly"
            _warn_fallback(error)

    @property
    def active(self) -> bool:
        """Whether calls go through the compiled module (``False`` after a fallback)."""
        return self.compiled is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.module(x)  # type: ignore[no-any-return]
        if self._settled:
            return self.compiled(x)
        try:
            outputs = self.compiled(x)
        except Exception as error:  # retried eagerly below
            _warn_fallback(error)
            self.compiled = None
            return self.module(x)  # type: ignore[no-any-return]
        self._settled = True
        return outputs


def _warn_fallback(error: BaseException) -> None:
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    warnings.warn(
        f"torch.compile failed ({type(error).__name__}: {first_line}); training continues "
        "without compiling (eager mode). compile=True needs a supported platform and a C++ "
        "compiler on CPU or Triton on CUDA; pass compile=False to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )
