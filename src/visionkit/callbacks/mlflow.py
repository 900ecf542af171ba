"""``MLflowLogger``: parameters, metrics and the best checkpoint in MLflow (``mlflow`` extra)."""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from visionkit._checks import check_bool, describe
from visionkit._version import __version__
from visionkit.callbacks.base import Callback
from visionkit.exceptions import ConfigurationError
from visionkit.models import model_spec
from visionkit.predict.checkpoint import unwrap_model

if TYPE_CHECKING:
    from torch import nn

    from visionkit.training.trainer import Trainer

__all__ = ["MLflowLogger"]

_TRAINER_PARAMS = (
    "max_epochs",
    "max_steps",
    "max_time",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "log_every_n_steps",
    "monitor",
    "seed",
    "channels_last",
    "compile",
)
_IMPLEMENTATION_FLAGS = {"foreach", "fused", "capturable", "differentiable"}  # not settings
_BATCH = 100  # MLflow takes at most 100 parameters and 1000 metrics per request
_MAX_PARAM = 6000  # characters of one parameter value


class MLflowLogger(Callback):
    """Log a run to MLflow: its parameters, metrics, and best checkpoint.

    At the start of ``fit`` the callback opens an MLflow run and logs as parameters the
    trainer's settings (``max_epochs``, ``max_steps``, ``precision``,
    ``accumulate_grad_batches``, ``seed``, ...), the optimizer (its class and the
    numbers of its first parameter group: ``optimizer.lr``, ``optimizer.momentum``, ...),
    the scheduler and loss classes, the model (its class, its registry name and arguments
    when built with ``create_model``, and its parameter counts), the number of classes,
    and ``params``.

    Metrics go in two series. Every epoch's metrics (``train_loss``, ``val_accuracy``,
    ``lr``, ``epoch_time``, ...) are logged with the epoch, counted from 0, as the MLflow
    step, so they line up with the [`History`][visionkit.History]; an epoch cut
    short and finished after a resume is logged again at the same step. The running
    training metrics the trainer reports every ``log_every_n_steps`` steps are logged as
    ``train_step/loss`` and ``train_step/accuracy`` at the global step. At the end of
    ``fit`` the best checkpoint (``trainer.best_checkpoint``) is logged as an artifact
    under ``checkpoints/``, and the run is marked finished; a ``fit`` that raises marks it
    failed (killed, for Ctrl-C or a preemption signal).

    The run id travels in checkpoints, so ``fit(resume_from=...)`` continues the same run
    (parameters that the run already has keep their first value: MLflow does not allow
    changing one). Under DDP only the first process logs. The callback talks to MLflow
    through an ``MlflowClient``, so it neither uses nor changes an active run of yours.

    Args:
        experiment_name: The experiment the run belongs to, created if missing.
        tracking_uri: Where MLflow stores runs: any MLflow tracking URI (a database such
            as ``"sqlite:///mlflow.db"``, a server ``"http://host:5000"``, ...). ``None``
            uses MLflow's default: the ``MLFLOW_TRACKING_URI`` environment variable if
            set, else a local store in the working folder.
        run_name: Name of the run; ``None`` lets MLflow pick one.
        tags: Tags to set on the run.
        params: More parameters to log, such as the batch size or the data set.
        log_checkpoints: Log the best checkpoint as an artifact at the end of ``fit``.
        log_steps: Log the running training metrics at the global step.

    Raises:
        ConfigurationError: If MLflow is not installed; the message names the extra to
            install (``pip install "visionkit-torch[mlflow]"``). Also if an argument has the
            wrong type.

    Examples:
        >>> logger = MLflowLogger("mnist", tracking_uri="sqlite:///mlflow.db",
        ...                       params={"batch_size": 64})  # doctest: +SKIP
        >>> trainer = Trainer(model, callbacks=[logger])  # doctest: +SKIP
    """

    def __init__(
        self,
        experiment_name: str = "visionkit",
        *,
        tracking_uri: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        log_checkpoints: bool = True,
        log_steps: bool = True,
    ) -> None:
        self.experiment_name = _check_text("experiment_name", experiment_name)
        self.tracking_uri = (
            None if tracking_uri is None else _check_text("tracking_uri", tracking_uri)
        )
        self.run_name = None if run_name is None else _check_text("run_name", run_name)
        self.tags = {str(k): str(v) for k, v in _check_mapping("tags", tags).items()}
        self.params = dict(_check_mapping("params", params))
        self.log_checkpoints = check_bool("log_checkpoints", log_checkpoints)
        self.log_steps = check_bool("log_steps", log_steps)
        self._client_class, self._entities = _mlflow()
        self.client: Any | None = None
        self.run_id: str | None = None

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the run (the checkpoint's run on resume) and log the parameters."""
        if not trainer.is_global_zero:
            return
        self.client = self._client_class(tracking_uri=self.tracking_uri)
        existing = self._reopen(self.run_id) if self.run_id else None
        if existing is None:
            experiment_id = self._experiment_id()
            tags = {"visionkit.version": __version__, **self.tags}
            run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
            existing = {}
        params = {**_run_params(trainer), **{str(k): v for k, v in self.params.items()}}
        self._log(params={k: v for k, v in params.items() if k not in existing})

    def on_train_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Log the running training metrics at the global step."""
        if self.log_steps and self.run_id is not None:
            running = {
                f"train_step/{k[6:]}": v for k, v in metrics.items() if k.startswith("train_")
            }
            self._log(metrics=running, step=trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Log the epoch's metrics with the epoch as the step."""
        if self.run_id is not None:
            self._log(metrics={k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        """Log the best checkpoint and mark the run finished."""
        if self.client is None or self.run_id is None:
            return
        best = trainer.best_checkpoint
        if self.log_checkpoints and best is not None and best.is_file():
            self.client.log_artifact(self.run_id, str(best), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, "FINISHED")

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """Mark the run failed (killed, for Ctrl-C or a preemption signal)."""
        if self.client is not None and self.run_id is not None:
            status = "FAILED" if isinstance(exception, Exception) else "KILLED"
            self.client.set_terminated(self.run_id, status)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The MLflow run id, so that a resumed ``fit`` continues the same run."""
        return {"run_id": self.run_id or ""}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = str(state.get("run_id") or "") or None

    # ------------------------------------------------------------------ helpers
    def _experiment_id(self) -> str:
        assert self.client is not None
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise ConfigurationError(
                    f"the MLflow experiment {self.experiment_name!r} is deleted: restore it "
                    "(mlflow experiments restore) or log to another experiment_name"
                )
            return str(experiment.experiment_id)
        return str(self.client.create_experiment(self.experiment_name))

    def _reopen(self, run_id: str) -> dict[str, str] | None:
        """The parameters of run ``run_id``, marked running again; ``None`` if it is gone."""
        assert self.client is not None
        try:
            run = self.client.get_run(run_id)
        except Exception as error:  # MlflowException: not in this tracking store
            warnings.warn(
                f"the checkpoint's MLflow run {run_id} is not in the tracking store "
                f"{self.tracking_uri or 'of MLflow default'} ({type(error).__name__}); logging to "
                "a new run",
                stacklevel=2,
            )
            return None
        self.client.update_run(run_id, status="RUNNING")
        return dict(run.data.params)

    def _log(
        self,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        assert self.client is not None
        assert self.run_id is not None
        metric, param = self._entities
        now = int(time.time() * 1000)
        values = [metric(name, float(value), now, step) for name, value in (metrics or {}).items()]
        texts = [param(name, str(value)[:_MAX_PARAM]) for name, value in (params or {}).items()]
        for start in range(0, max(len(values), len(texts)), _BATCH):
            self.client.log_batch(
                self.run_id,
                metrics=values[start : start + _BATCH],
                params=texts[start : start + _BATCH],
            )


def _run_params(trainer: Trainer) -> dict[str, Any]:
    """The parameters of a run: trainer settings, optimizer, model and data."""
    params: dict[str, Any] = {name: getattr(trainer, name, None) for name in _TRAINER_PARAMS}
    params["optimizer"] = type(trainer.optimizer).__name__
    group = trainer.optimizer.param_groups[0]
    for key, value in group.items():
        if key != "params" and key not in _IMPLEMENTATION_FLAGS and _is_plain(value):
            params[f"optimizer.{key}"] = value
    scheduler = getattr(trainer, "scheduler", None)
    params["scheduler"] = type(scheduler).__name__ if scheduler is not None else None
    params["loss"] = type(getattr(trainer, "loss_fn", None)).__name__
    params["device"] = str(trainer.device)
    params["world_size"] = getattr(trainer, "world_size", 1)
    classes = getattr(trainer, "classes", None)
    params["num_classes"] = len(classes) if classes else None
    params.update(_model_params(unwrap_model(trainer.model)))
    return {k: v for k, v in params.items() if v is not None}


def _model_params(model: nn.Module) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    spec = model_spec(model)
    if spec is not None:
        params["model.name"] = spec.name
        params.update({f"model.{k}": v for k, v in spec.kwargs.items()})
    return params


def _is_plain(value: Any) -> bool:
    """A number, bool or string, or a tuple / list of them (``betas``)."""
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return isinstance(value, (numbers.Number, str)) and not isinstance(value, complex)


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {describe(value)}")
    return value


def _check_mapping(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{name} must be a dict of names to values (or None), got {describe(value)}"
        )
    return value


def _mlflow() -> tuple[Any, tuple[Any, Any]]:
    """``MlflowClient`` and the ``Metric`` and ``Param`` entities, or a clear error."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise ConfigurationError(
            f"MLflowLogger needs MLflow, which is not installed ({error}): install the extra "
            'with pip install "visionkit-torch[mlflow]"'
        ) from error
    return MlflowClient, (Metric, Param)
