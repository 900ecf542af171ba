"""Run the workflow examples and the demo briefly and keep their output and plots for the docs.

Run ``python scripts/make_workflow_images.py`` (about 3 minutes on a laptop CPU; W3-W5 need
the real samples in ``../shared/data``), or name the runs: ``... w2 demo``. For each example
it writes into ``docs/images/`` the text the example printed (``wN-output.txt``, included by
``docs/workflows/wN.md``) and its plots as PNG files under 150 KB (``wN-*.png``); the demo's
output becomes ``demo-output.txt`` (included by ``docs/getting-started.md``). Each runs in an
empty folder with its default output folder, so the text shows what a user sees there, with
no absolute path. The runs are short: the bundled MNIST sample for W1 and W2, the 200-image
CIFAR-10 sample for W3 and W4, and W5 in smoke mode (64x64 images, random VGG16 features,
no download).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
MAX_BYTES = 150_000

# example (or module), its options, {plot written by the run: name in docs/images}
RUNS = {
    "w1": ("w1_mnist_mlp.py", ["--epochs", "15"], {"predictions.png": "w1-predictions.png"}),
    "w2": ("w2_mnist_convnet.py", ["--epochs", "2"], {"prediction.png": "w2-prediction.png"}),
    "w3": ("w3_cifar_subset.py", ["--epochs", "30"], {"predictions.png": "w3-predictions.png"}),
    "w4": (
        "w4_cifar_resnet.py",
        ["--epochs", "10"],
        {"resnet_deep_curves.png": "w4-resnet-curves.png"},
    ),
    "w5": ("w5_flowers_vgg16.py", ["--smoke"], {"topk.png": "w5-topk.png"}),
    "own-data": ("own_data_finetune.py", ["--smoke"], {}),
    "demo": ("visionkit", ["demo"], {}),
}
SHARED_DATA = Path(os.environ.get("VISIONKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def run(key: str, workdir: Path) -> None:
    script, options, plots = RUNS[key]
    cwd = workdir / key
    cwd.mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    target = ["-m", script] if not script.endswith(".py") else [str(REPO / "examples" / script)]
    command = [sys.executable, *target, *options, "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{script} failed:\n{result.stderr[-3000:]}")
    text = result.stdout
    folders = {str(p) for p in (cwd, cwd.resolve(), SHARED_DATA, SHARED_DATA.resolve())}
    for folder in sorted(folders, key=len, reverse=True):
        text = text.replace(f"{folder}{os.sep}", "")  # outputs/..., flowers/... as relative paths
    (IMAGES / f"{key}-output.txt").write_text(text, encoding="utf-8")
    out = cwd / "outputs" / Path(script).stem / "run_0"
    for produced, name in plots.items():
        save_small(out / produced, IMAGES / name)
    print(f"{key}: {' '.join(command[1:])}")


def save_small(source: Path, target: Path) -> None:
    """Copy a PNG, shrinking it (palette, then smaller sizes) until it is under 150 KB."""
    image = Image.open(source).convert("RGB")
    scale = 1.0
    while True:
        size = (round(image.width * scale), round(image.height * scale))
        image.resize(size).quantize(colors=128).save(target, optimize=True)
        if target.stat().st_size < MAX_BYTES:
            return
        scale *= 0.8


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    keys = sys.argv[1:] or list(RUNS)
    workdir = Path(tempfile.mkdtemp(prefix="visionkit-docs-"))
    try:
        for key in keys:
            run(key, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
