"""The docs: every public name is in the API reference, and W1 stays a quarter of seed 001.

The API pages are ``::: visionkit.<package>`` directives, rendered by mkdocstrings from what
griffe reads in the sources. mkdocstrings shows a member of ``__all__`` only when griffe
resolves it to the object itself (not a same-named submodule) and it has a docstring
(``show_if_no_docstring`` is off), so the fast test checks exactly that with griffe; the
slow test builds the site and looks for each name's anchor in the HTML.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = {
    "visionkit": "visionkit",
    "visionkit.data": "data",
    "visionkit.models": "models",
    "visionkit.callbacks": "callbacks",
    "visionkit.training": "training",
    "visionkit.predict": "predict",
    "visionkit.plots": "plots",
}


def _public(module_name: str) -> list[str]:
    return list(importlib.import_module(module_name).__all__)


def _griffe_member(package: Any, module_name: str, name: str) -> Any:
    module = package if module_name == "visionkit" else package[module_name.split(".", 1)[1]]
    return module.members.get(name)


def _undocumented(package: Any, module_name: str) -> list[str]:
    problems = []
    for name in _public(module_name):
        member = _griffe_member(package, module_name, name)
        if member is None:
            problems.append(f"{module_name}.{name}: not found by griffe")
        elif member.is_module and not _has_page(f"{module_name}.{name}"):
            problems.append(f"{module_name}.{name}: griffe sees the submodule, not the object")
        elif not member.is_module and member.docstring is None:
            problems.append(f"{module_name}.{name}: no docstring, so mkdocstrings hides it")
    return problems


def _has_page(qualified: str) -> bool:
    return any(f"::: {qualified}\n" in p.read_text() for p in (REPO / "docs/api").glob("*.md"))


def test_every_api_page_renders_its_package() -> None:
    for module_name, page in PAGES.items():
        assert f"::: {module_name}\n" in (REPO / "docs" / "api" / f"{page}.md").read_text()


def test_every_public_name_is_rendered_in_the_api_reference() -> None:
    griffe = pytest.importorskip("griffe")
    package = griffe.load("visionkit", search_paths=[str(REPO / "src")], resolve_aliases=True)
    problems = [p for module_name in PAGES for p in _undocumented(package, module_name)]
    assert problems == []


@pytest.mark.slow
def test_built_site_has_an_anchor_for_every_public_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "-d", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = "".join(p.read_text() for p in (site / "api").glob("*/index.html"))
    anchors = set(re.findall(r'id="(visionkit[^"]*)"', html))
    missing = [
        f"{m}.{n}"
        for m in PAGES
        for n in _public(m)
        if f"{m}.{n}" not in anchors and not any(a.endswith(f".{n}") for a in anchors)
    ]
    assert missing == []


def _measure_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "measure_examples", REPO / "scripts" / "measure_examples.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_w1_example_is_at_most_a_quarter_of_seed_001() -> None:
    measure = _measure_script()
    if measure.SEED_001 is None:
        pytest.skip("seed 001 not found in ../shared/seeds")
    results = measure.measure()
    assert results["workflow"][1] == 116  # seed 001's workflow cells, counted once by hand
    for name, (example, seed) in results.items():
        assert example * 4 <= seed, f"{name}: W1 has {example} lines, seed 001 {seed}"


def test_example_body_skips_docstring_comments_and_argument_parsing(tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(
        'def main(argv=None):\n    """Doc."""\n    args = parse_example_args(\n'
        "        __doc__, epochs=1\n    )\n    # a comment\n\n    x = (1,\n         2)\n"
        "    return x\n"
    )
    assert _measure_script().example_body(example) == ["    x = (1,", "         2)", "    return x"]
