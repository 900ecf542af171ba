"""The examples' run folders: a new ``outputs/<example>/run_N`` per run, never an overwrite."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _args_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_args", EXAMPLES / "_args.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(*argv: str) -> Path:
    args = _args_module().parse_example_args(
        None, epochs=1, script="examples/w9_demo.py", argv=list(argv)
    )
    return Path(args.output_dir)


def test_default_runs_claim_consecutive_folders_under_outputs(tmp_path: Path) -> None:
    assert _parse() == Path("outputs/w9_demo/run_0")
    assert _parse() == Path("outputs/w9_demo/run_1")
    (tmp_path / "outputs/w9_demo/run_7").mkdir()
    assert _parse() == Path("outputs/w9_demo/run_8")
    assert sorted(p.name for p in (tmp_path / "outputs/w9_demo").iterdir()) == [
        "run_0",
        "run_1",
        "run_7",
        "run_8",
    ]


def test_a_run_folder_taken_meanwhile_is_skipped(tmp_path: Path) -> None:
    module = _args_module()
    root = tmp_path / "runs"
    root.mkdir()
    real_mkdir = Path.mkdir

    def racing_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "run_0" and not self.exists():
            real_mkdir(self)  # another process wins run_0 first
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "mkdir", racing_mkdir)
        assert module.claim_run_dir(root) == root / "run_1"


def test_a_named_output_dir_is_used_when_new_or_empty(tmp_path: Path) -> None:
    assert _parse("--output-dir", "fresh/out") == Path("fresh/out")
    assert (tmp_path / "fresh/out").is_dir()
    (tmp_path / "empty").mkdir()
    assert _parse("--output-dir", "empty") == Path("empty")


def test_a_named_output_dir_with_files_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "old/checkpoints").mkdir(parents=True)
    with pytest.raises(SystemExit, match="already holds an earlier run's files; pass --overwrite"):
        _parse("--output-dir", "old")
    assert _parse("--output-dir", "old", "--overwrite") == Path("old")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        _parse("--output-dir", "file")
