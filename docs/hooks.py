"""mkdocs hooks: pages generated from the code at build time, so they cannot go stale.

A page containing ``<!-- visionkit:model-zoo -->`` gets, in its place, a table of every model
in the registry: built with its default arguments (on the ``meta`` device, so even VGG16
costs no memory or time), with its class, parameter counts and expected input.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

MODEL_ZOO_MARKER = "<!-- visionkit:model-zoo -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace generated-content markers in a page's markdown."""
    if MODEL_ZOO_MARKER in markdown:
        markdown = markdown.replace(MODEL_ZOO_MARKER, model_zoo_table())
    return markdown


def model_zoo_table() -> str:
    """A markdown table of every registered model, computed from the registry."""
    from visionkit.models import list_models

    header = [
        "| name | class | parameters | trainable | input | description |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    return "\n".join(header + [_row(name) for name in list_models()]) + "\n"


def _row(name: str) -> str:
    import torch

    from visionkit.models import count_parameters, create_model, get_model_factory

    summary = _summary(get_model_factory(name))
    try:
        with torch.device("meta"):
            model = create_model(name)
    except Exception as error:  # a factory with required arguments has no default build
        return f"| `{name}` | — | — | — | — | {summary} (not built: {type(error).__name__}) |"
    cls = type(model)
    link = f"[`{cls.__name__}`][visionkit.models.{cls.__name__}]"
    cells = [
        f"`{name}`",
        link if cls.__module__.startswith("visionkit.models") else f"`{cls.__name__}`",
        f"{count_parameters(model):,}",
        f"{count_parameters(model, trainable_only=True):,}",
        _input(model),
        summary,
    ]
    return "| " + " | ".join(cells) + " |"


def _input(model: Any) -> str:
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return "x".join(str(s) for s in shape)
    features = getattr(model, "in_features", None)
    return f"{features:,} values (flattened)" if features is not None else "—"


def _summary(factory: Any) -> str:
    doc = inspect.getdoc(factory) or ""
    first = doc.split("\n\n")[0].replace("\n", " ").strip()
    first = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", first).replace("``", "`")  # reST -> markdown
    return first.replace("|", "\\|")
