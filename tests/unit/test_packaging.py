"""The distribution is ``visionkit-torch`` (``import visionkit``), and every install line says so.

``pip install visionkit`` installs an unrelated project of that name, so an install command
that names bare ``visionkit`` sends a user to the wrong package. Building the wheel takes
about 2 seconds (``python -m build`` installs hatchling into an isolated environment, as
``scripts/check`` does).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "visionkit-torch"

# Packages a page may tell the user to install from the index besides visionkit-torch.
THIRD_PARTY = {
    "build",
    "check-jsonschema",
    "lightning",
    "matplotlib",
    "mkdocs",
    "mlflow",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "safetensors",
    "tensorboard",
    "timm",
    "torch",
    "torchvision",
    "twine",
}
# Options of pip install that take a value (the value is not a requirement).
VALUE_OPTIONS = {"--index-url", "--extra-index-url", "-i", "-r", "-c", "--find-links", "-f"}

_COMMAND = re.compile(r"pip\s+install\b")
# A command ends at a backtick, a parenthesis, &&, ;, a comment or a blank line.
_END = re.compile(r"`|\)|&&|;|\s#|\n\s*\n")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[\w,-]+\])?([<>=!~]=?[\w.*]+)?$")


def _pyproject_name() -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^name\s*=\s*"([^"]+)"', project, re.MULTILINE)
    assert match, "no name in [project]"
    return match.group(1)


def _sources() -> list[Path]:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return pages + sorted((REPO / "src").rglob("*.py"))


def install_commands(text: str) -> list[tuple[int, str, list[str]]]:
    """Every ``pip install`` in ``text``: (line, command, requirement names it installs).

    A command may continue on the next line (a docstring wrapping inside double backticks);
    it ends at a backtick, a closing parenthesis, ``&&``, ``;`` or a comment. Local installs
    (``-e .``, ``".[dev]"``) name no requirement.
    """
    found = []
    for match in _COMMAND.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        rest = _END.split(text[match.end() : match.end() + 300], maxsplit=1)[0]
        tokens = rest.replace('"', " ").replace("'", " ").split()
        found.append((line, f"pip install {' '.join(tokens)}", _requirements(tokens)))
    return found


def _requirements(tokens: list[str]) -> list[str]:
    names, skip_value = [], False
    for token in tokens:
        if skip_value:
            skip_value = False
            continue
        if token in VALUE_OPTIONS:
            skip_value = True
            continue
        if token.startswith("-") or token.startswith(".") or "/" in token:
            continue  # an option, or a local path such as . or .[dev]
        match = _REQUIREMENT.match(token.rstrip(".,:"))
        if match is None:
            break  # prose after the command
        names.append(match.group(1).lower())
    return names


def _bad_installs(path: Path) -> list[str]:
    relative = path.relative_to(REPO).as_posix()
    problems = []
    for line, command, names in install_commands(path.read_text(encoding="utf-8")):
        for name in names:
            if name == "visionkit":
                problems.append(f"{relative}:{line}: {command!r} installs bare visionkit")
            elif name != DISTRIBUTION and name not in THIRD_PARTY:
                problems.append(f"{relative}:{line}: {command!r}: {name!r} is not allow-listed")
    return problems


def test_the_distribution_is_visionkit_torch() -> None:
    assert _pyproject_name() == DISTRIBUTION
    dev = (REPO / "pyproject.toml").read_text(encoding="utf-8").split("\ndev = [", 1)[1]
    assert f'"{DISTRIBUTION}[' in dev.split("]\n", 1)[0]  # the dev extra installs its siblings


def test_the_built_wheel_is_named_visionkit_torch_and_imports_as_visionkit(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith("visionkit_torch-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_file = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_file).decode())
    assert metadata["Name"] == DISTRIBUTION
    assert "visionkit/__init__.py" in names


def test_install_command_parser() -> None:
    text = (
        'run `pip install "visionkit-torch[plot]"`, or ``pip install\n    "visionkit[timm]"``;\n'
        "`pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu`\n"
        'pip install -e ".[dev]" && bash scripts/check\n'
        "(pip install -U visionkit) and pip install timm) then\n"
    )
    assert [(line, names) for line, _, names in install_commands(text)] == [
        (1, ["visionkit-torch"]),
        (1, ["visionkit"]),
        (3, ["torch", "torchvision"]),
        (4, []),
        (5, ["visionkit"]),
        (5, ["timm"]),
    ]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_install_command_names_the_distribution(path: Path) -> None:
    assert _bad_installs(path) == []
