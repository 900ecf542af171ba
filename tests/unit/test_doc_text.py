"""What a user reads is written for them: no planning jargon, no machine paths, no typed figures.

* The workflows are named W1-W5 after what they do; the internal numbers of the tutorials
  they came from ("seed 001") mean nothing to a user.
* No page, captured output, example or docstring shows a path of the machine it was made on.
* Every measured figure on a page (a ratio, a percentage with decimals, a speed, a time)
  is inserted when the docs are built, from a committed results file or a captured example
  output (see ``docs/hooks.py``), so it cannot drift from the measurement.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PLANNING = re.compile(r"\bseeds?\s+\d{3}\b|\bseeds'|\bseed\s+tutorials?\b|\bthe seed's\b", re.I)
MACHINE_PATH = re.compile(
    r"(?<![\w.])(?:/work/|/root/|/tmp/|/home/[\w.-]+/|/Users/[\w.-]+/|[A-Z]:\\Users\\)"
)
# A measured figure: a decimal ratio (1.05x, 0.97 times) or percentage (92.30%), a speed, or a
# decimal duration or size. Integers ("20% held out", "4x smaller") are settings and facts.
FIGURE = re.compile(
    r"\b\d+\.\d+\s?(?:[x\u00d7](?![\w-])|%|s\b|ms\b|\u00b5s\b|MiB\b|GiB\b|MB\b|GB\b)"
    r"|\b\d[\d,.]*\s?(?:s/epoch|img/s|images/s|samples/s|steps/s)"
)
PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.DOTALL)
# Files being rewritten by other changes, fixed there. Strict: they fail once clean, and
# the entry must then go.
WORDING_IN_PROGRESS: set[str] = set()
FIGURES_IN_PROGRESS: set[str] = set()


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _user_text_files() -> list[Path]:
    files = [REPO / "README.md", *sorted(DOCS.rglob("*.md")), *sorted(DOCS.glob("images/*.txt"))]
    return files + sorted((REPO / "examples").glob("*.py")) + sorted((REPO / "src").rglob("*.py"))


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*/*.md"))]


def _params(paths: list[Path], in_progress: set[str]) -> list[object]:
    mark = pytest.mark.xfail(strict=True, reason="being rewritten by another change")
    return [
        pytest.param(p, id=_relative(p), marks=mark if _relative(p) in in_progress else ())
        for p in paths
    ]


def _hits(pattern: re.Pattern[str], text: str) -> list[tuple[int, str]]:
    return [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in pattern.finditer(text)]


@pytest.mark.parametrize("path", _params(_user_text_files(), WORDING_IN_PROGRESS))
def test_no_planning_words_or_machine_paths(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [f"{_relative(path)}:{n}: {hit!r}" for n, hit in _hits(PLANNING, text)]
    found += [f"{_relative(path)}:{n}: path {hit!r}" for n, hit in _hits(MACHINE_PATH, text)]
    assert found == []


@pytest.mark.parametrize("path", _params(_pages(), FIGURES_IN_PROGRESS))
def test_figures_come_from_results_files_not_from_typing(path: Path) -> None:
    text = PLACEHOLDER.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text("utf-8"))
    typed = [f"{_relative(path)}:{n}: {hit!r}" for n, hit in _hits(FIGURE, text)]
    assert typed == [], "insert figures with a {{ json:... }} or {{ text:... }} placeholder"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("visionkit_docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", _pages()[1:], ids=_relative)
def test_every_placeholder_resolves_from_a_committed_file(path: Path) -> None:
    hooks = _hooks()
    text = path.read_text(encoding="utf-8")
    for match in hooks.PLACEHOLDER.finditer(text):
        assert hooks.source(match.group(2)).is_file(), match.group(0)
    rendered = hooks.on_page_markdown(text, None, None, None)
    assert hooks.PLACEHOLDER.search(rendered) is None


def test_placeholders_read_json_tables_and_text(tmp_path: Path) -> None:
    hooks = _hooks()
    results = tmp_path / "r.json"
    results.write_text('{"runs": [{"name": "a", "speed": 1.23456}, {"name": "b", "speed": 2}]}')
    (tmp_path / "out.txt").write_text("epoch 1\ntest accuracy 92.20% in 10.8s\n")
    hooks.REPO = tmp_path
    page = (
        "x {{ json:r.json runs[name=a].speed | .2f }}x y {{ text:out.txt /accuracy (\\S+%)/ }}\n"
        "{{ table:r.json runs | name, speed }}"
    )
    assert hooks.on_page_markdown(page, None, None, None) == (
        "x 1.23x y 92.20%\n| name | speed |\n| --- | ---: |\n| a | 1.235 |\n| b | 2 |"
    )
    with pytest.raises(ValueError, match="0 items match"):
        hooks.on_page_markdown("{{ json:r.json runs[name=c].speed }}", None, None, None)
    with pytest.raises(ValueError, match="no match"):
        hooks.on_page_markdown("{{ text:out.txt /loss (\\S+)/ }}", None, None, None)


def test_a_rows_placeholder_tabulates_every_match_of_a_text_file(tmp_path: Path) -> None:
    hooks = _hooks()
    (tmp_path / "log.txt").write_text("net, plain: 61422 images/s\nnoise\nnet, fast: 9 images/s\n")
    hooks.REPO = tmp_path
    page = "{{ rows:log.txt /^(\\w+), (.+): (\\d+) images/s$/ | model, variant, images/s }}"
    assert hooks.on_page_markdown(page, None, None, None) == (
        "| model | variant | images/s |\n| --- | --- | ---: |\n"
        "| net | plain | 61,422 |\n| net | fast | 9 |"
    )
    with pytest.raises(ValueError, match="2 groups for 3 columns"):
        hooks.on_page_markdown("{{ rows:log.txt /(\\w+), (\\w+):/ | a, b, c }}", None, None, None)
