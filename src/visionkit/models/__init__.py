"""Models: a registry of factories and the networks of the five workflows.

Every model is one call away with :func:`create_model`; your own models join the registry
with :func:`register_model` and then work with the ``Trainer``, checkpoints and the
``Predictor`` like the built-in ones.
"""

from visionkit.models._registry import (
    ModelSpec,
    create_model,
    get_model_factory,
    list_models,
    model_spec,
    register_model,
)
from visionkit.models.mlp import MLP, mlp

__all__ = [
    "MLP",
    "ModelSpec",
    "create_model",
    "get_model_factory",
    "list_models",
    "mlp",
    "model_spec",
    "register_model",
]
