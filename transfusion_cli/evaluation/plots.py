"""Figures of an evaluation for a clinical reader: ROC and precision-recall curves with the
operating point marked, and the reliability diagram (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.io import atomic_write


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _caption(record: dict[str, Any], entry: dict[str, Any]) -> str:
    unit = record["bootstrap"]["unit"]
    patients = f", {record['patients']} patients" if record.get("patients") else ""
    return (f"{Path(record['model']).name} on {record['dataset']} {record['split']} split: "
            f"n = {entry['n']} images{patients}, {entry['positives']} positive "
            f"(prevalence {entry['prevalence']:.1%}). 95% CIs: {record['bootstrap']['n_boot']} "
            f"bootstrap resamples of {unit}s.")


def _save(fig, path: Path) -> Path:
    plt = _figure()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                                   bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _point(entry: dict[str, Any]) -> dict[str, Any] | None:
    point = entry.get("operating_point")
    return point if point and "threshold" in point else None


def roc_figure(record: dict[str, Any], name: str, y: np.ndarray, score: np.ndarray,
               auc: tuple[float, float, float] | None, path: Path) -> Path:
    """ROC curve of one yes/no question, the operating point marked."""
    from sklearn.metrics import roc_curve

    plt = _figure()
    entry = record["binary"][name]
    fpr, tpr, _ = roc_curve(y, score)
    fig, ax = plt.subplots(figsize=(5.5, 5.8))
    label = "ROC" if auc is None else f"ROC, AUC {auc[0]:.3f} (95% CI {auc[1]:.3f}-{auc[2]:.3f})"
    ax.plot(fpr, tpr, color="tab:blue", lw=2, label=label)
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="chance")
    point = _point(entry)
    if point:
        sens, spec = point["sensitivity"]["value"], point["specificity"]["value"]
        ax.plot(1 - spec, sens, "o", color="tab:red", ms=8,
                label=f"operating point (threshold {point['threshold']:.3f} for "
                      f"{point['target_sensitivity']:.0%} sensitivity on val): "
                      f"sens {sens:.2f}, spec {spec:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (false positive rate)",
           ylabel="sensitivity (true positive rate)", title=f"ROC: {name}")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.text(0.01, -0.02, _caption(record, entry), fontsize=7, wrap=True, va="top")
    return _save(fig, path)


def pr_figure(record: dict[str, Any], name: str, y: np.ndarray, score: np.ndarray,
              path: Path) -> Path:
    """Precision-recall curve of one yes/no question, the operating point marked."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _figure()
    entry = record["binary"][name]
    precision, recall, _ = precision_recall_curve(y, score)
    fig, ax = plt.subplots(figsize=(5.5, 5.8))
    ax.plot(recall, precision, color="tab:blue", lw=2,
            label=f"precision-recall, average precision {average_precision_score(y, score):.3f}")
    ax.axhline(entry["prevalence"], color="gray", ls="--", lw=1,
               label=f"chance (prevalence {entry['prevalence']:.1%})")
    point = _point(entry)
    if point:
        sens, ppv = point["sensitivity"]["value"], point["ppv"]["value"]
        ax.plot(sens, ppv, "o", color="tab:red", ms=8,
                label=f"operating point: sensitivity {sens:.2f}, PPV {ppv:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall (sensitivity)",
           ylabel="precision (positive predictive value)", title=f"Precision-recall: {name}")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    fig.text(0.01, -0.02, _caption(record, entry), fontsize=7, wrap=True, va="top")
    return _save(fig, path)


def reliability_figure(record: dict[str, Any], name: str, path: Path) -> Path:
    """Reliability diagram: observed frequency against mean predicted probability per bin."""
    plt = _figure()
    entry = record["binary"][name]
    calibration = entry["calibration"]
    filled = [i for i, c in enumerate(calibration["count"]) if c > 0]
    predicted = [calibration["mean_predicted"][i] for i in filled]
    observed = [calibration["observed"][i] for i in filled]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfect calibration")
    ax.plot(predicted, observed, "o-", color="tab:blue",
            label=f"model (ECE {calibration['ece']:.3f}, {calibration['bins']} bins)")
    ax.set(ylim=(0, 1.01), ylabel="observed frequency of positives",
           title=f"Reliability diagram: {name}")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    edges = np.asarray(calibration["edges"])
    hist.bar(edges[:-1], calibration["count"], width=np.diff(edges), align="edge",
             color="tab:blue", alpha=0.6, edgecolor="white")
    hist.set(xlim=(0, 1), xlabel="predicted probability", ylabel="images")
    fig.text(0.01, -0.01, _caption(record, entry), fontsize=7, wrap=True, va="top")
    return _save(fig, path)


def slug(name: str) -> str:
    """A file-name-safe form of a question name (``referable (grade >= 2)`` -> ``referable``)."""
    head = name.split(" (")[0]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in head).strip("_") or "label"
