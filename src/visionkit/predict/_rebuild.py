"""The parts of a ``Predictor`` read from a checkpoint: its model, class names, preprocessing."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from visionkit._images import Preprocess
from visionkit._seed import get_rng_state, set_rng_state
from visionkit.exceptions import CheckpointError, VisionKitError

__all__ = ["checkpoint_classes", "checkpoint_preprocess", "rebuild_model"]


def rebuild_model(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    """The checkpoint's model, rebuilt from its registry name and arguments.

    The caller's random number generators are left as they were (building a model draws
    random initial weights, which the checkpoint's then replace).

    Raises:
        CheckpointError: if the model was not built with ``create_model``, or cannot be
            rebuilt from its name and arguments.
    """
    from visionkit.models import create_model

    info = checkpoint["model"]
    name = info.get("name")
    if not name:
        raise CheckpointError(
            f"{path} was saved from a {info.get('class', 'model')} not built with "
            "visionkit.models.create_model, so it cannot be rebuilt from the file alone: "
            "pass model=YourModel(...) to Predictor.from_checkpoint"
        )
    kwargs = dict(info.get("kwargs") or {})
    kwargs.pop("weights", None)  # pretrained weights are superseded by the checkpoint's
    rng = get_rng_state()  # building a model draws random initial weights
    try:
        return create_model(str(name), **kwargs)
    except VisionKitError as error:
        raise CheckpointError(
            f"cannot rebuild the model of {path} ({name!r} with {kwargs}): {error}. If it is "
            "your own registered model, import the module that registers it first, or pass "
            "model=... to Predictor.from_checkpoint"
        ) from None
    finally:
        set_rng_state(rng)


def checkpoint_classes(
    checkpoint: dict[str, Any], path: str | os.PathLike[str]
) -> list[str] | None:
    """The checkpoint's class names, or ``None`` when it stores none.

    Raises:
        CheckpointError: if ``classes`` is not a list of strings.
    """
    classes = checkpoint.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise CheckpointError(f"{path}: 'classes' must be a list of strings, got {classes!r:.80}")
    return classes


def checkpoint_preprocess(
    checkpoint: dict[str, Any], path: str | os.PathLike[str]
) -> Preprocess | None:
    """The checkpoint's ``Preprocess``, or ``None`` when it stores none.

    Raises:
        CheckpointError: if the stored entry is not a valid ``Preprocess``.
    """
    data = checkpoint.get("preprocess")
    if not data:
        return None
    try:
        return Preprocess.from_dict(data)
    except (VisionKitError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{path}: invalid 'preprocess' entry {data!r:.120}: {error}"
        ) from None
