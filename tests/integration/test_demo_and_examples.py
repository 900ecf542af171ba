"""The README's main job (`python -m visionkit demo`) and the example scripts in smoke mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from visionkit.__main__ import main
from visionkit.predict import load_checkpoint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_demo_reaches_90_percent_and_lists_its_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "demo" / "test_report.json").read_text())
    assert report["accuracy"] >= 0.90
    assert len(report["per_class_accuracy"]) == 10
    assert report["num_samples"] == 1000
    assert "val_loss improved to" in printed  # validation progress and best checkpoint
    assert "class         accuracy  correct/total" in printed  # per-class table
    assert "predictions of the saved checkpoint" in printed
    listed = printed.split("outputs:\n", 1)[1].split()
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "test_report.json"):
        shown = next(line for line in listed if line.endswith(f"demo/{name}"))
        assert (Path.cwd() / shown).resolve() == (tmp_path / "demo" / name).resolve()
    assert (tmp_path / "demo" / "predictions.png").stat().st_size > 10_000
    assert load_checkpoint(tmp_path / "demo/checkpoints/best.ckpt")["model"]["name"] == "mlp"


def test_cli_reports_errors_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path / "missing.ckpt"), "x.png"]) == 2
    assert "error: checkpoint not found" in capsys.readouterr().err


def _run_example(name: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    command = [sys.executable, str(EXAMPLES / name), "--smoke", "--device", "cpu"]
    command += ["--output-dir", str(tmp_path / "out"), *extra]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_w1_example_smoke(tmp_path: Path) -> None:
    result = _run_example("w1_mnist_mlp.py", tmp_path)
    assert "overall" in result.stdout
    assert "test accuracy" in result.stdout
    out = tmp_path / "out"
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert json.loads((out / "test_report.json").read_text())["num_samples"] == 1000
    assert (out / "predictions.png").stat().st_size > 10_000


def test_demo_runs_never_overwrite_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--epochs", "1", "--device", "cpu"]) == 0
    first = (tmp_path / "visionkit-demo/run_0/checkpoints/best.ckpt").read_bytes()
    assert "visionkit-demo/run_0/checkpoints/best.ckpt" in capsys.readouterr().out
    assert main(["demo", "--epochs", "1", "--device", "cpu", "--seed", "1"]) == 0
    assert "visionkit-demo/run_1/test_report.json" in capsys.readouterr().out
    assert (tmp_path / "visionkit-demo/run_0/checkpoints/best.ckpt").read_bytes() == first
    used = ["demo", "--epochs", "1", "--device", "cpu", "--output-dir", "visionkit-demo/run_0"]
    assert main(used) == 2
    assert "already holds files of an earlier run: pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "visionkit-demo/run_0/checkpoints/best.ckpt").read_bytes() == first


def test_visionkit_alone_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: visionkit" in capsys.readouterr().out
