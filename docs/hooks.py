"""mkdocs hooks: pages generated from the code at build time, so they cannot go stale."""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace generated-content markers in pages (none yet)."""
    return markdown
