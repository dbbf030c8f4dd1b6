"""Heatmaps without torch: Grad-CAM from the class activation maps an exported model outputs.

For a model that ends in global average pooling and a linear head (logits z = W mean(F) + b
over feature maps F of h x w cells), the class activation map of output k is
``CAM_k = sum_c W[k, c] F_c``, and the gradient of any score s(z) with respect to F_c is
``sum_k ds/dz_k W[k, c] / (h w)`` at every cell. Grad-CAM's channel weights (the spatial mean
of that gradient) are therefore exactly ``sum_k g_k W[k, c] / (h w)`` with ``g = ds/dz``, and
Grad-CAM itself is ``relu(sum_k g_k CAM_k) / (h w)``: no backward pass, just the CAM output
`tfx export` adds to the graph and the gradient of the score with respect to the logits.

The explained score is the one the model is judged by (also `tfx explain`'s): the referable
probability (softmax mass of grades >= the referable threshold) for referable-DR models, else
the predicted class's logit (multi-class), the logit (binary) or the most probable label's
logit (multi-label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# An absolute scale: the heatmap value drawn at the top of the colour bar is this percentile
# of the per-image heatmap maxima over the model's validation images (set at export).
SCALE_PERCENTILE = 99.0


@dataclass(frozen=True)
class ExplainedScore:
    """What a heatmap explains: a description, its value, and d(score)/d(logits)."""

    description: str
    score: float
    gradient: np.ndarray  # (outputs,)
    kind: str  # "referable" or "logit"
    index: int  # the referable threshold, or the explained logit's index


def explained_score(logits: Sequence[float], task: str, class_names: Sequence[str],
                    referable_threshold: int | None) -> ExplainedScore:
    """The score a heatmap explains for one image's logits, and its gradient (see module)."""
    from scipy.special import softmax

    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    gradient = np.zeros_like(z)
    if task == "multiclass" and referable_threshold is not None:
        t = referable_threshold
        p = softmax(z)
        referable = float(p[t:].sum())
        # d/dz_k sum_{j>=t} p_j = p_k ([k >= t] - P(referable))
        gradient = p * ((np.arange(len(z)) >= t).astype(np.float64) - referable)
        return ExplainedScore(f"referable probability (grades >= {t})", referable,
                              gradient, "referable", t)
    if task == "binary":
        index, what = 0, f"logit of '{class_names[-1]}'"
    else:
        index = int(np.argmax(z))
        kind = "predicted class" if task == "multiclass" else "most probable label"
        what = f"logit of the {kind} '{class_names[index]}'"
    gradient[index] = 1.0
    return ExplainedScore(what, float(z[index]), gradient, "logit", index)


def grad_cam(cams: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Grad-CAM (h, w) of one image from its class activation maps (outputs, h, w) and the
    gradient of the explained score with respect to the logits (outputs,)."""
    cams = np.asarray(cams, dtype=np.float64)
    cells = cams.shape[-1] * cams.shape[-2]
    return np.maximum(np.tensordot(gradient, cams, axes=1), 0.0) / cells


def upsample(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A (h, w) map resized bilinearly to (size, size), as the model's input is laid out."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))  # mode "F"
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def field_of_view(image: np.ndarray, step: Any) -> np.ndarray | None:
    """Mask (H, W) of the pixels inside the imaged field (the fundus disc) of a prepared
    model input, from the preprocessing step's ``field_of_view``; None: the whole image."""
    finder = getattr(step, "field_of_view", None) if step is not None else None
    if finder is None:
        return None
    rgb = image if image.ndim == 3 and image.shape[2] == 3 else \
        np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    mask = finder(rgb)
    return None if mask is None else np.asarray(mask, dtype=bool)


def absolute_scale(maxima: Sequence[float]) -> float | None:
    """The colour-bar top for a model: ``SCALE_PERCENTILE`` of per-image heatmap maxima (None
    when every map is zero)."""
    values = np.asarray([m for m in maxima if np.isfinite(m)], dtype=np.float64)
    if not len(values) or values.max() <= 0:
        return None
    return float(np.percentile(values, SCALE_PERCENTILE))


def batch_scale(heatmaps: Sequence[np.ndarray | None]) -> float:
    """One colour-bar top for a batch of maps: their largest value (1.0 when all are zero)."""
    peaks = [float(np.max(h)) for h in heatmaps if h is not None and h.size]
    top = max(peaks, default=0.0)
    return top if top > 0 else 1.0
