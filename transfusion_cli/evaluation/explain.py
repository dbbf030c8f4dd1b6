"""`tfx explain`: class-activation heatmaps (Grad-CAM and Grad-CAM++, from the ``grad-cam``
package) of a checkpoint on image files, overlaid on the model's input.

The explained score is the one the model is judged by: the referable probability (softmax mass
of the grades >= the referable threshold) for referable-DR models, else the predicted class's
logit (multi-class), the logit (binary) or the most probable label's logit (multi-label).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.errors import ConfigError, DataError, TfxError

METHODS = ("gradcam", "gradcam++")
MIN_PICTURE = 256  # overlays narrower than this are enlarged (whole-pixel factor)
INSTALL_HINT = ("`tfx explain` needs the grad-cam package: pip install 'tfx[explain]' "
                "(or pip install grad-cam).")


class MissingExtraError(TfxError):
    """An optional dependency that a command needs is not installed."""


def _cam_classes() -> dict[str, Any]:
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    except ImportError as exc:
        raise MissingExtraError(INSTALL_HINT) from exc
    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}


class ReferableTarget:
    """Grad-CAM target: the softmax mass of the classes >= ``threshold`` (referable DR)."""

    def __init__(self, threshold: int):
        self.threshold = threshold

    def __call__(self, model_output):
        import torch

        probs = torch.softmax(model_output, dim=-1)
        return probs[..., self.threshold:].sum(dim=-1)


class LogitTarget:
    """Grad-CAM target: one output logit."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, model_output):
        return model_output[..., self.index]


@dataclass
class Explanation:
    """The heatmaps of one image."""

    image: str
    target: str
    score: float
    layer: str
    files: dict[str, str] = field(default_factory=dict)
    # Peak of each heatmap in model-input pixels (row, column) and its size.
    peaks: dict[str, tuple[int, int]] = field(default_factory=dict)
    input_size: int = 0
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (no heatmap arrays)."""
        return {"image": self.image, "target": self.target, "score": self.score,
                "layer": self.layer, "files": self.files, "input_size": self.input_size,
                "peaks": {k: list(v) for k, v in self.peaks.items()}}


def default_layer(model) -> str:
    """The last block before the head (``tfx_blocks``), as a submodule name."""
    blocks = [modules for name, modules in getattr(model, "tfx_blocks", {}).items()
              if name != "head"]
    if not blocks:
        raise ConfigError("The model names no blocks (tfx_blocks); choose a layer with --layer "
                          "NAME (a submodule name, e.g. layer4).")
    return blocks[-1][-1]


def resolve_layer(model, layer: str | None) -> tuple[str, Any]:
    """``(name, module)`` of ``--layer`` (a block name or a submodule name), or the default."""
    name = default_layer(model) if layer is None else layer
    blocks = getattr(model, "tfx_blocks", {})
    if name in blocks and name != "head":
        name = blocks[name][-1]
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        known = [b for b in blocks if b != "head"]
        raise ConfigError(f"--layer {layer!r} is not a block or submodule of this model; "
                          f"blocks: {', '.join(known)} (default: the last).") from None


def explained_target(info, logits) -> tuple[Any, str, float]:
    """The target object, its description and its value for one image's logits (1-D)."""
    import torch

    if info.task == "multiclass" and info.referable_threshold is not None:
        t = info.referable_threshold
        score = float(torch.softmax(logits, -1)[t:].sum())
        return ReferableTarget(t), f"referable probability (grades >= {t})", score
    if info.task == "binary":
        return LogitTarget(0), f"logit of '{info.class_names[-1]}'", float(logits[0])
    index = int(torch.argmax(logits))
    kind = "predicted class" if info.task == "multiclass" else "most probable label"
    return (LogitTarget(index), f"logit of the {kind} '{info.class_names[index]}'",
            float(logits[index]))


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) image with the [0, 1] heatmap blended on top (jet colour map)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = image if image.shape[2] == 3 else np.repeat(image, 3, axis=2)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, heatmap, use_rgb=True,
                             image_weight=0.55)


def explain_images(checkpoint_path: str | os.PathLike, images: Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike | None = None,
                   methods: Sequence[str] = METHODS, layer: str | None = None
                   ) -> list[Explanation]:
    """Heatmaps of ``checkpoint_path`` on each image; PNG overlays into ``out_dir`` if given
    (``<image stem>.<method>.png``)."""
    import torch
    from PIL import Image

    from transfusion_cli.data.bundles import adapt_channels
    from transfusion_cli.data.preprocess import load_prepared, normalize_array
    from transfusion_cli.io import atomic_write
    from transfusion_cli.models.checkpoint import (
        build_model,
        checkpoint_dataset_info,
        load_checkpoint,
    )

    cams = _cam_classes()
    unknown = [m for m in methods if m not in cams]
    if unknown:
        raise ConfigError(f"Unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    checkpoint = load_checkpoint(checkpoint_path)
    info = checkpoint_dataset_info(checkpoint)
    model = build_model(checkpoint).eval()
    in_chans = int(checkpoint["arch"]["in_chans"])
    layer_name, module = resolve_layer(model, layer)
    explainers = {m: cams[m](model=model, target_layers=[module]) for m in methods}
    results = []
    for path in images:
        try:
            prepared = load_prepared(path, info.image_size, info.channels, info.fundus_crop)
        except TfxError as exc:
            raise DataError(f"{path}: {str(exc).splitlines()[0]}") from exc
        x = torch.from_numpy(normalize_array(prepared[None], info.mean, info.std))
        x = adapt_channels(x, in_chans)
        with torch.no_grad():
            logits = model(x)[0].float()
        target, description, score = explained_target(info, logits)
        result = Explanation(str(path), description, score, layer_name,
                             input_size=info.image_size)
        for method, cam in explainers.items():
            heatmap = cam(input_tensor=x, targets=[target])[0]
            result.heatmaps[method] = heatmap
            row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            result.peaks[method] = (int(row), int(col))
            if out_dir is not None:
                target_path = Path(out_dir) / f"{Path(path).stem}.{method}.png"
                picture = Image.fromarray(overlay(prepared, heatmap))
                if picture.width < MIN_PICTURE:  # small model inputs: enlarged to be seen
                    factor = -(-MIN_PICTURE // picture.width)
                    picture = picture.resize((picture.width * factor,
                                              picture.height * factor), Image.Resampling.NEAREST)
                atomic_write(target_path, lambda tmp, p=picture: p.save(tmp, format="PNG"))
                result.files[method] = str(target_path)
        results.append(result)
    return results
