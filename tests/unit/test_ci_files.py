"""CI, release and Read the Docs files: each does what the README and the docs promise.

``scripts/check`` also validates them against their published schemas with
``check-jsonschema`` when it is installed; this test checks what the schemas cannot: the
platforms, the Python versions, the commands and the permissions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _load(relative: str) -> Any:
    return yaml.safe_load((REPO / relative).read_text(encoding="utf-8"))


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def test_ci_runs_the_check_command_everywhere_with_cpu_torch_first() -> None:
    workflow = _load(".github/workflows/ci.yml")
    (job,) = workflow["jobs"].values()
    matrix = job["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert matrix["python"] == ["3.10", "3.11", "3.12", "3.13"]
    assert job["defaults"]["run"]["shell"] == "bash"
    runs = _runs(job)
    torch_step = next(i for i, run in enumerate(runs) if CPU_INDEX in run)
    assert runs.index("bash .ci/run") > torch_step
    assert 'pip install -e ".[dev]" && bash scripts/check' in (REPO / ".ci/run").read_text()
    assert workflow["permissions"] == {"contents": "read"}


def test_release_builds_on_version_tags_and_publishes_with_trusted_publishing() -> None:
    workflow = _load(".github/workflows/release.yml")
    assert workflow[True]["push"]["tags"] == ["v*"]  # PyYAML reads the key `on` as True
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    assert any("python -m build --sdist --wheel" in run for run in _runs(build))
    assert any("twine check --strict" in run for run in _runs(build))
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert "pypa/gh-action-pypi-publish@release/v1" in _uses(publish)
    assert "password" not in str(publish)  # trusted publishing: no token


def test_read_the_docs_builds_strictly_with_cpu_torch() -> None:
    config = _load(".readthedocs.yaml")
    assert config["version"] == 2
    assert config["mkdocs"] == {"configuration": "mkdocs.yml", "fail_on_warning": True}
    assert any(CPU_INDEX in command for command in config["build"]["jobs"]["pre_install"])
    assert config["python"]["install"] == [
        {"method": "pip", "path": ".", "extra_requirements": ["docs"]}
    ]
