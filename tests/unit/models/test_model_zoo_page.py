"""The docs hook that turns the registry into the model-zoo table."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from visionkit.models import list_models

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("visionkit_docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zoo_page_marker_becomes_a_row_per_registered_model() -> None:
    hooks = _hooks()
    page = (DOCS / "guides" / "model-zoo.md").read_text(encoding="utf-8")
    assert hooks.MODEL_ZOO_MARKER in page
    rendered = hooks.on_page_markdown(page, None, None, None)
    assert hooks.MODEL_ZOO_MARKER not in rendered
    rows = [line for line in rendered.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list_models()


def test_zoo_rows_hold_counts_and_input_shapes() -> None:
    table = _hooks().model_zoo_table()
    assert (
        "| `convnet` | [`ConvNet`][visionkit.models.ConvNet] | 300,426 | 300,426 | 1x28x28 |"
        in table
    )
    assert "| `mlp` | [`MLP`][visionkit.models.MLP] | 669,706 | 669,706 | 784 values" in table
    vgg = "| `vgg16_transfer` | [`VGG16Transfer`][visionkit.models.VGG16Transfer] |"
    assert f"{vgg} 117,897,126 | 103,182,438 | 3x224x224 |" in table


def test_pages_without_the_marker_are_unchanged() -> None:
    assert _hooks().on_page_markdown("# Title\n", None, None, None) == "# Title\n"
