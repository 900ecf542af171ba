"""Every Python block of the README and the docs runs as written, or says what it needs.

Each ```python block runs in its own empty folder and namespace (one process per page), on
the CPU, offline: a proxy that refuses every connection stands in for the network, and
torch's weight cache is empty, so a block that would download fails here. A block that
cannot run as written (it needs your photos, a GPU, a download, or the variables of the
example above it) is marked by an HTML comment on the line just before it, which the page
itself does not show, so the text around it must say what the block needs:

    <!-- not run: needs your photos in my_photos/ -->
    ```python

A block that is only an example script included with ``--8<-- "examples/..."`` is run by the
example tests instead (``tests/integration/test_examples.py``), where it gets the sample data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*$")
INCLUDE = re.compile(r'^--8<-- "(examples/[\w./]+\.py)"$')
EXAMPLE_TESTS = [REPO / "tests/integration/test_examples.py"]
EXAMPLE_TESTS += [REPO / "tests/integration/test_demo_and_examples.py"]
# Pages being rewritten by other changes; their blocks are fixed there. Strict: once they
# run, the entry must go.
IN_PROGRESS: set[str] = set()
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")  # set to a port that refuses connections

RUNNER = """
import json, os, sys, traceback
blocks = json.loads(sys.stdin.read())
root = os.getcwd()
errors = []
for number, code in enumerate(blocks):
    folder = os.path.join(root, f"block{number}")
    os.makedirs(folder)
    os.chdir(folder)
    try:
        exec(compile(code, f"block {number}", "exec"), {"__name__": "__main__"})
    except BaseException:
        errors.append(traceback.format_exc(limit=-4))
    else:
        errors.append(None)
    finally:
        os.chdir(root)
print("\\nERRORS" + json.dumps(errors))
"""


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    not_run: str | None


def blocks(text: str) -> list[Block]:
    """The page's ```python blocks, each with the reason it is not run (or ``None``)."""
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(line, match.group(1), marker.group(1) if marker else None))
    return found


def _page_params() -> list[object]:
    params = []
    for page in PAGES:
        name = page.relative_to(REPO).as_posix()
        if not blocks(page.read_text(encoding="utf-8")):
            continue
        mark = pytest.mark.xfail(strict=True, reason="being rewritten by another change")
        params.append(pytest.param(page, id=name, marks=mark if name in IN_PROGRESS else ()))
    return params


def _run(codes: list[str], tmp_path: Path) -> list[str | None]:
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "NO_PROXY": "",
        **dict.fromkeys(PROXIES + tuple(p.lower() for p in PROXIES), "http://127.0.0.1:9"),
    }
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(codes),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert "\nERRORS" in result.stdout, result.stderr[-3000:]
    errors: list[str | None] = json.loads(result.stdout.rsplit("\nERRORS", 1)[1])
    return errors


def _included_example_is_tested(code: str) -> str | None:
    lines = code.strip().splitlines()
    match = INCLUDE.match(lines[0]) if len(lines) == 1 else None
    if match is None:
        return None
    script = Path(match.group(1)).name
    tested = any(script in path.read_text(encoding="utf-8") for path in EXAMPLE_TESTS)
    return "tested" if tested else f"{script} is included but no example test runs it"


@pytest.mark.parametrize("page", _page_params())
def test_every_python_block_runs_or_says_what_it_needs(page: Path, tmp_path: Path) -> None:
    name = page.relative_to(REPO).as_posix()
    problems, runnable = [], []
    for block in blocks(page.read_text(encoding="utf-8")):
        included = _included_example_is_tested(block.code)
        if block.not_run is not None:
            if len(block.not_run.split()) < 2:
                problems.append(f"{name}:{block.line}: say what the block needs, not just why")
        elif included is not None:
            if included != "tested":
                problems.append(f"{name}:{block.line}: {included}")
        else:
            runnable.append(block)
    if runnable:
        errors = _run([block.code for block in runnable], tmp_path)
        problems += [
            f"{name}:{block.line}: the block fails as written (mark it <!-- not run: ... --> "
            f"and say what it needs, or fix it):\n{error}"
            for block, error in zip(runnable, errors, strict=True)
            if error is not None
        ]
    assert problems == [], "\n\n".join(problems)


def test_block_markers_are_read_from_the_line_before_the_fence() -> None:
    text = (
        "Intro.\n\n```python\nprint(1)\n```\n\nNeeds photos.\n"
        "<!-- not run: needs your photos in my_photos/ -->\n```python\nimage_folder('x')\n```\n"
    )
    assert blocks(text) == [
        Block(3, "print(1)\n", None),
        Block(9, "image_folder('x')\n", "needs your photos in my_photos/"),
    ]
