"""Validation metrics against values worked out by hand and an independent pairwise AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.scores import (
    compute_metrics,
    is_better,
    metric_values,
    probabilities,
)


def info_for(task: str, classes: tuple[str, ...], threshold: int | None = None) -> DatasetInfo:
    channels = 1
    selection = {"multilabel": "mean_auc"}.get(task, "referable_auc" if threshold else "auc")
    return DatasetInfo(name="hand", task=task, class_names=classes, channels=channels,
                       image_size=32, mean=(0.5,), std=(0.25,), referable_threshold=threshold,
                       selection_metric=selection)


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


def pairwise_auc(y, score):
    """Mann-Whitney AUC by counting pairs (ties count one half): independent of sklearn."""
    pos, neg = score[y == 1], score[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# Multiclass, 3 grades, referable from grade 2. Logits = log(probabilities), so the softmax
# gives back exactly these rows.
MC_PROBS = np.array([[0.7, 0.2, 0.1],
                     [0.3, 0.4, 0.3],
                     [0.2, 0.3, 0.5],
                     [0.5, 0.3, 0.2]])
MC_TARGETS = np.array([0, 1, 2, 2])


def test_multiclass_by_hand():
    m = compute_metrics(np.log(MC_PROBS), MC_TARGETS, info_for("multiclass", ("g0", "g1", "g2"), 2))
    # argmax = [0, 1, 2, 0]: 3 of 4 right.
    assert m["accuracy"] == pytest.approx(0.75)
    # One-vs-rest: class 0: 0.7 beats 0.3, 0.2, 0.5 -> 1; class 1: 0.4 beats 0.2, 0.3, 0.3 -> 1;
    # class 2: positives {0.5, 0.2} vs negatives {0.1, 0.3}: 3 of 4 pairs -> 0.75.
    assert m["auc"] == pytest.approx((1 + 1 + 0.75) / 3)
    # Referable (grade >= 2): score = P(grade 2) = [.1, .3, .5, .2], labels [0, 0, 1, 1]:
    # 0.5 beats both, 0.2 beats 0.1 only -> 3/4.
    assert m["referable_auc"] == pytest.approx(0.75)
    # Quadratic kappa: observed disagreement sum w*O = (2-0)^2 * 1 = 4; true histogram [1,1,2],
    # predicted [2,1,1]; expected sum w*E = 26 / 4 = 6.5; kappa = 1 - 4 / 6.5 = 5/13.
    assert m["kappa"] == pytest.approx(5 / 13)
    assert m["nan_reasons"] == {}
    assert "notes" not in m


def test_referable_probability_is_softmax_mass_of_high_grades():
    probs = np.array([[0.1, 0.5, 0.2, 0.2], [0.6, 0.1, 0.25, 0.05], [0.05, 0.05, 0.1, 0.8]])
    targets = np.array([1, 0, 3])
    m = compute_metrics(np.log(probs), targets, info_for("multiclass", tuple("abcd"), 2))
    # Referable scores (grade >= 2 mass): [0.4, 0.3, 0.9], labels [0, 0, 1] -> AUC 1.
    assert m["referable_auc"] == pytest.approx(1.0)
    # If the score were P(grade 2) alone ([0.2, 0.25, 0.1]), the AUC would be 0.
    assert pairwise_auc(np.array([0, 0, 1]), np.array([0.2, 0.25, 0.1])) == 0


def test_multilabel_masks_nan_targets_by_hand():
    targets = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.3], [0.2, 0.99], [0.4, 0.6], [0.5, 0.1]])
    m = compute_metrics(logit(probs), targets, info_for("multilabel", ("A", "B")))
    # A: positives {0.9, 0.4} vs negatives {0.2, 0.5}: 3 of 4 pairs.
    assert m["auc/A"] == pytest.approx(0.75)
    # B, row 1 masked: positive {0.6} vs negatives {0.3, 0.1} -> 1. Unmasked (as a 0) it would
    # lose to 0.99 and give 2/3.
    assert m["auc/B"] == pytest.approx(1.0)
    assert m["mean_auc"] == pytest.approx(0.875)


def test_binary_youden_by_hand():
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.7])
    y = np.array([0, 0, 1, 1, 1], dtype=np.float32)
    m = compute_metrics(logit(p)[:, None], y, info_for("binary", ("positive",)))
    # Pairs: 0.35 beats 0.1; 0.8 and 0.7 beat both negatives -> 5 of 6.
    assert m["auc"] == pytest.approx(5 / 6)
    # J at thresholds 0.8: 1/3-0; 0.7: 2/3-0; 0.4: 2/3-1/2; 0.35: 1-1/2; 0.1: 1-1 -> 0.7 wins.
    assert m["threshold"] == pytest.approx(0.7)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_pairwise_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    k, n = 4, 60
    logits = rng.normal(size=(n, k)).round(1)  # rounding makes ties
    targets = rng.integers(0, k, n)
    targets[:k] = np.arange(k)
    m = compute_metrics(logits, targets, info_for("multiclass", tuple("abcd"), 2))
    probs = probabilities(logits, "multiclass")
    expected = np.mean([pairwise_auc((targets == c).astype(int), probs[:, c]) for c in range(k)])
    assert m["auc"] == pytest.approx(expected)
    referable = pairwise_auc((targets >= 2).astype(int), probs[:, 2:].sum(axis=1))
    assert m["referable_auc"] == pytest.approx(referable)
    assert m["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == targets))


def test_one_class_present_gives_nan_with_reason():
    info = info_for("binary", ("positive",))
    m = compute_metrics(np.zeros((3, 1)), np.ones(3, dtype=np.float32), info)
    for key in ("auc", "sensitivity", "specificity", "threshold"):
        assert math.isnan(m[key])
        assert "only positive" in m["nan_reasons"][key]


def test_multiclass_nan_reasons():
    info = info_for("multiclass", ("g0", "g1", "g2"), 2)
    # All targets grade 0 and every prediction grade 0: AUC, referable AUC, kappa undefined.
    logits = np.log(np.array([[0.8, 0.1, 0.1]] * 3))
    m = compute_metrics(logits, np.zeros(3, dtype=int), info)
    assert math.isnan(m["auc"]) and "only 1 class" in m["nan_reasons"]["auc"]
    assert math.isnan(m["referable_auc"])
    assert "only non-referable" in m["nan_reasons"]["referable_auc"]
    assert math.isnan(m["kappa"]) and "undefined" in m["nan_reasons"]["kappa"]
    assert m["accuracy"] == 1.0


def test_absent_class_macro_auc_over_present_classes_with_note():
    info = info_for("multiclass", ("g0", "g1", "g2"), None)
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    m = compute_metrics(np.log(probs), np.array([0, 1, 0]), info)
    # class 0: positives {0.6, 0.5} vs {0.2} -> 1; class 1: {0.7} vs {0.3, 0.4} -> 1.
    assert m["auc"] == pytest.approx(1.0)
    assert "g2" in m["notes"]["auc"]
    assert "referable_auc" not in m


def test_multilabel_label_all_masked_or_single_class():
    targets = np.array([[1, np.nan], [0, np.nan], [1, 0]], dtype=np.float32)
    m = compute_metrics(np.zeros((3, 2)), targets, info_for("multilabel", ("A", "B")))
    assert math.isnan(m["auc/B"]) and "only negative 'B'" in m["nan_reasons"]["auc/B"]
    assert m["auc/A"] == pytest.approx(0.5)  # all scores tied
    assert m["mean_auc"] == pytest.approx(0.5)
    assert "B" in m["notes"]["mean_auc"]
    targets[:, 0] = np.nan
    m = compute_metrics(np.zeros((3, 2)), targets, info_for("multilabel", ("A", "B")))
    assert math.isnan(m["mean_auc"]) and "no label" in m["nan_reasons"]["mean_auc"]


def test_probabilities():
    p = probabilities(np.array([[0.0, np.log(3.0)], [1000.0, -1000.0]]), "multiclass")
    np.testing.assert_allclose(p, [[0.25, 0.75], [1.0, 0.0]])
    s = probabilities(np.array([0.0, 800.0, -800.0]), "binary")
    np.testing.assert_allclose(s, [0.5, 1.0, 0.0])


def test_bad_shapes_and_non_finite_are_errors():
    from transfusion_cli.errors import DataError

    info = info_for("multiclass", ("a", "b"))
    with pytest.raises(DataError, match="needs 2"):
        compute_metrics(np.zeros((2, 3)), np.zeros(2), info)
    with pytest.raises(DataError, match="non-finite"):
        compute_metrics(np.array([[np.inf, 0.0], [0.0, 1.0]]), np.array([0, 1]), info)


def test_selection_helpers():
    assert is_better(0.5, None) and is_better(0.6, 0.5) and not is_better(0.4, 0.5)
    assert not is_better(float("nan"), 0.1) and is_better(0.1, float("nan"))
    assert metric_values({"auc": 0.5, "nan_reasons": {}, "notes": {}}) == {"auc": 0.5}


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, transfusion_cli.scores; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "False"


def test_two_class_multiclass_auc_is_the_binary_auc():
    import numpy as np

    from transfusion_cli.data.bundles import DatasetInfo
    from transfusion_cli.scores import compute_metrics

    info = DatasetInfo(name="two", task="multiclass", class_names=("a", "b"), channels=1,
                       image_size=8, mean=(0.5,), std=(0.5,))
    logits = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0], [0.0, 0.5]])
    targets = np.array([1, 0, 1, 0])
    # Scores for class b rank 2.0 > 1.0 > 0.5 > -1.0: positives at ranks 1-2, so AUC = 1.
    assert compute_metrics(logits, targets, info)["auc"] == 1.0
    targets = np.array([0, 1, 1, 0])  # positives 2.0 and -1.0 vs negatives 1.0, 0.5: 2 of 4
    assert compute_metrics(logits, targets, info)["auc"] == 0.5
