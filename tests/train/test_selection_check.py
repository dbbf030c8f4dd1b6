"""`fit` warns when the validation split is too small to pick a checkpoint (few cases of one
side, or a wide bootstrap CI on the selection metric), records it in env.json and
best.pt, and the model card of an exported model carries the warning."""

from __future__ import annotations

import json

import fit_helpers
import numpy as np
import pytest
from fit_helpers import one_thread
from registry_helpers import registry_with

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.deploy.model_card import card_facts, render_card
from transfusion_cli.models.checkpoint import load_checkpoint
from transfusion_cli.train import FitConfig, fit
from transfusion_cli.train.selection_check import (
    MAX_CI_WIDTH,
    MIN_CASES,
    ci_warning,
    selection_ci,
    small_split_warnings,
    smaller_side,
)

RETINA = DatasetInfo(name="r", task="multiclass", class_names=tuple("01234"), channels=3,
                     image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, referable_threshold=2,
                     selection_metric="referable_auc")


def test_small_split_rule():
    assert smaller_side(np.array([0, 1, 2, 3, 4, 0]), RETINA) == (
        3, "referable or non-referable images")
    assert small_split_warnings(np.arange(100) % 5, RETINA) == []  # 40 referable, 60 not
    (warning,) = small_split_warnings(np.arange(20) % 5, RETINA)
    assert f"only 8 referable or non-referable images (tfx warns below {MIN_CASES})" in warning
    chest = DatasetInfo(name="c", task="multilabel", class_names=("a", "b"), channels=1,
                        image_size=32, mean=(0.5,), std=(0.25,), selection_metric="mean_auc")
    labels = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]] * 20, dtype=float)
    assert smaller_side(labels, chest) == (20, "'b' cases")


def test_selection_ci_is_wide_on_few_images_and_narrow_on_many():
    rng = np.random.default_rng(0)

    def outputs(n):
        y = np.arange(n) % 5
        return rng.normal(size=(n, 5)) + 0.8 * np.eye(5)[y], y

    few = selection_ci(*outputs(40), RETINA, n_boot=100)
    many = selection_ci(*outputs(3000), RETINA, n_boot=100)
    assert few["ci_low"] <= few["value"] <= few["ci_high"] and few["width"] > MAX_CI_WIDTH
    assert many["width"] < MAX_CI_WIDTH
    assert "width" in ci_warning(few, 40) and ci_warning(many, 3000) is None
    # A perfectly separated tiny split has a zero-width bootstrap CI: the case-count rule
    # (not the CI) is what flags it, as in the "AUC 1.0000 on 12 images".
    y = np.arange(12) % 5
    perfect = selection_ci(10.0 * np.eye(5)[y], y, RETINA, n_boot=50)
    assert perfect["value"] == 1.0 and perfect["width"] == 0.0
    assert small_split_warnings(y, RETINA)


def test_fit_on_a_tiny_validation_split_warns_and_records_it(tmp_path, capsys):
    config = FitConfig(arch="cbr-tiny", image_size=32, batch_size=8, data="fake-retina",
                       options={"n_train": 48, "n_val": 12}, steps=8, epochs=None,
                       eval_every=4, out=str(tmp_path / "run"))
    with registry_with(fit_helpers), one_thread():
        result = fit(config, show_progress=False)
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if "checkpoint selection:" in line]
    assert any("the validation split has only" in line for line in lines), stderr
    env = json.loads((result.run_dir / "env.json").read_text())
    check = env["selection_check"]
    assert check["min_cases"] == MIN_CASES and check["max_ci_width"] == MAX_CI_WIDTH
    assert check["best"]["metric"] == "referable_auc" and check["warnings"]
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert best["metrics"]["selection_warnings"] == check["warnings"]
    assert best["metrics"]["selection_ci"]["value"] == pytest.approx(result.best_value)
    with registry_with(fit_helpers):
        from transfusion_cli.models.checkpoint import checkpoint_dataset_info

        facts = card_facts(best, checkpoint_dataset_info(best), 48, None, 32)
    card = render_card(facts, "model.onnx")
    assert "**Warning (checkpoint selection): the validation split has only" in card
