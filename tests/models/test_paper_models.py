"""The paper's models: its random ResNet50, the Slim hybrid (resnet50-slim), grayscale Gabor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from transfusion_cli.errors import ConfigError
from transfusion_cli.plugins import get
from transfusion_cli.registry import InitContext


def context(arch: str, seed=0, argument=None, weights=None) -> InitContext:
    return InitContext(arch=get("architectures", arch), num_classes=5, in_chans=3, seed=seed,
                       argument=argument, weights=weights)


def build(arch: str, **kwargs):
    return get("architectures", arch).build(num_classes=5, in_chans=3, **kwargs)


def batchnorm_weights(model) -> dict[str, torch.Tensor]:
    return {name: module.weight.detach() for name, module in model.named_modules()
            if isinstance(module, torch.nn.BatchNorm2d)}


@pytest.fixture(scope="module")
def imagenet_resnet50(tmp_path_factory):
    """A fake ImageNet ResNet50 (timm layout, 1000 classes, distinctive BN values) as a .pth."""
    import timm

    torch.manual_seed(11)
    source = timm.create_model("resnet50", pretrained=False)
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.2, 1.5)
    path = tmp_path_factory.mktemp("imagenet") / "resnet50_imagenet.pth"
    torch.save(source.state_dict(), path)
    return path, {k: v.clone() for k, v in source.state_dict().items()}


def test_random_resnet50_has_no_all_zero_batchnorm_weight():
    model = build("resnet50")
    get("inits", "random").apply(model, context("resnet50", seed=3))
    weights = batchnorm_weights(model)
    assert any(name.endswith("bn3") for name in weights)
    zero = [name for name, w in weights.items() if not w.abs().sum() > 0]
    assert zero == []
    assert model.tfx_init_scheme["zero_init_last"] is False


def test_zero_init_last_can_be_asked_for():
    model = build("resnet50", zero_init_last=True)
    get("inits", "random").apply(model, context("resnet50", seed=3))
    weights = batchnorm_weights(model)
    assert all(not w.abs().sum() > 0 for name, w in weights.items() if name.endswith("bn3"))
    assert model.tfx_init_scheme["zero_init_last"] is True


def test_slim_is_resnet50_below_block3_and_half_width_above():
    slim, full = build("resnet50-slim"), build("resnet50")
    assert list(slim.tfx_blocks) == ["stem", "block1", "block2", "block3", "block4", "head"]
    slim_state, full_state = slim.state_dict(), full.state_dict()
    for key, value in full_state.items():
        if key.startswith(("conv1.", "bn1.", "layer1.", "layer2.")):
            assert slim_state[key].shape == value.shape, key
    assert slim.layer3[0].conv1.out_channels * 2 == full.layer3[0].conv1.out_channels
    assert slim.layer4[-1].conv3.out_channels * 2 == full.layer4[-1].conv3.out_channels
    assert slim(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    slim_params = sum(p.numel() for p in slim.parameters())
    assert slim_params < 0.35 * sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize(("argument", "copied"), [("block2", ("stem", "block1", "block2")),
                                                  ("2", ("stem", "block1"))])
def test_transfusion_into_slim_copies_resnet50_blocks_bit_exactly(imagenet_resnet50, argument,
                                                                  copied):
    path, expected = imagenet_resnet50
    ctx = context("resnet50-slim", seed=2, argument=argument, weights=path)
    model = build("resnet50-slim")
    report = get("inits", "transfusion").apply(model, ctx)
    twin = build("resnet50-slim")
    get("inits", "random").apply(twin, ctx)
    twin_state = twin.state_dict()
    prefixes = {"stem": ("conv1.", "bn1."), "block1": ("layer1.",), "block2": ("layer2.",)}
    inside = tuple(p for block in copied for p in prefixes[block])
    for key, value in model.state_dict().items():
        if key.startswith(inside) and not key.endswith("num_batches_tracked"):
            assert torch.equal(value, expected[key]), key
            assert key in report["loaded"]
        else:
            assert torch.equal(value, twin_state[key]), key
    assert report["source"]["via_arch"] == "resnet50"
    assert not any(k.startswith(("layer3.", "layer4.")) for k in report["loaded"])


def test_slim_refuses_transfusion_beyond_its_pretrained_blocks(imagenet_resnet50):
    path, _ = imagenet_resnet50
    with pytest.raises(ConfigError, match="only for stem, block1, block2"):
        get("inits", "transfusion").apply(build("resnet50-slim"),
                                          context("resnet50-slim", argument="block3",
                                                  weights=path))


def test_list_architectures_gives_slim_parameter_count(tfx):
    result = tfx("list", "architectures", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    slim = build("resnet50-slim")
    assert rows["resnet50-slim"]["params"] == sum(p.numel() for p in slim.parameters())


def dominant_cycles_per_pixel(kernel: np.ndarray) -> float:
    size = 128
    spectrum = np.abs(np.fft.fft2(kernel, s=(size, size)))
    fy, fx = np.unravel_index(spectrum.argmax(), spectrum.shape)
    fy, fx = (fy if fy < size // 2 else fy - size), (fx if fx < size // 2 else fx - size)
    return math.hypot(fx, fy) / size


@pytest.mark.parametrize(("out_channels", "in_channels", "kernel"),
                         [(64, 3, 7), (32, 3, 5), (20, 1, 3), (65, 4, 7)])
def test_gabor_filters_are_identical_across_input_channels(out_channels, in_channels, kernel):
    from transfusion_cli.models.gabor import gabor_bank

    weights, params = gabor_bank(out_channels, in_channels, kernel)
    assert weights.shape == (out_channels, in_channels, kernel, kernel)
    for index in range(out_channels):
        for channel in range(1, in_channels):
            assert np.array_equal(weights[index, channel], weights[index, 0])
    bands = [p.band for p in params]
    assert bands == ["low"] * ((out_channels + 1) // 2) + ["high"] * (out_channels // 2)
    low = [dominant_cycles_per_pixel(weights[i, 0]) for i, b in enumerate(bands) if b == "low"]
    high = [dominant_cycles_per_pixel(weights[i, 0]) for i, b in enumerate(bands) if b == "high"]
    assert np.median(low) < np.median(high)


def test_resnet50_gabor_conv1_is_two_4x8_grids():
    model = build("resnet50")
    report = get("inits", "gabor").apply(model, context("resnet50", seed=1))
    weight = model.conv1.weight.detach().numpy()
    assert weight.shape == (64, 3, 7, 7)
    assert (weight[:, 1] == weight[:, 0]).all() and (weight[:, 2] == weight[:, 0]).all()
    params = report["gabor"]
    for band in ("low", "high"):
        half = [p for p in params if p["band"] == band]
        assert len(half) == 32
        assert len({round(p["theta"], 6) for p in half}) == 8  # 8 orientations x 4 rows
        assert len({(round(p["wavelength"], 6), p["phase"]) for p in half}) == 4
