"""The examples' run folders: a new ``outputs/<example>/run_N`` per run, never an overwrite."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from visionkit.models import _registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{script.stem}", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLES))
        patch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))  # models it registers
        spec.loader.exec_module(module)
    return module


def _args_module() -> ModuleType:
    return _example(EXAMPLES / "_args.py")


def _parse(*argv: str) -> Path:
    args = _args_module().parse_example_args(
        None, epochs=1, script="examples/w9_demo.py", argv=list(argv), data="the sample"
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


SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
PARSERS = ["demo", "predict"]


def _options(help_text: str) -> dict[str, str]:
    """Each option of an argparse help text with its (joined) help, ``-h`` left out."""
    section = help_text.split("options:", 1)[1]
    options: dict[str, str] = {}
    flag = ""
    for line in section.splitlines():
        match = re.match(r"  (-[^\s,]+)[^ ]*(?:, -[^ ]+)*(?: [A-Z_]+)?(?:  +(.*))?$", line)
        if match and not line.startswith("   "):
            flag = match.group(1)
            options[flag] = match.group(2) or ""
        elif flag and line.strip():
            options[flag] += " " + line.strip()
    options.pop("-h", None)
    options.pop("--version", None)
    return options


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_example_option_has_help_that_shows_its_default(
    script: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _example(script).main(["--help"])
    assert exit_.value.code == 0
    options = _options(capsys.readouterr().out)
    assert {"--data-root", "--epochs", "--device", "--output-dir", "--smoke"} <= set(options)
    for flag, text in options.items():
        assert "default" in text, f"{script.name} {flag}: {text!r}"


@pytest.mark.parametrize("command", PARSERS)
def test_every_command_option_has_help_that_shows_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionkit.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    options = _options(capsys.readouterr().out)
    assert "--device" in options
    for flag, text in options.items():
        assert "default" in text, f"visionkit {command} {flag}: {text!r}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "argument --epochs: expected a whole number >= 1, got '0'"),
        (["--epochs", "two"], "argument --epochs: expected a whole number >= 1, got 'two'"),
        (["--device", "gpu"], "argument --device: unknown device 'gpu'"),
        (["--device", "cpu:1"], "there is one CPU device, use --device cpu"),
    ],
)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_bad_example_option_names_the_flag_before_anything_is_read(
    script: Path,
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISIONKIT_SHARED_DATA", str(tmp_path / "absent"))  # reading it would fail
    with pytest.raises(SystemExit) as exit_:
        _example(script).main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no run folder claimed, nothing written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--epochs", "0"], "argument --epochs: expected a whole number >= 1, got '0'"),
        (["demo", "--device", "cuda:x"], "argument --device: unknown device 'cuda:x'"),
        (["predict", "--top-k", "0", "a.ckpt", "b"], "argument --top-k: expected a whole number"),
        (["predict", "--device", "tpu", "a.ckpt", "b"], "argument --device: unknown device 'tpu'"),
    ],
)
def test_a_bad_command_option_names_the_flag_before_anything_is_read(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from visionkit.__main__ import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
