"""How `tfx predict` and `tfx serve` turn probabilities into decisions, at which threshold, and
where that threshold comes from (pure Python: no torch, no numpy).

A thresholded decision answers a yes/no question: "referable (grade >= 2)" for retina-type
models (the probability mass of the referable grades), the positive class of a binary model,
each label of a multi-label model. The threshold is, in order of precedence: ``--threshold X``
(the user's, not validated), ``--operating-point NAME``, the model's first validated operating
point (chosen by `tfx evaluate` on the validation split for a target sensitivity and stored by
`tfx export`), else the uncalibrated default 0.5. A multi-class grade is always the most
probable class (argmax); it is shown beside the referable decision, never in its place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.errors import ConfigError

UNCALIBRATED_THRESHOLD = 0.5
UNCALIBRATED_SOURCE = (f"uncalibrated default {UNCALIBRATED_THRESHOLD}, run tfx evaluate "
                       "(then tfx export again) for a validated operating point")


def referable_question(threshold: int) -> str:
    """The name of the referable question (`tfx evaluate`'s binary problem, the key of its
    operating points)."""
    return f"referable (grade >= {threshold})"


def operating_point_name(target_sensitivity: float) -> str:
    """``0.9`` -> ``sens90``, ``0.925`` -> ``sens92.5``: the name `--operating-point` takes."""
    percent = f"{target_sensitivity * 100:.1f}".rstrip("0").rstrip(".")
    return f"sens{percent}"


def questions(metadata: ModelMetadata) -> list[str]:
    """The yes/no questions a threshold decides for this model (none for a plain multi-class
    model, whose only decision is the argmax)."""
    if metadata.task == "multiclass":
        return ([referable_question(metadata.referable_threshold)]
                if metadata.referable_threshold is not None else [])
    if metadata.task == "binary":
        return [metadata.class_names[-1]]
    return list(metadata.class_names)


@dataclass(frozen=True)
class Threshold:
    """The threshold of one question and where it comes from."""

    value: float
    source: str
    operating_point: str | None = None
    validated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"threshold": self.value, "source": self.source,
                "operating_point": self.operating_point, "validated": self.validated}


@dataclass(frozen=True)
class DecisionRule:
    """Thresholds per question and the rules predictions are made by."""

    task: str
    thresholds: dict[str, Threshold]
    predicted_rule: str
    referable_rule: str | None = None

    def threshold(self, question: str) -> Threshold:
        """The threshold of ``question``."""
        return self.thresholds[question]

    @property
    def sources(self) -> list[str]:
        """The distinct threshold sources, in question order."""
        return list(dict.fromkeys(t.source for t in self.thresholds.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (`GET /v1/model`, reports): rules and thresholds with their sources."""
        return {"predicted_rule": self.predicted_rule, "referable_rule": self.referable_rule,
                "thresholds": {q: t.to_dict() for q, t in self.thresholds.items()}}


def validated_source(name: str, entry: dict[str, Any]) -> str:
    """"validated: 90 % sensitivity on validation (...)" for a stored operating point."""
    target = entry.get("target_sensitivity")
    chosen = entry.get("chosen_on") or {}
    what = (f"{target * 100:g} % sensitivity" if isinstance(target, int | float)
            else "a target sensitivity")
    where = ", ".join(str(part) for part in (
        chosen.get("dataset"), f"{chosen['n']} images" if chosen.get("n") else None) if part)
    return (f"validated: {what} on validation (operating point {name}"
            + (f"; {where}" if where else "") + ")")


def decision_rule(metadata: ModelMetadata, threshold: float | None = None,
                  operating_point: str | None = None) -> DecisionRule:
    """The rule a model decides by, with ``--threshold`` / ``--operating-point`` applied."""
    asked = questions(metadata)
    if threshold is not None and operating_point is not None:
        raise ConfigError("Give --threshold or --operating-point, not both.")
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"--threshold {threshold} is not a probability; give a number from 0 "
                          "to 1.")
    if not asked and (threshold is not None or operating_point is not None):
        raise ConfigError("This multi-class model decides by the most probable class (argmax); "
                          "no threshold applies, so drop --threshold / --operating-point.")
    stored = metadata.operating_points or {}
    if operating_point is not None:
        known = sorted({name for q in asked for name in stored.get(q, {})})
        missing = [q for q in asked if operating_point not in stored.get(q, {})]
        if missing:
            raise ConfigError(
                f"--operating-point {operating_point!r} is not stored in this model for "
                f"{', '.join(missing)}; "
                + (f"it has: {', '.join(known)}." if known else
                   "it has none: run `tfx evaluate CKPT` (--sensitivity 0.9 0.95 ...), then "
                   "`tfx export CKPT` again."))
    thresholds = {}
    for question in asked:
        points = stored.get(question) or {}
        if threshold is not None:
            thresholds[question] = Threshold(float(threshold), f"--threshold {threshold:g}: set "
                                             "by the user, not validated")
        elif points:
            name = operating_point or next(iter(points))
            entry = points[name]
            thresholds[question] = Threshold(float(entry["threshold"]),
                                             validated_source(name, entry), name, True)
        else:
            thresholds[question] = Threshold(UNCALIBRATED_THRESHOLD, UNCALIBRATED_SOURCE)
    return DecisionRule(metadata.task, thresholds, *_rules(metadata, thresholds))


def _rules(metadata: ModelMetadata, thresholds: dict[str, Threshold]
           ) -> tuple[str, str | None]:
    """(predicted_rule, referable_rule) in words, with the thresholds."""
    names = metadata.class_names
    if metadata.task == "multiclass":
        predicted = "the most probable class (argmax)"
        if metadata.referable_threshold is None:
            return predicted, None
        (question,) = thresholds
        return predicted, (f"P(grade >= {names[metadata.referable_threshold]}) >= "
                           f"{thresholds[question].value:.4g}")
    if metadata.task == "binary":
        positive = names[-1]
        value = thresholds[positive].value
        otherwise = f"'{names[0]}'" if len(names) == 2 else f"'not {positive}'"
        return f"'{positive}' if P({positive}) >= {value:.4g}, else {otherwise}", None
    return "the labels whose probability reaches their threshold", None


def disagreement(metadata: ModelMetadata, grade: int, referable_probability: float,
                 referable: bool, threshold: float) -> str | None:
    """A note when the argmax grade and the referable decision point different ways."""
    cut = metadata.referable_threshold
    if cut is None or (grade >= cut) == referable:
        return None
    names = metadata.class_names
    side = "at or above" if grade >= cut else "below"
    verdict = "referable" if referable else "not referable"
    compare = ">=" if referable else "<"
    return (f"the most probable grade ({names[grade]}) is {side} the referable grade "
            f"{names[cut]}, but P(grade >= {names[cut]}) = {referable_probability:.3f} "
            f"{compare} the threshold {threshold:.4g}, so the image is {verdict}: the "
            "referable decision follows the operating point, the grade is only the most "
            "probable class")


def stored_operating_points(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The operating points of a `tfx evaluate` record as `tfx export` stores them:
    {question: {name: {threshold, target_sensitivity, chosen_on, validation, test}}}."""
    if not evaluation:
        return None
    stored: dict[str, Any] = {}
    for question, entry in (evaluation.get("binary") or {}).items():
        points = entry.get("operating_points") or {}
        if not points and "threshold" in (entry.get("operating_point") or {}):
            first = entry["operating_point"]
            points = {first.get("name") or operating_point_name(first["target_sensitivity"]):
                      first}
        named = {}
        for name, point in points.items():
            if "threshold" not in point:
                continue
            validation = point.get("validation") or {
                "split": "val", "sensitivity": {"value": point.get("val_sensitivity")}}
            named[name] = {
                "threshold": float(point["threshold"]),
                "target_sensitivity": point.get("target_sensitivity"),
                "chosen_on": {"dataset": evaluation.get("dataset"), "split": "val",
                              "n": validation.get("n"), "positives": validation.get("positives")},
                "validation": {k: validation.get(k) for k in ("sensitivity", "specificity")
                               if validation.get(k) is not None},
                "test": {"split": evaluation.get("split"), "n": entry.get("n"),
                         "positives": entry.get("positives"),
                         **{k: point.get(k) for k in ("sensitivity", "specificity", "ppv", "npv")
                            if point.get(k) is not None}},
                "source": "tfx evaluate",
            }
            if point.get("note"):
                named[name]["note"] = point["note"]
        if named:
            stored[question] = named
    return stored or None
