"""Model cards: what an exported model is, what it was trained and tested on, and what it must
not be used for. `tfx export` writes the card as MODEL_CARD.md beside the ONNX file and the same
facts (``card_facts``) into its ``tfx.model_card`` metadata, which `tfx predict` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER = "<!-- written by tfx export; tfx may overwrite this file -->"
CARD_NAME = "MODEL_CARD.md"
SYNTHETIC_WARNING = ("trained on tfx's built-in synthetic images, not on real photographs: "
                     "its outputs on real images mean nothing")


def is_synthetic(dataset: str) -> bool:
    """tfx's built-in generated datasets are named ``synthetic-*``."""
    return dataset.startswith("synthetic")


def find_evaluation(checkpoint: Path, sha256: str, explicit: Path | None = None
                    ) -> dict[str, Any] | None:
    """The `tfx evaluate` record of this very checkpoint (``best.evaluation.json`` beside it,
    or ``explicit``); None when there is none or it belongs to other weights."""
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.evaluation.evaluate import FORMAT, evaluation_path

    path = explicit or evaluation_path(checkpoint)
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
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return record if record.get("sha256") == sha256 else None


def card_facts(checkpoint: dict[str, Any], info, train_images: int | None,
               evaluation: dict[str, Any] | None, image_size: int) -> dict[str, Any]:
    """The facts of the card (plain data; also stored in the ONNX metadata)."""
    config = checkpoint.get("config") or {}
    init = checkpoint.get("init") or {}
    init_name = init.get("name", "random")
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
                          "fundus_crop": bool(info.fundus_crop)},
        "trained_steps": checkpoint.get("step"),
    }
    if evaluation is not None:
        facts["metrics"] = {"split": evaluation["split"], "source": "tfx evaluate",
                            "n": evaluation["n"], "bootstrap": evaluation["bootstrap"],
                            "values": evaluation["metrics"]}
        points = {name: {k: entry["operating_point"][k] for k in
                         ("threshold", "target_sensitivity", "sensitivity", "specificity",
                          "ppv", "npv")}
                  for name, entry in evaluation.get("binary", {}).items()
                  if "threshold" in (entry.get("operating_point") or {})}
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
    return facts


def _value(entry: Any) -> str:
    if isinstance(entry, dict):
        low, high = entry.get("ci_low"), entry.get("ci_high")
        interval = (f" (95% CI {low:.3f} to {high:.3f})"
                    if isinstance(low, float) and low == low else "")
        return f"{entry['value']:.3f}{interval}"
    return f"{entry:.4f}" if isinstance(entry, float) else str(entry)


def render_card(facts: dict[str, Any], model_name: str) -> str:
    """MODEL_CARD.md text."""
    data, prep, metrics = facts["training_data"], facts["preprocessing"], facts["metrics"]
    lines = [MARKER, f"# Model card: {model_name}", ""]
    if data["synthetic"]:
        lines += [f"> **Warning: {SYNTHETIC_WARNING}.** It demonstrates the tfx pipeline only.",
                  ""]
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
    lines += ["", f"## {heading}", f"Source: {metrics['source']}"
              + (f"; {metrics['n']} images" if metrics.get("n") else "")
              + (f"; 95% CIs from {metrics['bootstrap']['n_boot']} bootstrap resamples of "
                 f"{metrics['bootstrap']['unit']}s" if metrics.get("bootstrap") else "") + ".",
              "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_value(entry)} |" for name, entry in metrics["values"].items()]
    for name, point in (facts.get("operating_points") or {}).items():
        lines += ["", f"Operating point for {name}: threshold {point['threshold']:.4f}, chosen on "
                  f"the validation split for {point['target_sensitivity']:.0%} sensitivity; on "
                  f"{split}: sensitivity {_value(point['sensitivity'])}, specificity "
                  f"{_value(point['specificity'])}, PPV {_value(point['ppv'])}, NPV "
                  f"{_value(point['npv'])}."]
    lines += [
        "", "## Preprocessing",
        f"- Input {prep['channels']}x{prep['image_size']}x{prep['image_size']} "
        f"({'colour' if prep['channels'] == 3 else 'grayscale'}), pixel values / 255, then "
        f"normalised with mean {prep['mean']} and std {prep['std']}"
        + ("; fundus photos are first cropped to their circular field of view" if
           prep["fundus_crop"] else "") + ". `tfx predict` does all of this.",
        "", "## Intended use and limits",
        "- A research model reproducing Raghu et al. 2019 (*Transfusion*): for studying transfer "
        "learning, not for diagnosis or any clinical decision.",
        f"- Valid only for images like its training data (`{data['name']}`): other devices, "
        "populations, image types or sizes can change its behaviour without warning; `tfx "
        "predict` warns on inputs clearly unlike them.",
        "- Probabilities are not guaranteed to be calibrated; see the evaluation's reliability "
        "diagram before reading them as risks.",
    ]
    if data["synthetic"]:
        lines.append(f"- This model was {SYNTHETIC_WARNING}.")
    return "\n".join(lines) + "\n"


def card_path(onnx_path: Path) -> Path:
    """MODEL_CARD.md beside the exported model."""
    return Path(onnx_path).with_name(CARD_NAME)


def write_card(onnx_path: Path, facts: dict[str, Any]) -> Path | None:
    """Write MODEL_CARD.md beside the model unless a card tfx did not write is there (then
    None: a user's own file is never overwritten)."""
    from transfusion_cli.io import write_text

    path = card_path(onnx_path)
    if path.exists() and MARKER not in path.read_text(errors="replace")[:200]:
        return None
    return write_text(path, render_card(facts, Path(onnx_path).name))


def export_facts(checkpoint_path: Path, checkpoint: dict[str, Any], info, bundle, sha256: str,
                 image_size: int, evaluation: Path | None = None) -> dict[str, Any]:
    """``card_facts`` for `tfx export`: training-set size from the rebuilt dataset (or the
    run's --train-size) and the checkpoint's `tfx evaluate` record when there is one."""
    train_size = (checkpoint.get("config") or {}).get("train_size")
    train_images = int(train_size) if train_size else len(bundle.train)
    record = find_evaluation(Path(checkpoint_path), sha256, evaluation)
    return card_facts(checkpoint, info, train_images, record, image_size)
