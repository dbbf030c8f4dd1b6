"""What a registered architecture looks like without building its weights: size and blocks."""

from __future__ import annotations

from typing import Any


def architecture_summary(spec: Any, num_classes: int = 5, in_chans: int = 3) -> dict[str, Any]:
    """``params`` (trainable and frozen tensors' elements) and ordered ``blocks`` of
    ``spec.build(num_classes, in_chans)``, built on the meta device (no memory for weights)."""
    import torch

    from transfusion_cli.models.blocks import block_names

    with torch.device("meta"):
        model = spec.build(num_classes=num_classes, in_chans=in_chans)
    return {"params": sum(p.numel() for p in model.parameters()), "blocks": block_names(model)}
