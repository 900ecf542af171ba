"""The built site reads as intended: cross-references are links, examples are code blocks.

Docstrings use mkdocstrings links (``[`Trainer`][visionkit.Trainer]``); a Sphinx role
(``:class:`Trainer```) is not understood by mkdocstrings and shows up verbatim on the page.
An ``Examples:`` section renders as a code block; an indented ``>>>`` paragraph outside it
would render as a quote or as plain text.

The fast test reads the sources; the slow ones read a built site: the one ``scripts/check``
has just built when ``VISIONKIT_SITE_DIR`` points at it, else one built here (about 10 s).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "visionkit"
ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|data|exc|obj):`([^`]+)`")
RENDERED_ROLE = re.compile(
    r":(?:py:)?(class|func|meth|attr|mod|data|exc|obj):(?:<code>([^<]*)</code>|`([^`]*)`)"
)


def _roles(text: str) -> set[tuple[str, str]]:
    return {(kind, " ".join(target.split())) for kind, target in ROLE.findall(text)}


@pytest.mark.parametrize(
    "path", sorted(SRC.rglob("*.py")), ids=lambda p: p.relative_to(SRC).as_posix()
)
def test_docstrings_use_mkdocstrings_links_not_sphinx_roles(path: Path) -> None:
    assert sorted(_roles(path.read_text(encoding="utf-8"))) == []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("VISIONKIT_SITE_DIR")
    if given and (Path(given) / "index.html").is_file():
        return Path(given)
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return site


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


@pytest.mark.slow
def test_no_page_shows_a_sphinx_role(site: Path) -> None:
    shown = [
        f"{page.relative_to(site)}: :{kind}:`{' '.join(html.unescape(code or tick).split())}`"
        for page in _pages(site)
        for kind, code, tick in RENDERED_ROLE.findall(page.read_text(encoding="utf-8"))
    ]
    assert shown == []


class _PromptFinder(HTMLParser):
    """Records each ``>>>`` with the elements it sits in."""

    VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.prompts: list[tuple[frozenset[str], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if ">>>" in data:
            self.prompts.append((frozenset(self.open), data.strip()[:60]))


@pytest.mark.slow
def test_every_doctest_prompt_is_inside_a_code_block(site: Path) -> None:
    api_pages = sorted((site / "api").glob("*/index.html"))
    assert len(api_pages) >= 7
    outside, quoted, prompts = [], [], 0
    for page in api_pages:
        finder = _PromptFinder()
        finder.feed(page.read_text(encoding="utf-8"))
        prompts += len(finder.prompts)
        for elements, text in finder.prompts:
            if not elements & {"code", "pre"}:
                outside.append(f"{page.relative_to(site)}: {text}")
            if "blockquote" in elements:
                quoted.append(f"{page.relative_to(site)}: {text}")
    assert prompts > 50  # the docstring examples are there at all
    assert outside == []
    assert quoted == []
