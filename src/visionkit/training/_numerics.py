"""Non-finite checks of the training loop, and which came first when a loss is not finite.

On the CPU each loss is read as soon as it is computed. On an accelerator, reading a value
on the host waits for every queued kernel, so the per-step flags are recorded on the device
and read together at the next log interval, checkpoint or epoch end (`FiniteGuard.flush`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from visionkit.exceptions import NonFiniteLossError
from visionkit.predict.checkpoint import non_finite_tensors, unwrap_model

__all__ = ["FiniteGuard"]


class FiniteGuard:
    """Checks training losses and weights for NaN and infinity, and names the cause.

    Args:
        model: The model being trained (a DDP wrapper is looked through).
        defer: Record the per-step flags on the device and read them at `flush`
            instead of reading every loss on the host.
    """

    def __init__(self, model: nn.Module, *, defer: bool) -> None:
        self.model = model
        self.defer = defer
        self._pending: list[torch.Tensor] = []

    def check_loss(
        self,
        loss: torch.Tensor,
        x: torch.Tensor,
        outputs: torch.Tensor,
        *,
        epoch: int,
        batch: int,
        step: int,
    ) -> None:
        """Raise `NonFiniteLossError` if ``loss`` is not finite (or record the flag)."""
        if self.defer:
            self._pending.append(torch.isfinite(loss))
        elif not math.isfinite(float(loss)):
            self._raise(float(loss), epoch, batch, step, x, outputs)

    def flush(self, *, epoch: int, batch_in_epoch: int, step: int) -> None:
        """Read the recorded flags; ``batch_in_epoch`` is the number of batches seen."""
        pending = self._pending
        if not pending:
            return
        flags = torch.stack(pending).cpu()
        first_batch = batch_in_epoch - len(pending)
        pending.clear()
        if not bool(flags.all()):
            bad = int((~flags).nonzero()[0])
            self._raise(math.nan, epoch, first_batch + bad, step)

    def check_weights(self, where: str, *, epoch: int, step: int) -> None:
        """Raise `NonFiniteLossError` if any weight is NaN or infinite."""
        weights = self._nonfinite_weights()
        if weights:
            raise NonFiniteLossError(
                f"{where} (epoch {epoch}, global step {step}): "
                f"{_weights_cause(weights, step)}. Training stopped; no checkpoint holds "
                "these weights."
            )

    def _raise(
        self,
        value: float,
        epoch: int,
        batch: int,
        step: int,
        x: torch.Tensor | None = None,
        outputs: torch.Tensor | None = None,
    ) -> None:
        cause = self._cause(x, outputs, step)
        raise NonFiniteLossError(
            f"the training loss became {value} at epoch {epoch}, batch {batch} "
            f"(global step {step}): {cause}. Training stopped and no checkpoint "
            "was written from this point."
        )

    def _cause(self, x: torch.Tensor | None, outputs: torch.Tensor | None, step: int) -> str:
        """Which came first: non-finite inputs, weights, outputs, or only the loss."""
        if x is not None and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            return (
                f"the input batch holds {bad} NaN or infinite values; check the data and its "
                "normalization (a zero std divides by zero)"
            )
        weights = self._nonfinite_weights()
        if weights:
            return _weights_cause(weights, step)
        if outputs is not None and not bool(torch.isfinite(outputs.detach()).all()):
            return (
                "the model's outputs are NaN or infinite although its inputs and weights are "
                "finite: a value overflowed inside the model (16-bit precision overflows above "
                "65504 with fp16; try precision='bf16' or '32')"
            )
        return (
            "the model's outputs are finite, so the loss itself overflowed: lower the "
            "learning rate, clip gradients (gradient_clip_val=1.0) or check the loss function"
        )

    def _nonfinite_weights(self) -> list[str]:
        return non_finite_tensors(dict(unwrap_model(self.model).named_parameters()))


def _weights_cause(names: list[str], step: int) -> str:
    return (
        f"the weights {names[:3]} hold NaN or infinite values, so an optimizer step up to "
        f"global step {step} had non-finite gradients; lower the learning "
        "rate or clip gradients (gradient_clip_val=1.0)"
    )
