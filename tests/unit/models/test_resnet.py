"""ResNetDeep: seed 002's NetResDeep, with the seed's shared-block bug fixed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionkit import ConfigurationError
from visionkit.models import ResBlock, ResNetDeep, count_parameters, create_model

PER_BLOCK = 32 * 32 * 9 + 2 * 32  # conv without bias + BatchNorm weight and bias


def _shared_tensors(blocks: nn.Module) -> int:
    pointers = [p.data_ptr() for block in blocks for p in block.parameters()]
    return len(pointers) - len(set(pointers))


def test_no_two_blocks_share_a_parameter_tensor() -> None:
    model = create_model("resnet_deep", n_channels=32, n_blocks=10, num_classes=2)
    assert len(model.blocks) == 10
    assert len({id(block) for block in model.blocks}) == 10
    assert _shared_tensors(model.blocks) == 0


def test_the_seed_construction_would_fail_this_check() -> None:
    seed_blocks = nn.Sequential(*(3 * [ResBlock(8)]))  # the seed's n_blocks * [ResBlock(...)]
    assert _shared_tensors(seed_blocks) > 0


def test_parameter_count_grows_by_one_block_per_depth_step() -> None:
    counts = [count_parameters(ResNetDeep(3, 2, n_blocks=n)) for n in (0, 1, 2, 10)]
    base = 896 + 65_568 + 66  # stem conv, fc 2048->32, fc 32->2
    assert counts == [base + n * PER_BLOCK for n in (0, 1, 2, 10)]
    assert counts[-1] == 159_330


def test_forward_shape_and_default_count() -> None:
    model = create_model("resnet_deep")
    assert count_parameters(model) == 159_594
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_blocks_train_independently() -> None:
    model = ResNetDeep(3, 2, n_channels=8, n_blocks=3)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    grads = [block.conv.weight.grad for block in model.blocks]
    assert all(g is not None for g in grads)
    assert not torch.equal(grads[0], grads[1])  # type: ignore[arg-type]


def test_resblock_keeps_shape_and_adds_the_skip() -> None:
    block = ResBlock(4).eval()
    nn.init.zeros_(block.conv.weight)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(block(x), x)  # relu(bn(0)) = 0, so only the skip remains


def test_wrong_input_names_the_argument() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"ResNetDeep expected 3x32x32 images, got 1x28x28: pass in_channels=1, input_size=28",
    ):
        create_model("resnet_deep")(torch.zeros(1, 1, 28, 28))


def test_other_input_sizes_and_bad_arguments() -> None:
    model = ResNetDeep(1, 10, n_channels=8, n_blocks=2, input_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigurationError, match="n_blocks must be an integer >= 0, got -1"):
        ResNetDeep(n_blocks=-1)
    with pytest.raises(ConfigurationError, match=r"at least 4x4; got input_size=3"):
        ResNetDeep(input_size=3)
