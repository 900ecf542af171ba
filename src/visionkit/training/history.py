"""Per-epoch metrics of a run."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["History"]


class History:
    """The metrics of every epoch, in order: what ``Trainer.fit`` returns.

    Examples:
        >>> h = History()
        >>> h.append({"epoch": 0, "val_loss": 0.5})
        >>> h.append({"epoch": 1, "val_loss": 0.4})
        >>> h["val_loss"], h.best("val_loss")
        ([0.5, 0.4], {'epoch': 1, 'val_loss': 0.4})
    """

    def __init__(self, epochs: list[dict[str, float]] | None = None) -> None:
        self.epochs: list[dict[str, float]] = list(epochs or [])

    def append(self, metrics: dict[str, float]) -> None:
        """Record one epoch's metrics."""
        self.epochs.append(dict(metrics))

    def __getitem__(self, name: str) -> list[float]:
        """The values of metric ``name`` for the epochs that logged it."""
        values = [e[name] for e in self.epochs if name in e]
        if not values and self.epochs:
            raise KeyError(f"no metric {name!r}; logged metrics are {self.metric_names}")
        return values

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.epochs)

    @property
    def metric_names(self) -> list[str]:
        """Every metric name logged, in first-seen order."""
        names: dict[str, None] = {}
        for epoch in self.epochs:
            names.update(dict.fromkeys(epoch))
        return list(names)

    def best(self, name: str, mode: str = "min") -> dict[str, float]:
        """The epoch whose ``name`` is lowest (``mode="min"``) or highest (``"max"``)."""
        candidates = [e for e in self.epochs if name in e and not math.isnan(e[name])]
        if not candidates:
            raise KeyError(f"no epoch logged {name!r}")
        pick = min if mode == "min" else max
        return pick(candidates, key=lambda e: e[name])

    def state_dict(self) -> dict[str, Any]:
        """The history in checkpoint-safe types."""
        return {"epochs": [dict(e) for e in self.epochs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a history saved with [`state_dict`][visionkit.History.state_dict]."""
        self.epochs = [dict(e) for e in state["epochs"]]

    def plot(self, *, path: str | os.PathLike[str] | None = None) -> Figure:
        """Loss and accuracy curves per epoch (needs the ``plot`` extra)."""
        from visionkit.plots import plot_history

        return plot_history(self, path=path)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, metrics={self.metric_names})"
