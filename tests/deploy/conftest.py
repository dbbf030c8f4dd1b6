"""Fixtures of the deploy tests: a real quick-start model to serve and predict with."""

from __future__ import annotations

import pytest
from serve_helpers import SyntheticModel


@pytest.fixture(scope="session")
def synthetic_model(tfx, tmp_path_factory) -> SyntheticModel:
    """`tfx fit` (2 steps) -> `tfx evaluate` -> `tfx export`, as the quick start does, kept
    small, and two sample images; made once per session."""
    root = tmp_path_factory.mktemp("serve-model")
    data = ["--option", "train_size=64", "--option", "val_size=40", "--option", "test_size=40"]
    tfx("fit", "--steps", "2", "--batch-size", "8", "--image-size", "32", *data,
        "--out", root / "run", check=True)
    best = root / "run" / "checkpoints" / "best.pt"
    tfx("evaluate", best, "--bootstrap", "200", check=True)
    tfx("export", best, "--out", root / "model.onnx", "--eval-images", "8", check=True)
    tfx("data", "save", "--data", "synthetic-retina", *data, "--n", "2",
        "--out", root / "samples", check=True)
    return SyntheticModel(root / "model.onnx", tuple(sorted((root / "samples").glob("*.png"))))
