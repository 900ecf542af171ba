"""MLflowLogger against a real local MLflow store: parameters, metrics, artifact, resume."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import mnist_sample
from visionkit.models import create_model

mlflow_tracking = pytest.importorskip("mlflow.tracking")

from visionkit.callbacks import MLflowLogger  # noqa: E402

# MLflow's SQLite store uses a SQLAlchemy option that SQLAlchemy deprecates
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module: creating its tables takes about 2 seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _data() -> tuple[Any, Any]:
    data = mnist_sample()
    return data.train.select(range(320)), data.val.select(range(100))  # 10 batches of 32


def _trainer(logger: MLflowLogger, folder: Path, *, epochs: int, **options: Any) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[16], num_classes=10)
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=epochs,
        max_steps=10 * epochs,
        log_every_n_steps=5,
        device="cpu",
        enable_progress_bar=False,
        callbacks=[ModelCheckpoint(folder, monitor="val_loss"), logger],
        **options,
    )


def _history(client: Any, run_id: str, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, name)]


def test_a_run_is_logged_and_a_resumed_fit_continues_it(tracking_uri: str, tmp_path: Path) -> None:
    train, val = _data()
    logger = MLflowLogger("tests", tracking_uri=tracking_uri, params={"batch_size": 32})
    trainer = _trainer(logger, tmp_path / "checkpoints", epochs=2, seed=3)
    trainer.fit(train, val, batch_size=32)

    client = mlflow_tracking.MlflowClient(tracking_uri)
    assert logger.run_id is not None
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    params = run.data.params
    expected = {
        "max_epochs": "2",
        "max_steps": "20",
        "precision": "32",
        "accumulate_grad_batches": "1",
        "seed": "3",
        "optimizer": "SGD",
        "optimizer.lr": "0.05",
        "optimizer.momentum": "0.9",
        "loss": "CrossEntropyLoss",
        "model": "MLP",
        "model.name": "mlp",
        "model.hidden": "[16]",
        "num_parameters": str(784 * 16 + 16 + 16 * 10 + 10),
        "num_classes": "10",
        "batch_size": "32",
    }
    assert {k: params.get(k) for k in expected} == expected
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        assert _history(client, logger.run_id, name) == list(enumerate(trainer.history[name]))
    steps = _history(client, logger.run_id, "train_step/loss")
    assert [step for step, _ in steps] == [5, 10, 15, 20]
    artifacts = [a.path for a in client.list_artifacts(logger.run_id, "checkpoints")]
    assert trainer.best_checkpoint is not None
    assert artifacts == [f"checkpoints/{trainer.best_checkpoint.name}"]

    # a new process would build everything anew: the run id comes from the checkpoint
    resumed_logger = MLflowLogger("tests", tracking_uri=tracking_uri)
    resumed = _trainer(resumed_logger, tmp_path / "checkpoints", epochs=4, seed=3)
    resumed.fit(train, val, batch_size=32, resume_from=tmp_path / "checkpoints" / "last.ckpt")
    assert resumed_logger.run_id == logger.run_id
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == "2"  # MLflow keeps a parameter's first value
    history = _history(client, logger.run_id, "val_loss")
    assert history == list(enumerate(resumed.history["val_loss"]))
    assert [step for step, _ in history] == [0, 1, 2, 3]
    assert len(client.search_runs([run.info.experiment_id])) == 1


class _Boom(Callback):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def on_train_batch_end(self, trainer: Trainer, batch: Any, outputs: Any) -> None:
        if trainer.global_step == 3:
            raise self.error


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_a_fit_that_raises_ends_the_run(
    error: BaseException, status: str, tracking_uri: str, tmp_path: Path
) -> None:
    train, val = _data()
    logger = MLflowLogger("tests", tracking_uri=tracking_uri, run_name="broken")
    trainer = _trainer(logger, tmp_path, epochs=1)
    trainer.callbacks.append(_Boom(error))
    with pytest.raises(type(error)):
        trainer.fit(train, val, batch_size=32)
    assert logger.run_id is not None
    run = mlflow_tracking.MlflowClient(tracking_uri).get_run(logger.run_id)
    assert run.info.status == status
    assert run.info.run_name == "broken"


def test_only_the_first_process_logs(tracking_uri: str) -> None:
    logger = MLflowLogger("tests", tracking_uri=tracking_uri)
    other_rank = SimpleNamespace(is_global_zero=False, global_step=5)
    logger.on_fit_start(other_rank)  # type: ignore[arg-type]
    logger.on_train_log(other_rank, {"train_loss": 1.0})  # type: ignore[arg-type]
    logger.on_epoch_end(other_rank, 0, {"train_loss": 1.0})  # type: ignore[arg-type]
    logger.on_fit_end(other_rank)  # type: ignore[arg-type]
    assert logger.run_id is None
    assert logger.client is None


def test_without_mlflow_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    module = importlib.reload(importlib.import_module("visionkit.callbacks.mlflow"))
    importlib.reload(importlib.import_module("visionkit.callbacks"))  # imports without it
    with pytest.raises(ConfigurationError, match=r'pip install "visionkit-torch\[mlflow\]"'):
        module.MLflowLogger()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"experiment_name": ""}, "experiment_name must be a non-empty string"),
        ({"tags": ["a"]}, "tags must be a dict"),
        ({"log_checkpoints": "yes"}, "log_checkpoints"),
    ],
)
def test_arguments_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MLflowLogger(**options)
