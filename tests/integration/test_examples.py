"""Every workflow example (W2-W5) and the downstream example, run with ``--smoke``.

Each runs in a subprocess on the real samples (the bundled MNIST sample, or
``../shared/data``), on the CPU with one thread, and its printed result and output files
are checked. W1 is tested in ``test_demo_and_examples.py``.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

from visionkit.predict import load_checkpoint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FLOWER_NAMES = ["pink primrose", "globe thistle", "blackberry lily", "sunflower", "rose"]


def _run(
    name: str,
    tmp_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    ok: bool = True,
    output_dir: bool = True,
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, str(EXAMPLES / name), "--smoke", "--device", "cpu"]
    command += ["--output-dir", str(tmp_path / "out")] if output_dir else []
    command += extra
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=180
    )
    if ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _accuracy(stdout: str, label: str = "test accuracy") -> float:
    match = re.search(rf"{label} ([0-9.]+)", stdout)
    assert match, stdout[-2000:]
    return float(match.group(1))


def test_w2_convnet_predicts_one_digit(tmp_path: Path) -> None:
    result = _run("w2_mnist_convnet.py", tmp_path)
    out = tmp_path / "out"
    assert "step 10 [10/100" in result.stdout  # logged every 10 batches
    assert re.search(r"Model prediction is: \d; ground truth is: \d", result.stdout)
    assert "overall" in result.stdout
    assert _accuracy(result.stdout) > 0.3  # chance is 0.1
    assert (out / "prediction.png").stat().st_size > 5_000
    checkpoint = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert checkpoint["model"]["name"] == "convnet"
    assert tuple(checkpoint["preprocess"]["mean"]) == (0.1302,)  # seed 004's statistics


def test_w3_keeps_airplanes_and_birds(cifar_batches_dir: Path, tmp_path: Path) -> None:
    result = _run("w3_cifar_subset.py", tmp_path)
    out = tmp_path / "out"
    assert "classes ['airplane', 'bird'], label map {0: 0, 2: 1}" in result.stdout
    train = _accuracy(result.stdout, "Accuracy on Training Set:")
    val = _accuracy(result.stdout, "Accuracy on Validation Set:")
    assert val > 0.5  # two classes: chance is 0.5 (this seeded run gets all of them)
    assert train > 0.5
    assert (out / "predictions.png").stat().st_size > 5_000
    checkpoint = load_checkpoint(out / "checkpoints" / "best.ckpt")
    assert checkpoint["classes"] == ["airplane", "bird"]
    assert checkpoint["model"]["kwargs"]["activation"] == "tanh"


def test_w4_trains_both_networks_with_loggers(cifar_batches_dir: Path, tmp_path: Path) -> None:
    result = _run("w4_cifar_resnet.py", tmp_path)
    out = tmp_path / "out"
    for name in ("convnet_cifar", "resnet_deep"):
        assert re.search(rf"{name}: test loss [0-9.]+, test accuracy [0-9.]+", result.stdout)
        assert list((out / "runs" / name).glob("events.out.tfevents.*"))
        with (out / "logs" / name / "metrics.csv").open() as file:
            rows = list(csv.DictReader(file))
        assert len(rows) == 2
        assert float(rows[1]["val_loss"]) > 0
        assert "lr" in rows[0]
        assert (out / f"{name}_curves.png").stat().st_size > 10_000
    spec = load_checkpoint(out / "checkpoints" / "resnet_deep" / "best.ckpt")["model"]
    assert spec["name"] == "resnet_deep"
    assert spec["kwargs"]["n_blocks"] == 3


def test_w5_trains_the_head_on_random_features_offline(flowers_dir: Path, tmp_path: Path) -> None:
    result = _run("w5_flowers_vgg16.py", tmp_path)
    out = tmp_path / "out"
    assert "randomly initialised VGG16 features" in result.stdout
    assert "overall" in result.stdout
    assert _accuracy(result.stdout) > 0.2  # five classes: chance is 0.2 (this run: 5 of 15)
    top5 = re.search(r"test/1/image_06743\.jpg: (.*)", result.stdout)
    assert top5
    assert sorted(n.rsplit(" ", 1)[0] for n in top5.group(1).split(", ")) == sorted(FLOWER_NAMES)
    assert (out / "topk.png").stat().st_size > 10_000
    checkpoint = load_checkpoint(out / "checkpoints" / "best.ckpt")
    assert checkpoint["classes"] == FLOWER_NAMES  # folders 1, 10, 102, 54, 74 as strings
    assert not (out / "checkpoints" / "last.ckpt").exists()


def test_w3_without_sample_data_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "no-shared-data"
    result = _run(
        "w3_cifar_subset.py", tmp_path, env={"VISIONKIT_SHARED_DATA": str(missing)}, ok=False
    )
    assert result.returncode == 1
    expected = f"sample data not found at {missing / 'cifar10_batches' / 'sample_batch'}"
    assert expected in result.stderr
    assert "--data-root" in result.stderr
    assert "Traceback" not in result.stderr


def test_downstream_callback_and_registered_model(tmp_path: Path) -> None:
    result = _run("custom_callback.py", tmp_path)
    out = tmp_path / "out"
    assert result.stdout.count("worst class this epoch:") == 2
    shown = re.search(r"val_worst_class_accuracy per epoch: ([0-9.]+), ([0-9.]+)\n", result.stdout)
    assert shown, result.stdout
    worst_per_epoch = [float(v) for v in shown.groups()]
    assert min(worst_per_epoch) > 0.5  # the monitored metric carries information
    assert re.search(r"tiny_cnn rebuilt from .*best\.ckpt: test accuracy [0-9.]+", result.stdout)
    checkpoint = load_checkpoint(out / "checkpoints" / "best.ckpt")
    assert checkpoint["model"] == {
        "name": "tiny_cnn",
        "kwargs": {"num_classes": 10, "width": 16},
        "class": "torch.nn.modules.container.Sequential",
    }
    worst = checkpoint["trainer_state"]["callbacks"]["WorstClassMonitor"]["worst"]
    assert len(worst) in (1, 2)
    assert all(name in [str(d) for d in range(10)] for name in worst)
    best = checkpoint["metrics"]["val_worst_class_accuracy"]
    assert round(best, 3) == max(worst_per_epoch)  # best.ckpt is the epoch with the highest


def test_own_data_fine_tunes_a_torchvision_backbone_on_one_folder(
    flowers_dir: Path, tmp_path: Path
) -> None:
    result = _run("own_data_finetune.py", tmp_path)
    out = tmp_path / "out"
    # one folder of 5 classes x 10 photos, split 6 / 2 / 2 per class
    assert "30 training, 10 validation, 10 test images" in result.stdout
    assert re.search(r"^epoch 2/2 ", result.stdout, re.MULTILINE)  # frozen epoch, then one more
    prediction = re.search(r"train/1/image_06734\.jpg: (.*)", result.stdout)
    assert prediction
    assert all(n.rsplit(" ", 1)[0] in FLOWER_NAMES for n in prediction.group(1).split(", "))
    best = next((out / "checkpoints").glob("*.ckpt"))
    checkpoint = load_checkpoint(best)
    assert checkpoint["classes"] == FLOWER_NAMES
    assert checkpoint["preprocess"]["resize"] == 256  # ResNet18's weights: 256, then 224
    assert checkpoint["preprocess"]["center_crop"] == 224


def test_each_run_gets_its_own_folder_and_never_replaces_an_earlier_checkpoint(
    tmp_path: Path,
) -> None:
    first = _run("w2_mnist_convnet.py", tmp_path, output_dir=False)
    runs = tmp_path / "outputs" / "w2_mnist_convnet"
    assert "outputs in outputs/w2_mnist_convnet/run_0" in first.stdout.replace(os.sep, "/")
    best = runs / "run_0" / "checkpoints" / "best.ckpt"
    before = best.read_bytes()
    second = _run("w2_mnist_convnet.py", tmp_path, output_dir=False)
    assert "outputs in outputs/w2_mnist_convnet/run_1" in second.stdout.replace(os.sep, "/")
    assert (runs / "run_1" / "checkpoints" / "best.ckpt").is_file()
    assert best.read_bytes() == before


def test_a_named_output_dir_that_holds_a_run_is_refused_without_overwrite(
    tmp_path: Path,
) -> None:
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)
    (tmp_path / "out" / "checkpoints" / "best.ckpt").write_bytes(b"an earlier run")
    refused = _run("w2_mnist_convnet.py", tmp_path, ok=False)
    assert refused.returncode != 0
    assert "already holds an earlier run's files; pass --overwrite" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (tmp_path / "out" / "checkpoints" / "best.ckpt").read_bytes() == b"an earlier run"
