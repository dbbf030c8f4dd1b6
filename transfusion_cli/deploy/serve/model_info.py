"""What `GET /v1/model` answers and the page's model-card panel shows: the model's own facts
(its tfx metadata and model card), how it decides, and what the server accepts."""

from __future__ import annotations

import importlib.util
from typing import Any

from transfusion_cli.data.preprocess import MEMORY_FORMATS
from transfusion_cli.deploy.model_card import intended_use, is_synthetic
from transfusion_cli.deploy.predict import OnnxClassifier
from transfusion_cli.deploy.serve.settings import ServeSettings


def accepts_dicom(classifier: OnnxClassifier) -> bool:
    """DICOM uploads make sense for grayscale (chest X-ray) models with pydicom installed."""
    return classifier.metadata.channels == 1 and importlib.util.find_spec("pydicom") is not None


def model_facts(classifier: OnnxClassifier, settings: ServeSettings) -> dict[str, Any]:
    """Plain data for `GET /v1/model`."""
    meta = classifier.metadata
    card = meta.model_card or {}
    training = card.get("training_data") or {"name": meta.dataset,
                                             "synthetic": is_synthetic(meta.dataset)}
    referable = None
    if meta.task == "multiclass" and meta.referable_threshold is not None:
        referable = {"from_class_index": meta.referable_threshold,
                     "classes": list(meta.class_names[meta.referable_threshold:])}
    return {
        "model": classifier.path.name,
        "task": meta.task,
        "classes": list(meta.class_names),
        "architecture": meta.architecture,
        "precision": meta.precision,
        "dataset": meta.dataset,
        "synthetic": bool(training.get("synthetic")),
        "warnings": list(classifier.model_warnings),
        "referable": referable,
        # How predictions and decisions are made: the rules and each question's threshold
        # with its source (the validated operating point, --threshold, or the default).
        "decision": classifier.rule.to_dict(),
        "operating_points": meta.operating_points or card.get("operating_points"),
        "heatmaps": classifier.has_heatmaps,
        "training_data": training,
        "metrics": card.get("metrics"),
        "intended_use": intended_use({"training_data": training}),
        "preprocessing": {"image_size": meta.image_size, "channels": meta.channels,
                          "mean": list(meta.mean), "std": list(meta.std),
                          "step": meta.preprocess,
                          "step_description": (card.get("preprocessing") or {}).get(
                              "step_description")},
        "selection_warnings": list(card.get("selection_warnings") or []),
        "card": card,
        "provider": classifier.provider,
        "tfx_version": meta.tfx_version,
        "accepts": {"formats": list(MEMORY_FORMATS), "dicom": accepts_dicom(classifier),
                    "max_images": settings.max_images,
                    "max_file_bytes": settings.max_file_bytes,
                    "max_request_bytes": settings.max_request_bytes,
                    "max_pixels": settings.max_pixels},
    }
