"""`tfx explain`: class-activation heatmaps (Grad-CAM and Grad-CAM++, from the ``grad-cam``
package) of a checkpoint on image files, overlaid on the model's input.

The explained score is the one the model is judged by (deploy/heatmaps.py ``explained_score``,
shared with `tfx predict --heatmaps`): the referable probability (softmax mass of the grades
>= the referable threshold) for referable-DR models, else the predicted class's logit
(multi-class), the logit (binary) or the most probable label's logit (multi-label).

Inputs go through the same check as `tfx predict` (deploy/input_checks.py: wrong kind of
image is an error; unlike inputs and synthetic-data models warn), and the overlays are drawn
as predict draws them (deploy/overlays.py), on one scale per method across the images of a
call: the raw Grad-CAM values, not each map stretched to its own maximum.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.errors import ConfigError, MissingExtraError, TfxError
from transfusion_cli.registry import TfxModel

METHODS = ("gradcam", "gradcam++")
INSTALL_HINT = ("`tfx explain` needs the grad-cam package: "
                "pip install 'transfusion-cli[explain]' (or pip install grad-cam).")


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
    # The input check's warnings (shared with `tfx predict`), the predicted class and its
    # probability, and each method's colour-bar top (one scale across the call).
    warnings: list[str] = field(default_factory=list)
    model_warnings: list[str] = field(default_factory=list)  # the leading, model-wide ones
    predicted: str = ""
    probability: float = float("nan")
    scales: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why this image was not explained (the others still are)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (no heatmap arrays); an image that failed has only ``image``
        and ``error``."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "target": self.target, "score": self.score,
                "predicted": self.predicted, "probability": self.probability,
                "layer": self.layer, "files": self.files, "input_size": self.input_size,
                "peaks": {k: list(v) for k, v in self.peaks.items()},
                "scales": self.scales, "warnings": list(self.warnings)}


def default_layer(model: TfxModel) -> str:
    """The last block before the head (``tfx_blocks``), as a submodule name."""
    blocks = [modules for name, modules in getattr(model, "tfx_blocks", {}).items()
              if name != "head"]
    if not blocks:
        raise ConfigError("The model names no blocks (tfx_blocks); choose a layer with --layer "
                          "NAME (a submodule name, e.g. layer4).")
    return blocks[-1][-1]


def resolve_layer(model, layer: str | None, example=None) -> tuple[str, Any]:
    """``(name, module)`` of ``--layer`` (a block name or a submodule name), or the default;
    with an ``example`` input, a ConfigError unless the layer's output on it is a
    convolutional feature map (N, C, H, W), the only kind Grad-CAM explains."""
    blocks = getattr(model, "tfx_blocks", {})
    known = [b for b in blocks if b != "head"]
    if layer is not None and not layer.strip():
        raise ConfigError(f"--layer is empty; give a block: {', '.join(known)} (default: the "
                          "last), or a convolutional submodule inside one.")
    name = default_layer(model) if layer is None else layer
    if name in blocks and name != "head":
        name = blocks[name][-1]
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"--layer {layer!r} is not a block or submodule of this model; "
                          f"blocks: {', '.join(known)} (default: the last).") from None
    if example is not None:
        shapes = output_shapes(model, [name, *(blocks[b][-1] for b in known)], example)
        if not is_feature_map(shapes[name]):
            working = [b for b in known if is_feature_map(shapes[blocks[b][-1]])]
            what = ("is not used by the model's forward pass" if shapes[name] is None
                    else f"outputs shape {tuple(shapes[name])}")
            shown = repr(layer) if layer is not None else f"{name!r} (the default)"
            raise ConfigError(f"--layer {shown} {what}, not a convolutional feature map "
                              "larger than 1x1 (N, C, H, W), which Grad-CAM needs; layers "
                              "that work: "
                              f"{', '.join(working) or 'none'} (default: the last), or a "
                              "convolutional submodule inside one.")
    return name, module


def is_feature_map(shape: tuple[int, ...] | None) -> bool:
    """Whether an output of this shape is a convolutional feature map (N, C, H, W) with more
    than one position (a 1x1 map, e.g. after global pooling, has nothing to localise)."""
    return shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1


def output_shapes(model, names: Sequence[str], example) -> dict[str, tuple[int, ...] | None]:
    """The output shape of each named submodule on ``example`` (None: the submodule is not
    called, or returns something other than one tensor)."""
    import torch

    shapes: dict[str, tuple[int, ...] | None] = dict.fromkeys(names)

    def recorder(name: str):
        def record(_module, _inputs, output) -> None:
            if torch.is_tensor(output):
                shapes[name] = tuple(output.shape)
        return record

    handles = [model.get_submodule(name).register_forward_hook(recorder(name))
               for name in dict.fromkeys(names)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def explained_target(info, logits) -> tuple[Any, str, float]:
    """The target object, its description and its value for one image's logits (1-D)."""
    from transfusion_cli.deploy.heatmaps import explained_score

    explained = explained_score(logits.detach().cpu().double().numpy(), info.task,
                                info.class_names, info.referable_threshold)
    target = (ReferableTarget(explained.index) if explained.kind == "referable"
              else LogitTarget(explained.index))
    return target, explained.description, explained.score


def unscaled(cam_class):
    """``cam_class`` (a grad-cam method) returning its raw maps: the relu'd weighted sum of
    activations at the layer's resolution, without the library's per-image min-max scaling
    (so maps of different images stay comparable on one scale)."""

    class Unscaled(cam_class):
        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            pairs = zip(self.activations_and_grads.activations,
                        self.activations_and_grads.gradients, strict=True)
            return [np.maximum(self.get_cam_image(input_tensor, layer, targets,
                                                  a.cpu().numpy(), g.cpu().numpy(),
                                                  eigen_smooth), 0)[:, None]
                    for layer, (a, g) in zip(self.target_layers, pairs, strict=True)]

        def aggregate_multi_layers(self, cam_per_target_layer):
            return np.mean(np.concatenate(cam_per_target_layer, axis=1), axis=1)

    Unscaled.__name__ = f"Unscaled{cam_class.__name__}"
    return Unscaled


def explain_images(checkpoint_path: str | os.PathLike, images: Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike | None = None,
                   methods: Sequence[str] = METHODS, layer: str | None = None
                   ) -> list[Explanation]:
    """Heatmaps of ``checkpoint_path`` on each image; PNG overlays into ``out_dir`` if given
    (``<image stem>.<method>.png``, stems numbered where images share one), one scale per
    method across ``images``. An image that cannot be explained gets a result with ``error``
    set, and the others are still explained (as `tfx predict` does)."""
    import torch

    from transfusion_cli.data.bundles import adapt_channels
    from transfusion_cli.data.preprocess import normalize_array, preprocess_step, read_image
    from transfusion_cli.deploy.heatmaps import upsample
    from transfusion_cli.deploy.input_checks import check_image, synthetic_warnings
    from transfusion_cli.models.trained import load_trained
    from transfusion_cli.scores import probabilities

    cams = _cam_classes()
    unknown = [m for m in methods if m not in cams]
    if unknown:
        raise ConfigError(f"Unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    trained = load_trained(checkpoint_path, "cpu")  # a few images: the CPU is enough
    info, model, in_chans = trained.info, trained.model, trained.in_chans
    example = torch.zeros(1, in_chans, info.image_size, info.image_size)
    layer_name, module = resolve_layer(model, layer, example)
    explainers = {m: unscaled(cams[m])(model=model, target_layers=[module]) for m in methods}
    step = preprocess_step(info.preprocess)
    model_warnings = synthetic_warnings(info.name)
    results, inputs = [], []
    for path in images:
        try:
            decoded = read_image(path, min_size=info.image_size)
            prepared, warned = check_image(decoded, str(path), info.image_size, info.channels,
                                           info.name, step)
        except TfxError as exc:
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = message if str(path) in message else f"{path}: {message}"
            results.append(_failed(str(path), layer_name, message, model_warnings))
            continue
        x = torch.from_numpy(normalize_array(prepared[None], info.mean, info.std))
        x = adapt_channels(x, in_chans)
        with torch.no_grad():
            logits = model(x)[0].float()
        if not torch.isfinite(logits).all():  # never a heatmap of NaN
            results.append(_failed(str(path), layer_name, (
                f"{path}: the model's output is not finite; no explanation. Check the image, "
                "or the checkpoint's weights."), model_warnings))
            continue
        target, description, score = explained_target(info, logits)
        predicted, probability = _most_probable(
            info, probabilities(logits.double().numpy()[None], info.task)[0])
        result = Explanation(str(path), description, score, layer_name,
                             input_size=info.image_size, warnings=[*model_warnings, *warned],
                             model_warnings=list(model_warnings),
                             predicted=predicted, probability=probability)
        for method, cam in explainers.items():
            heatmap = upsample(cam(input_tensor=x, targets=[target])[0], info.image_size)
            result.heatmaps[method] = heatmap
            row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            result.peaks[method] = (int(row), int(col))
        results.append(result)
        inputs.append(prepared)
    if out_dir is not None:
        explained = [r for r in results if r.error is None]
        write_overlays(explained, inputs, Path(out_dir), step, model_warnings)
    return results


def _failed(image: str, layer: str, message: str, model_warnings: Sequence[str]
            ) -> Explanation:
    """The result of an image that could not be explained."""
    return Explanation(image, "", float("nan"), layer, model_warnings=list(model_warnings),
                       warnings=list(model_warnings), error=message)


def _most_probable(info, probs: np.ndarray) -> tuple[str, float]:
    """(class or label, its probability): the argmax, or for a binary model the more probable
    side of its one probability."""
    names = info.class_names
    if info.task == "binary":
        p = float(probs[0])
        if p >= 0.5:
            return names[-1], p
        return (names[0] if len(names) == 2 else f"not {names[-1]}"), 1.0 - p
    best = int(np.argmax(probs))
    return names[best], float(probs[best])


def write_overlays(results: Sequence[Explanation], inputs: Sequence[np.ndarray], out_dir: Path,
                   step, model_warnings: Sequence[str]) -> None:
    """``<image stem>.<method>.png`` per result: the shared overlay (deploy/overlays.py), one
    colour scale per method across all results; a stem that two images share is numbered
    (``eye``, ``eye-2``: deploy/overlays.py ``unique_stems``), so no overlay replaces another."""
    from transfusion_cli.deploy.heatmaps import batch_scale, field_of_view
    from transfusion_cli.deploy.overlays import (
        OverlayText,
        overlay_png,
        unique_stems,
        write_overlay,
    )

    methods = list(results[0].heatmaps) if results else []
    scales = {m: batch_scale([r.heatmaps[m] for r in results]) for m in methods}
    stems = unique_stems([r.image for r in results])
    for result, prepared, stem in zip(results, inputs, stems, strict=True):
        mask = field_of_view(prepared, step)
        for method in methods:
            result.scales[method] = scales[method]
            text = OverlayText(
                title=(f"{Path(result.image).name}\npredicted {result.predicted} "
                       f"(p {result.probability:.2f})\n{method} at {result.layer}: "
                       f"{result.target} = {result.score:.3f}"),
                colour_bar=f"{method}, scale shared by the {len(results)} image(s)",
                warning="; ".join(model_warnings) or None)
            png = overlay_png(prepared, result.heatmaps[method], text, scales[method], mask)
            target_path = out_dir / f"{stem}.{method}.png"
            write_overlay(target_path, png, "--out")
            result.files[method] = str(target_path)
