"""TF-Slim's random initialisation, the one the paper's ResNet50 and Inception-v3 started from.

The paper's standard models came from TF-Slim (``nets/resnet_utils.resnet_arg_scope`` and
``nets/inception_utils.inception_arg_scope``): every convolution, the logits layer included,
draws its weights from ``variance_scaling_initializer()`` (factor 2.0, fan-in, truncated
normal) and has no bias (the logits' bias starts at 0); BatchNorm starts at scale 1, offset 0
(timm's BatchNorm init, kept).
timm initialises ResNets with He normal over the fan-out, which gives layers whose fan-out
exceeds their fan-in (a bottleneck's 1x1 expansion: 4x) a smaller weight scale, and matters
for Mean Var, a claim about weight scale.

A truncated normal is cut at two of its standard deviations; TF's truncated variance scaling
divides ``sqrt(factor / fan_in)`` by ``TRUNCATION`` (the standard deviation of a standard
normal cut at +-2) so that the drawn weights have exactly that standard deviation. TF-Slim's
own contrib initialiser used ``sqrt(1.3 * factor / fan_in)`` for the same purpose (0.3 %
larger). Layers that carry a ``stddev`` attribute (timm's Inception-v3 auxiliary head) take
TF-Slim's explicit ``trunc_normal(stddev)`` for those layers instead.

An architecture asks for it with ``tfx_init_scheme["weights"] == SCHEME`` (``model_zoo.yaml``:
``init_scheme: tf-slim``); the ``random`` init, which every other init starts from, applies it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEME = "tf-slim"
FACTOR = 2.0
TRUNCATION = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]
DESCRIPTION = ("TF-Slim (the paper's ResNet50 / Inception-v3): conv and logits weights from a "
               "truncated normal, variance scaling factor 2.0 over the fan-in (std sqrt(2 / "
               "fan_in) after truncation at 2 sigma), zero biases, BatchNorm scale 1 offset 0")


def tf_slim_std(fan_in: int, factor: float = FACTOR) -> float:
    """The standard deviation, before truncation, of TF's truncated variance scaling."""
    return math.sqrt(factor / fan_in) / TRUNCATION


def apply_tf_slim(model: nn.Module) -> dict:
    """Re-draw every Conv2d and Linear weight of ``model`` as TF-Slim does (from the current
    torch RNG) and zero their biases. BatchNorm keeps the architecture's init (scale 1, offset
    0 as in TF-Slim, unless the zoo asks for ``zero_init_last``). Returns what it did."""
    layers = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                explicit = getattr(module, "stddev", None)
                std = float(explicit) if explicit is not None else \
                    tf_slim_std(module.weight[0].numel())
                nn.init.trunc_normal_(module.weight, 0.0, std, -2 * std, 2 * std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
                layers += 1
    return {"scheme": SCHEME, "layers": layers}
