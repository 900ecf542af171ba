"""Every torchvision classifier by name: head sized for the classes, head-only training.

Models that take under half a second to build and run on one CPU thread run for real, with
random weights. The heavy ones (VGG, ViT-L/H, ConvNeXt-B/L, ...) are built on the ``meta``
device, which checks the architecture, the head and the output shape without allocating
their weights; the ``slow`` twin runs them for real. RegNets compute their widths with
tensors, so they cannot be built on ``meta`` and always run on the CPU.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision

from visionkit.models import create_model, model_spec, output_layers

NAMES = torchvision.models.list_models(module=torchvision.models)
HEAVY = {
    *(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")),
    *("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "maxvit_t"),
    *("convnext_small", "convnext_base", "convnext_large", "efficientnet_b7"),
    *("efficientnet_v2_l", "swin_s", "swin_b", "swin_v2_s", "swin_v2_b"),
    *("wide_resnet50_2", "wide_resnet101_2", "resnext101_32x8d", "resnext101_64x4d"),
    *("regnet_y_16gf", "regnet_x_32gf", "regnet_y_32gf", "regnet_y_128gf"),
}
"""Over 0.5 s to build and run on one CPU thread (regnet_y_128gf: 10 s)."""
NO_META = {name for name in NAMES if name.startswith("regnet")}
SIZES = {"alexnet": 64, "inception_v3": 75, "maxvit_t": 224, "vit_h_14": 28}
"""Smallest input each architecture takes where 32x32 is too small."""


def _kwargs(name: str) -> dict[str, Any]:
    return {"image_size": SIZES.get(name, 32)} if name.startswith("vit_") else {}


def _check(name: str, device: str) -> None:
    size = SIZES.get(name, 32)
    with torch.device(device):
        model = create_model(name, num_classes=7, freeze_backbone=True, **_kwargs(name))
        images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        out = model.eval()(images)
    assert out.shape == (2, 7)
    if device == "cpu":
        assert bool(torch.isfinite(out).all())
    heads = output_layers(model)
    assert all(model.get_submodule(h).weight.shape[0] == 7 for h in heads)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head_params = {f"{h}.{n}" for h in heads for n, _ in model.get_submodule(h).named_parameters()}
    assert trainable == head_params, "freeze_backbone=True trains the head only"
    assert model_spec(model).name == f"torchvision/{name}"  # type: ignore[union-attr]


def test_the_list_is_torchvisions_classifiers() -> None:
    assert len(NAMES) >= 80
    assert set(NAMES) >= HEAVY


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "regnet_y_128gf" else n for n in NAMES],
)
def test_every_classifier_by_name(name: str) -> None:
    _check(name, "meta" if name in HEAVY - NO_META else "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HEAVY - NO_META))
def test_heavy_classifiers_run_for_real(name: str) -> None:
    _check(name, "cpu")
