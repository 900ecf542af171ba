"""mkdocs hooks: pages generated at build time from the code and from measured results.

A page containing ``<!-- visionkit:model-zoo -->`` gets, in its place, a table of every model
in the registry: built with its default arguments (on the ``meta`` device, so even VGG16
costs no memory or time), with its class, parameter counts and expected input.

Figures (speeds, ratios, accuracies) are never typed into a page: a placeholder takes them
from a committed results file or a captured example output. ``FILE`` is a path relative to
the repository or a short name from ``SOURCES`` (``bench`` is the full benchmark report):

``{{ json:FILE PATH | FORMAT }}``
    One value of a JSON file. ``PATH`` is dotted keys; ``[key=value]`` (or ``[k=v&k2=v2]``)
    picks the one item of a list that matches; ``FORMAT`` is a Python format spec (``.2f``).
``{{ table:FILE PATH | COLUMN, COLUMN, ... }}``
    A Markdown table of the list of rows at ``PATH`` (all columns when none are named).
``{{ text:FILE /REGEX/ }}``
    The first group of the first match of ``REGEX`` in a text file (an example's output).
``{{ rows:FILE /REGEX/ | COLUMN, COLUMN, ... }}``
    A Markdown table with a row per match of ``REGEX`` (multi-line) in a text file, its groups
    as the named columns, in order (a benchmark's progress lines).

A placeholder that does not resolve stops the build with the reason.
"""

from __future__ import annotations

import inspect
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

MODEL_ZOO_MARKER = "<!-- visionkit:model-zoo -->"
REPO = Path(__file__).resolve().parents[1]
# Short names for the results files pages quote most.
SOURCES = {
    "bench": "bench/results/benchmarks.json",
    "ddp": "bench/results/ddp.md",
}
PLACEHOLDER = re.compile(r"\{\{\s*(json|table|text|rows):(\S+)\s+(.*?)\s*\}\}")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace generated-content markers and figure placeholders in a page's markdown."""
    if MODEL_ZOO_MARKER in markdown:
        markdown = markdown.replace(MODEL_ZOO_MARKER, model_zoo_table())
    return PLACEHOLDER.sub(_figure, markdown)


def _figure(match: re.Match[str]) -> str:
    kind, file, rest = match.groups()
    try:
        if kind == "text":
            return _text_value(file, rest)
        if kind == "rows":
            pattern, _, names = (part.strip() for part in rest.rpartition(" | "))
            return _text_rows(file, pattern, [name.strip() for name in names.split(",")])
        path, _, option = (part.strip() for part in rest.partition("|"))
        value = _select(_json(file), path)
        if kind == "table":
            columns = [c.strip() for c in option.split(",")] if option else None
            return markdown_table(value, columns)
        return format(value, option) if option else str(value)
    except (OSError, LookupError, ValueError, TypeError, re.error) as error:
        raise ValueError(f"cannot resolve {match.group(0)!r}: {error}") from error


def source(file: str) -> Path:
    """The file a placeholder names: a short name from ``SOURCES``, or a repository path."""
    return REPO / SOURCES.get(file, file)


@cache
def _json(file: str) -> Any:
    return json.loads(source(file).read_text(encoding="utf-8"))


def _text_value(file: str, pattern: str) -> str:
    if not (pattern.startswith("/") and pattern.endswith("/") and len(pattern) > 1):
        raise ValueError("a text placeholder takes /REGEX/")
    found = re.search(pattern[1:-1], source(file).read_text(encoding="utf-8"), re.MULTILINE)
    if found is None:
        raise LookupError(f"no match in {file}")
    return found.group(1)


def _text_rows(file: str, pattern: str, columns: list[str]) -> str:
    if not (pattern.startswith("/") and pattern.endswith("/") and len(pattern) > 1):
        raise ValueError("a rows placeholder takes /REGEX/ | COLUMN, ...")
    text = source(file).read_text(encoding="utf-8")
    found = list(re.finditer(pattern[1:-1], text, re.MULTILINE))
    if not found:
        raise LookupError(f"no match in {file}")
    if len(found[0].groups()) != len(columns):
        raise ValueError(f"{len(found[0].groups())} groups for {len(columns)} columns")
    rows = [
        {c: int(v) if v.isdigit() else v for c, v in zip(columns, m.groups(), strict=True)}
        for m in found
    ]
    return markdown_table(rows, columns)


def _select(data: Any, path: str) -> Any:
    """Follow ``a.b[key=value].c`` (or ``[k1=v1&k2=v2]``) through nested dicts and lists."""
    for name, condition in re.findall(r"([^.\[\]]+)|\[([^\]]+)\]", path):
        if name:
            data = data[int(name)] if isinstance(data, list) else data[name]
            continue
        wanted = dict(part.split("=", 1) for part in condition.split("&"))
        matches = [i for i in data if all(str(i.get(k)) == v for k, v in wanted.items())]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} items match [{condition}]")
        data = matches[0]
    return data


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as a Markdown table, numbers right-aligned and rounded as in the results reports."""
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    missing = [c for c in columns if not any(c in row for row in rows)]
    if missing:
        raise LookupError(f"no column {missing}")
    numeric = [
        all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)
        for c in columns
    ]
    lines = ["| " + " | ".join(columns) + " |"]
    lines.append("| " + " | ".join("---:" if n else "---" for n in numeric) + " |")
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "met" if value else "NOT MET"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


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
    first = first.replace("``", "`")  # a docstring's double backticks, as Markdown code
    return first.replace("|", "\\|")
