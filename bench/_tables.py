"""The benchmark report as Markdown: one table of target checks, then one section per bench."""

from __future__ import annotations

from typing import Any

from _common import Result
from _targets import all_checks, verdict

MEMORY_NOTE = (
    "Memory columns: `peak RSS MiB` is the high-water mark of the benchmark's process while "
    "the row ran (it includes torch itself, about 0.7 GiB); `RSS rise MiB` is that peak minus "
    "the resident memory when the row started; `peak CUDA MiB` is "
    "`torch.cuda.max_memory_allocated()` for the row."
)


def markdown(report: Result) -> str:
    """The whole report as Markdown: machine, command, target checks, one table per bench."""
    lines = ["# visionkit benchmarks", ""]
    lines += [f"- command: `{report['command']}`", f"- date: {report['date']}"]
    lines += [f"- {key}: {value}" for key, value in report["machine"].items()]
    lines += ["", MEMORY_NOTE, "", "## Targets", "", *_table(list(all_checks(report))), ""]
    for name, result in report["benchmarks"].items():
        lines += [section(name, result), ""]
    return "\n".join(lines).rstrip() + "\n"


def section(name: str, result: Result) -> str:
    """One benchmark's part of the report: setup, rows, checks, peak memory and notes."""
    lines = [f"## {result['title']} (`{name}`)", ""]
    for key in ("skipped", "error"):
        if key in result:
            return "\n".join(
                [*lines, f"**{key}**: {result[key]}" if key == "error" else result[key]]
            )
    lines += [f"Setup: {result['setup']}.", "", *_table(result["rows"]), ""]
    if result.get("checks"):
        lines += _table([{**c, "ok": verdict(c["ok"])} for c in result["checks"]])
        lines.append("")
    peak = f"{result['peak_rss_mb']:.0f} MiB"
    if result.get("peak_cuda_mb") is not None:
        peak += f", peak CUDA allocated {result['peak_cuda_mb']:.0f} MiB"
    lines.append(f"Whole benchmark: peak RSS {peak}, {result.get('seconds', 0):.0f} s.")
    lines += list(result.get("notes", []))
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [key for key in row if key not in columns]
    numeric = [
        all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in columns
    ]
    lines = ["| " + " | ".join(columns) + " |"]
    lines.append("| " + " | ".join("---:" if n else "---" for n in numeric) + " |")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
