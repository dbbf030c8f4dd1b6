"""Model cards: what an exported model is, what it was trained and tested on, and what it must
not be used for. `tfx export -o NAME.onnx` writes the card as NAME.MODEL_CARD.md beside the ONNX
file and the same facts (``card_facts``) into its ``tfx.model_card`` metadata, which `tfx
predict` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transfusion_cli.deploy.decisions import UNCALIBRATED_SOURCE, stored_operating_points

MARKER = "<!-- written by tfx export; tfx may overwrite this file -->"
CARD_SUFFIX = ".MODEL_CARD.md"  # model.onnx -> model.MODEL_CARD.md: one card per exported model
SYNTHETIC_WARNING = ("trained on tfx's built-in synthetic images, not on real photographs: "
                     "its outputs on real images mean nothing")


def is_synthetic(dataset: str) -> bool:
    """tfx's built-in generated datasets are named ``synthetic-*``."""
    return dataset.startswith("synthetic")


def find_evaluation(checkpoint: Path, sha256: str, explicit: Path | None = None,
                    dataset: str | None = None) -> dict[str, Any] | None:
    """The `tfx evaluate` record of this very checkpoint on the dataset with fingerprint
    ``dataset`` (``best.<dataset>.evaluation.json`` beside it; None: ``best.evaluation.json``),
    or ``explicit``; None when there is none or it belongs to other weights."""
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.runfolder import EVALUATION_FORMAT, evaluation_path

    path = explicit or evaluation_path(checkpoint, dataset)
    if not path.is_file():
        if explicit is not None:
            raise ConfigError(f"--evaluation {explicit} does not exist; write it with "
                              f"`tfx evaluate {checkpoint} --out DIR` (DIR/evaluation.json).")
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and "evaluations" in record:  # evaluate --out's file
        record = next((r for r in record["evaluations"] if r.get("sha256") == sha256), None)
    if not isinstance(record, dict) or record.get("format") != EVALUATION_FORMAT:
        return None
    return record if record.get("sha256") == sha256 else None


def card_data(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The data a metric came from, as a card names it: dataset, folder name (not its full
    path, which stays on this machine), options, data seed and fingerprint."""
    if not isinstance(data, dict):
        return None
    folder = data.get("data_dir")
    return {"name": data.get("name"), "folder": Path(folder).name if folder else None,
            "options": data.get("options") or {}, "data_seed": data.get("data_seed"),
            "fingerprint": data.get("fingerprint")}


def card_facts(checkpoint: dict[str, Any], info, train_images: int | None,
               evaluation: dict[str, Any] | None, image_size: int,
               training_fingerprint: str | None = None) -> dict[str, Any]:
    """The facts of the card (plain data; also stored in the ONNX metadata);
    ``training_fingerprint``: the training data's ``DataSource.fingerprint``, which tells
    whether the evaluation was on them."""
    config = checkpoint.get("config") or {}
    from transfusion_cli.models.checkpoint import recorded_init

    init = recorded_init(checkpoint)
    init_name = str(init.get("name"))
    if init.get("argument"):
        init_name += f":{init['argument']}"
    facts: dict[str, Any] = {
        "architecture": checkpoint["arch"]["name"],
        "init": init_name,
        "training_data": {"name": info.name, "train_images": train_images,
                          "synthetic": is_synthetic(info.name),
                          "data_seed": config.get("data_seed"),
                          "options": dict(config.get("options") or info.options or {})},
        "task": info.task, "classes": list(info.class_names),
        "referable_threshold": info.referable_threshold,
        "preprocessing": {"image_size": image_size, "channels": info.channels,
                          "mean": list(info.mean), "std": list(info.std),
                          "step": info.preprocess, "step_description": _step_description(info)},
        "trained_steps": checkpoint.get("step"),
    }
    if evaluation is not None:
        data = card_data(evaluation.get("data"))
        facts["metrics"] = {"split": evaluation["split"], "source": "tfx evaluate",
                            "n": evaluation["n"], "bootstrap": evaluation["bootstrap"],
                            "values": evaluation["metrics"], "data": data,
                            "on_training_data": bool(data and training_fingerprint and
                                                     data["fingerprint"] == training_fingerprint)}
        points = stored_operating_points(evaluation)
        if points:
            facts["operating_points"] = points
    else:
        recorded = checkpoint.get("metrics") or {}
        skip = {"step", "epoch", "train_loss", "images_per_s", "best", "val_examples"}
        facts["metrics"] = {"split": "val", "source": "training (the split that chose this "
                            "checkpoint, so optimistic); run `tfx evaluate` for test metrics "
                            "with confidence intervals",
                            "n": recorded.get("val_examples"),
                            "values": {k: v for k, v in recorded.items()
                                       if k not in skip and isinstance(v, int | float)}}
    # `tfx fit`'s warnings that the validation split was too small to pick this checkpoint.
    selection = (checkpoint.get("metrics") or {}).get("selection_warnings")
    if selection:
        facts["selection_warnings"] = [str(w) for w in selection]
    return facts


def _value(entry: Any) -> str:
    if isinstance(entry, dict):
        low, high = entry.get("ci_low"), entry.get("ci_high")
        interval = (f" (95% CI {low:.3f} to {high:.3f})"
                    if isinstance(low, float) and low == low else "")
        return f"{entry['value']:.3f}{interval}"
    return f"{entry:.4f}" if isinstance(entry, float) else str(entry)


def _step_description(info) -> str | None:
    """The one-line description of the dataset's preprocessing step (None: no step)."""
    from transfusion_cli.data.preprocess import preprocess_step

    step = preprocess_step(info.preprocess)
    return step.description if step is not None else None


def render_card(facts: dict[str, Any], model_name: str) -> str:
    """MODEL_CARD.md text."""
    data, prep, metrics = facts["training_data"], facts["preprocessing"], facts["metrics"]
    lines = [MARKER, f"# Model card: {model_name}", ""]
    if data["synthetic"]:
        lines += [f"> **Warning: {SYNTHETIC_WARNING}.** It demonstrates the tfx pipeline only.",
                  ""]
    for warning in facts.get("selection_warnings") or []:
        lines += [f"> **Warning (checkpoint selection): {warning}**", ""]
    lines += [
        "## Model",
        f"- Architecture: `{facts['architecture']}`; initialisation: `{facts['init']}`; "
        f"trained {facts['trained_steps']} steps.",
        f"- Task: {facts['task']}; classes: {', '.join(facts['classes'])}"
        + (f"; referable = class index >= {facts['referable_threshold']}"
           if facts.get("referable_threshold") is not None else "") + ".",
        "",
        "## Training data",
        f"- Dataset: `{data['name']}`"
        + (f", {data['train_images']} training images" if data["train_images"] else "")
        + (f", data seed {data['data_seed']}" if data.get("data_seed") is not None else "")
        + (" (built-in synthetic images)" if data["synthetic"] else "") + ".",
    ]
    if data.get("options"):
        lines.append(f"- Dataset options: {json.dumps(data['options'], sort_keys=True)}.")
    split = metrics["split"]
    heading = ("Test metrics" if split == "test" else
               "Validation metrics (not a test result)" if split == "val" else
               f"Metrics on the {split} split")
    if metrics.get("source") == "tfx evaluate" and not metrics.get("on_training_data"):
        heading += " on other data than the training data"
    lines += ["", f"## {heading}", f"Source: {metrics['source']}"
              + (f"; {metrics['n']} images" if metrics.get("n") else "")
              + (f"; 95% CIs from {metrics['bootstrap']['n_boot']} bootstrap resamples of "
                 f"{metrics['bootstrap']['unit']}s" if metrics.get("bootstrap") else "") + ".",
              f"Data: {metrics_data_line(metrics)}.",
              "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_value(entry)} |" for name, entry in metrics["values"].items()]
    lines += ["", "## Operating points (what `tfx predict` and `tfx serve` decide at)",
              *operating_point_lines(facts)]
    lines += [
        "", "## Preprocessing",
        f"- Input {prep['channels']}x{prep['image_size']}x{prep['image_size']} "
        f"({'colour' if prep['channels'] == 3 else 'grayscale'}), pixel values / 255, then "
        f"normalised with mean {prep['mean']} and std {prep['std']}"
        + (f"; before resizing, the dataset's `{prep['step']}` step: "
           f"{prep.get('step_description') or 'see its plugin'}" if prep.get("step") else "")
        + ". `tfx predict` does all of this.",
        "", "## Intended use and limits",
        *(f"- {line}" for line in intended_use(facts)),
    ]
    return "\n".join(lines) + "\n"


def metrics_data_line(metrics: dict[str, Any]) -> str:
    """Which data the card's metrics came from."""
    if metrics.get("source") != "tfx evaluate":
        return "the training data's validation split"
    data = metrics.get("data")
    if not data:
        return "not recorded (an evaluation written by an older tfx)"
    details = [f"folder `{data['folder']}`"] if data.get("folder") else []
    if data.get("options"):
        details.append(f"options {json.dumps(data['options'], sort_keys=True, default=str)}")
    if data.get("data_seed") is not None:
        details.append(f"data seed {data['data_seed']}")
    details.append(f"fingerprint {data.get('fingerprint')}")
    which = ("the training data" if metrics.get("on_training_data")
             else "not the data the model was trained on")
    return f"`{data.get('name')}` ({'; '.join(details)}): {which}, {metrics['split']} split"


def operating_point_lines(facts: dict[str, Any]) -> list[str]:
    """The card's operating-point sentences: each threshold, where it was chosen and how it
    did there and on the evaluated split, with 95% CIs."""
    points = facts.get("operating_points") or {}
    if not points:
        return ["No validated operating point: `tfx predict` decides at the "
                f"{UNCALIBRATED_SOURCE}."]
    lines = []
    for question, named in points.items():
        for index, (name, point) in enumerate(named.items()):
            chosen, val, test = (point.get("chosen_on") or {}, point.get("validation") or {},
                                 point.get("test") or {})
            where = ", ".join(str(x) for x in (
                chosen.get("dataset"), f"{chosen['n']} images" if chosen.get("n") else None,
                f"{chosen['positives']} positive" if chosen.get("positives") is not None
                else None) if x)
            target = point.get("target_sensitivity")
            line = (f"- {question}, `{name}`{' (the default)' if index == 0 else ''}: threshold "
                    f"{point['threshold']:.4f}, chosen on the validation split for "
                    f"{target:.0%} sensitivity" if isinstance(target, float) else
                    f"- {question}, `{name}`: threshold {point['threshold']:.4f}")
            line += f" ({where})" if where else ""
            rates = [f"{key} {_value(val[key])}" for key in ("sensitivity", "specificity")
                     if isinstance(val.get(key), dict) and val[key].get("value") is not None]
            if rates:
                line += f"; on validation: {', '.join(rates)}"
            rates = [f"{key if len(key) > 3 else key.upper()} {_value(test[key])}"
                     for key in ("sensitivity", "specificity", "ppv", "npv")
                     if isinstance(test.get(key), dict) and test[key].get("value") is not None]
            if rates:
                line += (f"; on {test.get('split')}"
                         + (f" ({test['n']} images)" if test.get("n") else "")
                         + f": {', '.join(rates)}")
            lines.append(line + (f" ({point['note']})" if point.get("note") else "") + ".")
    return lines


def intended_use(facts: dict[str, Any]) -> list[str]:
    """The card's "Intended use and limits" sentences (markdown; `tfx serve` shows them too)."""
    data = facts["training_data"]
    lines = [
        "A research model reproducing Raghu et al. 2019 (*Transfusion*): for studying transfer "
        "learning, not for diagnosis or any clinical decision.",
        f"Valid only for images like its training data (`{data['name']}`): other devices, "
        "populations, image types or sizes can change its behaviour without warning; `tfx "
        "predict` warns on inputs clearly unlike them.",
        "Probabilities are not guaranteed to be calibrated; see the evaluation's reliability "
        "diagram before reading them as risks.",
    ]
    if data["synthetic"]:
        lines.append(f"This model was {SYNTHETIC_WARNING}.")
    return lines


def card_path(onnx_path: Path) -> Path:
    """The card of one exported model, named after it: ``model.onnx`` -> ``model.MODEL_CARD.md``."""
    return Path(onnx_path).with_suffix(CARD_SUFFIX)


def card_written_by_tfx(path: Path) -> bool:
    """Whether the card at ``path`` starts with tfx's marker line (tfx may replace it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return MARKER in handle.read(200)
    except OSError:
        return False


def write_card(onnx_path: Path, facts: dict[str, Any]) -> Path | None:
    """Write the model's card beside it unless a card tfx did not write is there (then
    None: a user's own file is never overwritten)."""
    from transfusion_cli.io import write_text

    path = card_path(onnx_path)
    if path.exists() and not card_written_by_tfx(path):
        return None
    return write_text(path, render_card(facts, Path(onnx_path).name))


def export_facts(checkpoint_path: Path, checkpoint: dict[str, Any], info, bundle, sha256: str,
                 image_size: int, evaluation: Path | None = None,
                 training_fingerprint: str | None = None) -> dict[str, Any]:
    """``card_facts`` for `tfx export`: training-set size from the rebuilt dataset (or the
    run's --train-size) and the checkpoint's `tfx evaluate` record on its training data (the
    data with ``training_fingerprint``; or ``evaluation``) when there is one."""
    train_size = (checkpoint.get("config") or {}).get("train_size")
    train_images = int(train_size) if train_size else len(bundle.train)
    if evaluation is None and training_fingerprint is None:
        record = None  # no way to tell which data a record beside it came from
    else:
        record = find_evaluation(Path(checkpoint_path), sha256, evaluation, training_fingerprint)
    return card_facts(checkpoint, info, train_images, record, image_size, training_fingerprint)
