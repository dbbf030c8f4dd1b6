"""The class-activation-map output `tfx export` adds to models that end in global average
pooling and a linear head (every CBR model, most timm CNNs): the exported graph returns the
logits and, as a second output, ``CAM_k = sum_c W[k, c] F_c`` for every output k over the
last feature maps F (a 1x1 convolution with the head's weights). deploy/heatmaps.py turns it
into Grad-CAM without torch.

Whether a model has that shape is checked numerically, not assumed from its class: the
model's own logits must equal ``head(mean(forward_features(x)))`` on real inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transfusion_cli.data.bundles import adapt_channels

# |model(x) - head(mean(features))| allowed, relative to the logits' scale (float32 rounding).
HEAD_TOLERANCE = 1e-4


def pooled_linear_head(model: nn.Module, example: torch.Tensor) -> nn.Linear | None:
    """The model's linear head when it ends in global average pooling + that head (checked on
    ``example``, normalised inputs as the model takes them), else None."""
    features_of = getattr(model, "forward_features", None)
    head = model.get_classifier() if hasattr(model, "get_classifier") else \
        getattr(model, "head", None)
    if features_of is None or not isinstance(head, nn.Linear):
        return None
    with torch.inference_mode():
        try:
            features = features_of(example)
        except Exception:  # a forward_features with another signature: no CAM, not an error
            return None
        if features.ndim != 4 or features.shape[1] != head.in_features:
            return None
        expected = model(example).float()
        got = head(features.mean(dim=(2, 3))).float()
    if got.shape != expected.shape:
        return None
    scale = max(1.0, float(expected.abs().max()))
    return head if float((got - expected).abs().max()) <= HEAD_TOLERANCE * scale else None


class LogitsAndCams(nn.Module):
    """(logits, class activation maps (N, outputs, h, w)) of a pooled-linear-head model;
    ``in_chans``: adapt the input channels first, as training does."""

    def __init__(self, model: nn.Module, head: nn.Linear, in_chans: int | None = None):
        super().__init__()
        self.model, self.head, self.in_chans = model, head, in_chans

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = adapt_channels(images, self.in_chans) if self.in_chans else images
        features = self.model.forward_features(x)
        logits = self.head(features.mean(dim=(2, 3)))
        cams = F.conv2d(features, self.head.weight[:, :, None, None])
        return logits, cams
