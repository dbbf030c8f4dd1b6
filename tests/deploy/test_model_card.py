"""Model cards: facts from a checkpoint and its `tfx evaluate` record, rendered and written
without overwriting a user's file."""

from __future__ import annotations

import json

import pytest

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.deploy.model_card import (
    MARKER,
    card_facts,
    find_evaluation,
    render_card,
    write_card,
)
from transfusion_cli.errors import ConfigError

INFO = DatasetInfo(name="synthetic-retina", task="multiclass",
                   class_names=("0", "1", "2", "3", "4"), channels=3, image_size=64,
                   mean=(0.5,) * 3, std=(0.25,) * 3, referable_threshold=2,
                   selection_metric="referable_auc", preprocess="fundus_crop")
CHECKPOINT = {"arch": {"name": "cbr-tiny"}, "init": {"name": "checkpoint", "argument": "a.pt"},
              "step": 184, "config": {"data_seed": 3, "options": {"train_size": 100}},
              "metrics": {"step": 184, "referable_auc": 0.89, "auc": 0.82, "val_examples": 400,
                          "best": True}}


def evaluation_record(sha="abc", split="test"):
    ci = {"value": 0.84, "ci_low": 0.79, "ci_high": 0.9, "n_valid": 2000}
    rate = {"value": 0.85, "ci_low": 0.77, "ci_high": 0.92, "n_valid": 2000}
    return {"format": "tfx-evaluation", "sha256": sha, "split": split, "n": 400,
            "bootstrap": {"n_boot": 2000, "unit": "image"},
            "metrics": {"referable_auc": ci},
            "binary": {"referable (grade >= 2)": {"operating_point": {
                "threshold": 0.1, "target_sensitivity": 0.9, "sensitivity": rate,
                "specificity": rate, "ppv": rate, "npv": rate}}}}


def test_card_without_evaluation_labels_validation_metrics():
    facts = card_facts(CHECKPOINT, INFO, 100, None, 64)
    assert facts["init"] == "checkpoint:a.pt"
    assert facts["training_data"] == {"name": "synthetic-retina", "train_images": 100,
                                      "synthetic": True, "data_seed": 3,
                                      "options": {"train_size": 100}}
    assert facts["metrics"]["split"] == "val"
    assert facts["metrics"]["values"] == {"referable_auc": 0.89, "auc": 0.82}
    card = render_card(facts, "model.onnx")
    assert card.startswith(MARKER)
    assert "## Validation metrics (not a test result)" in card
    assert "**Warning: trained on tfx's built-in synthetic images" in card
    assert "the dataset's `fundus_crop` step: crop a fundus photo to its circular field" in card
    assert "not for diagnosis" in card
    json.dumps(facts)  # plain data, as stored in the ONNX metadata


def test_card_with_evaluation_shows_test_metrics_and_operating_point():
    facts = card_facts(CHECKPOINT, INFO, 100, evaluation_record(), 64)
    card = render_card(facts, "model.onnx")
    assert "## Test metrics" in card
    assert "| referable_auc | 0.840 (95% CI 0.790 to 0.900) |" in card
    assert "threshold 0.1000, chosen on the validation split for 90% sensitivity" in card


def test_find_evaluation_matches_the_checkpoint_hash(tmp_path):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"x")
    assert find_evaluation(ckpt, "abc") is None
    (tmp_path / "best.evaluation.json").write_text(json.dumps(evaluation_record("abc")))
    assert find_evaluation(ckpt, "abc")["split"] == "test"
    assert find_evaluation(ckpt, "other") is None  # another checkpoint's numbers: not used
    both = tmp_path / "eval" / "evaluation.json"  # `tfx evaluate A B --out` layout
    both.parent.mkdir()
    both.write_text(json.dumps({"evaluations": [evaluation_record("zzz"),
                                                evaluation_record("abc")]}))
    assert find_evaluation(ckpt, "abc", both)["sha256"] == "abc"
    with pytest.raises(ConfigError, match="does not exist"):
        find_evaluation(ckpt, "abc", tmp_path / "missing.json")


def test_write_card_leaves_a_users_file_alone(tmp_path):
    facts = card_facts(CHECKPOINT, INFO, 100, None, 64)
    model = tmp_path / "model.onnx"
    assert write_card(model, facts).read_text().startswith(MARKER)
    assert write_card(model, facts) is not None  # its own card: rewritten
    (tmp_path / "model.MODEL_CARD.md").write_text("my notes\n")
    assert write_card(model, facts) is None
    assert (tmp_path / "model.MODEL_CARD.md").read_text() == "my notes\n"
