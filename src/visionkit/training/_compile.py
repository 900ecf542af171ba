"""``torch.compile`` for the training forward pass, with a fallback to eager execution."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from visionkit.exceptions import VisionKitError

Forward = Callable[[torch.Tensor], torch.Tensor]
T = TypeVar("T")


class CompiledForward:
    """Call ``torch.compile(module)``; if compiling fails, warn once and run ``module`` eagerly.

    ``torch.compile`` compiles lazily: most failures (no C++ compiler for the CPU backend,
    no Triton for CUDA, an unsupported platform or Python version, a compiled backward pass
    that fails) only surface when a batch of a new shape first runs forward and backward.
    So the training loop runs the first step of each batch shape (the full batches, a
    smaller last one) through `trial_step`, which falls back to eager execution for good
    when that step fails and runs it again eagerly: a real error in the model or the data
    is then raised by the eager module, with its own message.

    Args:
        module: The module to train through (the model, or its DDP wrapper).
        compile_fn: The compiler, ``torch.compile`` by default (replaceable in tests).
    """

    def __init__(self, module: nn.Module, *, compile_fn: Callable[..., Any] | None = None) -> None:
        self.module = module
        self.compiled: Forward | None = None
        self._proven: set[tuple[int, ...]] = set()  # batch shapes that ran a whole step
        try:
            self.compiled = (compile_fn or torch.compile)(module)
        except Exception as error:  # any failure means "run eagerly"
            _warn_fallback(error)

    @property
    def active(self) -> bool:
        """Whether calls go through the compiled module (``False`` after a fallback)."""
        return self.compiled is not None

    def on_trial(self, x: torch.Tensor) -> bool:
        """Whether the compiled module has yet to run a whole step (forward and backward)
        on a batch of ``x``'s shape."""
        return self.compiled is not None and tuple(x.shape) not in self._proven

    def trial_step(self, x: torch.Tensor, step: Callable[[], T]) -> T:
        """Run ``step`` (a forward of ``x`` through this object, the loss, its backward).

        If it fails, warn, restore the module's buffers (batch-norm statistics the compiled
        forward updated) and the parameters' gradients, and run ``step`` again eagerly: the
        step then equals an eager run's, and an error of the eager retry is raised as it
        is. A `VisionKitError` (a check of the data or the loss) is raised at once.
        """
        buffers = [buffer.detach().clone() for buffer in self.module.buffers()]
        grads = [None if p.grad is None else p.grad.clone() for p in self.module.parameters()]
        try:
            result = step()
        except VisionKitError:
            raise
        except Exception as error:
            _warn_fallback(error)
            self.compiled = None
            with torch.no_grad():
                for buffer, saved in zip(self.module.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
            for parameter, grad in zip(self.module.parameters(), grads, strict=True):
                parameter.grad = grad
            return step()
        self._proven.add(tuple(x.shape))
        return result

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.module if self.compiled is None else self.compiled)(x)


def _warn_fallback(error: BaseException) -> None:
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    warnings.warn(
        f"torch.compile failed ({type(error).__name__}: {first_line}); training continues "
        "without compiling (eager mode). compile=True needs a supported platform and a C++ "
        "compiler on CPU or Triton on CUDA; pass compile=False to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )
