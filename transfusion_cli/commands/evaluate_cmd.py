"""`tfx evaluate`: metrics with confidence intervals, an operating point, calibration and
figures for one model, or the paired AUC comparison of two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.console import info, out, print_json
from transfusion_cli.data.stats import SPLITS


def _ci(entry: dict[str, Any] | None, digits: int = 3) -> tuple[str, str]:
    if not entry or entry.get("value") is None or entry["value"] != entry["value"]:
        return "nan", "-"
    low, high = entry["ci_low"], entry["ci_high"]
    interval = "-" if low != low else f"{low:.{digits}f} to {high:.{digits}f}"
    return f"{entry['value']:.{digits}f}", interval


def print_record(record: dict[str, Any]) -> None:
    """Metrics, operating points and calibration of one evaluation as tables on stdout."""
    from rich.table import Table

    boot = record["bootstrap"]
    patients = f", {record['patients']} patients" if record.get("patients") else ""
    out.print(f"{record['model']} on {record['dataset']} / {record['split']}: {record['n']} "
              f"images{patients}; 95% CIs from {boot['n_boot']} bootstrap resamples of "
              f"{boot['unit']}s (seed {boot['seed']})", markup=False)
    table = Table("metric", "value", "95% CI")
    for name, entry in record["metrics"].items():
        table.add_row(name, *_ci(entry))
    out.print(table)
    for name, entry in record["binary"].items():
        point = entry.get("operating_point") or {}
        calibration = entry["calibration"]
        head = (f"{name}: prevalence {entry['prevalence']:.1%} ({entry['positives']}/"
                f"{entry['n']}), ECE {calibration['ece']:.3f}")
        if "threshold" not in point:
            out.print(head + (f"; no operating point ({point['note']})" if point.get("note")
                              else ""), markup=False)
            continue
        out.print(f"{head}; threshold {point['threshold']:.4f} chosen on val for "
                  f"{point['target_sensitivity']:.0%} sensitivity "
                  f"(val {point['val_sensitivity']:.3f})", markup=False)
        rates = Table("at threshold", "value", "95% CI")
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            rates.add_row(key.upper() if len(key) == 3 else key, *_ci(point[key]))
        out.print(rates)
        cm = point["confusion_matrix"]
        matrix = Table("", "called positive", "called negative")
        matrix.add_row("positive", str(cm["tp"]), str(cm["fn"]))
        matrix.add_row("negative", str(cm["fp"]), str(cm["tn"]))
        out.print(matrix)


def print_comparison(comparison: dict[str, Any]) -> None:
    """The paired AUC difference table."""
    from rich.table import Table

    out.print(f"AUC difference, {comparison['model_b']} minus {comparison['model_a']} "
              f"({comparison['n']} {comparison['split']} images; paired bootstrap 95% CI, "
              "DeLong two-sided p)", markup=False)
    table = Table("question", "AUC a", "AUC b", "b - a", "95% CI", "DeLong p")
    for name, entry in comparison["auc"].items():
        if "difference" not in entry:
            table.add_row(name, "-", "-", "-", "-", entry.get("note", "-"))
            continue
        table.add_row(name, f"{entry['auc_a']:.3f}", f"{entry['auc_b']:.3f}",
                      f"{entry['difference']:+.3f}",
                      f"{entry['ci_low']:+.3f} to {entry['ci_high']:+.3f}",
                      f"{entry['p_value']:.3g}")
    out.print(table)


def _write_beside(model: Path, record: dict[str, Any]) -> Path | None:
    """Record the evaluation beside the model for `tfx export`'s model card, unless a file
    tfx did not write is already there."""
    from transfusion_cli.console import warn
    from transfusion_cli.evaluation.evaluate import FORMAT, evaluation_path
    from transfusion_cli.io import write_json

    path = evaluation_path(model)
    if path.exists():
        try:
            ours = json.loads(path.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            warn(f"{path} exists and was not written by `tfx evaluate`; left it alone.")
            return None
    try:
        return write_json(path, record)
    except OSError as exc:  # a read-only model folder: the printed result stands
        warn(f"could not record the evaluation beside the model ({exc}).")
        return None


@app.command("evaluate", epilog=examples(
    "tfx evaluate runs/quickstart/checkpoints/best.pt --out eval/   "
    "[dim]# metrics with CIs, ROC / PR / reliability PNGs[/dim]",
    "tfx evaluate model.onnx --split test --json",
    "tfx evaluate runs/random/checkpoints/best.pt runs/imagenet/checkpoints/best.pt   "
    "[dim]# does transfer help? AUC difference, CI, DeLong p[/dim]"))
def evaluate_command(
    model: Path = typer.Argument(..., help="Checkpoint (.pt) or exported model (.onnx)."),
    model2: Path | None = typer.Argument(None, help="A second model to compare with on the "
                                                    "same images (paired)."),
    data: str | None = typer.Option(None, "--data", help="Dataset (default: the one recorded "
                                                         "in the model)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Folder of the dataset "
                                                                  "(default: the one training "
                                                                  "used)."),
    option: list[str] = typer.Option([], "--option", help="Dataset option KEY=VALUE "
                                                          "(repeatable; default: training's)."),
    split: Literal[SPLITS] = typer.Option("test", "--split", help="Split to evaluate."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=1,
                                  help="Bootstrap resamples for the 95% CIs."),
    sensitivity: float = typer.Option(0.9, "--sensitivity", min=0.0, max=1.0,
                                      help="Target sensitivity of the operating point, chosen "
                                           "on the validation split."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    out_dir: Path | None = typer.Option(None, "--out", "-o",
                                        help="Folder for evaluation.json and the ROC, "
                                             "precision-recall and reliability PNGs."),
    json_output: bool = typer.Option(False, "--json", help="Print everything as JSON."),
) -> None:
    """Evaluate a model on a split: metrics with 95% CIs, operating point, calibration."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.evaluation.evaluate import (
        compare_scores,
        evaluate_scores,
        predict_with_val,
        write_figures,
    )
    from transfusion_cli.io import write_json
    from transfusion_cli.outputs import refuse_overwriting_inputs

    options = parse_option_pairs(option) or None
    models = [model] + ([model2] if model2 is not None else [])
    if out_dir is not None:
        refuse_overwriting_inputs({"--out": out_dir / "evaluation.json"}, inputs=models,
                                  data_dirs=[data_dir])
    records, outputs = [], []
    for index, path in enumerate(models):
        name = data if index == 0 else (data or outputs[0][split].info.name)
        scores = predict_with_val(path, name, data_dir, split, options, not json_output)
        outputs.append(scores)
        records.append(evaluate_scores(scores[split], scores.get("val"), bootstrap, seed,
                                       sensitivity, show_progress=not json_output))
    result: dict[str, Any] = {"evaluations": records}
    if model2 is not None:
        result["comparison"] = compare_scores(outputs[0][split], outputs[1][split], bootstrap,
                                              seed)
    if out_dir is not None:
        for index, record in enumerate(records):
            folder = out_dir if len(records) == 1 else out_dir / f"model{index + 1}"
            write_figures(record, outputs[index][split], folder)
        write_json(out_dir / "evaluation.json", result)
    for path, record in zip(models, records, strict=True):
        if data is None and not options:  # the model's own data: what its model card reports
            _write_beside(path, record)
    if json_output:
        print_json(result if model2 is not None else records[0])
        return
    for record in records:
        print_record(record)
    if model2 is not None:
        print_comparison(result["comparison"])
    if out_dir is not None:
        info(f"wrote {out_dir / 'evaluation.json'} and the figures in {out_dir}")
    else:
        info("add --out DIR for evaluation.json and the ROC, precision-recall and reliability "
             "figures")
