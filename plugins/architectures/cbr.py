"""The paper's CBR family (Conv-BatchNorm-ReLU stacks), built from model_zoo.yaml."""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from transfusion_cli.api import ArchitectureSpec, ConfigError, hookimpl, load_zoo


class CBRNet(nn.Module):
    """conv-bn-relu(-maxpool) blocks, global average pooling, one linear classifier."""

    def __init__(self, channels: list[int], pools: list[bool], kernel: int,
                 num_classes: int = 5, in_chans: int = 3):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        blocks: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        previous = in_chans
        for index, (width, pool) in enumerate(zip(channels, pools, strict=True), start=1):
            layers = [
                nn.Conv2d(previous, width, kernel, stride=1, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            setattr(self, f"block{index}", nn.Sequential(*layers))
            blocks[f"block{index}"] = (f"block{index}",)
            previous = width
        self.num_blocks = len(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(previous, num_classes)
        blocks["head"] = ("head",)
        self.tfx_blocks = blocks
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) normal convs, BN weight 1 / bias 0, PyTorch's default linear head."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                bound = 1 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.uniform_(module.bias, -bound, bound)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps after the last block."""
        for index in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{index}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.forward_features(x)), 1))


def build_cbr(name: str, num_classes: int = 5, in_chans: int = 3) -> CBRNet:
    """Build the zoo's CBR entry ``name``."""
    entry = load_zoo()[name]
    return CBRNet(entry["channels"], entry["pools"], entry["kernel"], num_classes, in_chans)


FAMILY = "cbr"


def check_entry(name: str, entry: dict) -> None:
    """A zoo entry of this family is complete: kernel, and channels and pools of equal length."""
    channels, pools = entry.get("channels"), entry.get("pools")
    if not channels or len(channels) != len(pools or []) or "kernel" not in entry:
        raise ConfigError(f"model_zoo.yaml: CBR entry '{name}' needs kernel, and channels and "
                          "pools of equal length.")


@hookimpl
def tfx_register_architectures(register):
    for name, entry in load_zoo().items():
        if entry["family"] != FAMILY:
            continue
        check_entry(name, entry)
        register(ArchitectureSpec(
            name=name,
            build=partial(build_cbr, name),
            description=entry.get("description", ""),
            family=FAMILY,
            default_image_size=entry.get("default_image_size", 224),
        ))
