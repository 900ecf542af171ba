"""Models: a registry of factories, the networks of the five workflows, any backbone.

Every model is one call away with [`create_model`][visionkit.models.create_model]; your own models
join the registry with [`register_model`][visionkit.models.register_model] and then work with the
``Trainer``, checkpoints and the ``Predictor`` like the built-in ones. Every torchvision classifier
(``"resnet50"``) and, with ``pip install "visionkit-torch[timm]"``, every timm model
(``"timm/convnext_tiny"``) is found by name too, with its head sized for ``num_classes``.
"""

from visionkit.models._convnet import ConvNet, convnet, convnet_cifar
from visionkit.models._mlp import MLP, mlp
from visionkit.models._registry import (
    ModelSpec,
    create_model,
    get_model_factory,
    list_models,
    model_spec,
    register_model,
)
from visionkit.models.backbones import (
    PreprocessConfig,
    output_layers,
    preprocess_config,
    timm_model,
    torchvision_model,
)
from visionkit.models.resnet import ResBlock, ResNetDeep, resnet_deep
from visionkit.models.transfer import (
    count_parameters,
    find_head,
    freeze,
    is_frozen,
    make_head,
    replace_head,
    trainable_parameters,
    unfreeze,
)
from visionkit.models.vgg import VGG16Transfer, vgg16_transfer

__all__ = [
    "MLP",
    "ConvNet",
    "ModelSpec",
    "PreprocessConfig",
    "ResBlock",
    "ResNetDeep",
    "VGG16Transfer",
    "convnet",
    "convnet_cifar",
    "count_parameters",
    "create_model",
    "find_head",
    "freeze",
    "get_model_factory",
    "is_frozen",
    "list_models",
    "make_head",
    "mlp",
    "model_spec",
    "output_layers",
    "preprocess_config",
    "register_model",
    "replace_head",
    "resnet_deep",
    "timm_model",
    "torchvision_model",
    "trainable_parameters",
    "unfreeze",
    "vgg16_transfer",
]
