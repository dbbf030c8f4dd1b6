"""`tfx evaluate`: metrics with confidence intervals, an operating point, calibration and
figures for one model, or the paired AUC comparison of two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import (
    Split,
    data_dir_option,
    dataset_option_option,
    json_option,
    out_option,
    seed_option,
    split_option,
)
from transfusion_cli.console import info, out, print_json

# The library's defaults, written out so that `tfx --help` imports no numpy (a test checks
# that they agree with evaluation.evaluate and evaluation.operating_point).
DEFAULT_BOOTSTRAP = 2000
DEFAULT_SENSITIVITY = 0.9


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
                  f"(val {point['val_sensitivity']:.3f})"
                  + (f"; {point['note']}" if point.get("note") else ""), markup=False)
        others = [p for n, p in (entry.get("operating_points") or {}).items()
                  if n != point.get("name")]
        for other in others:
            out.print(f"  also {other['name']}: threshold {other['threshold']:.4f}, "
                      f"sensitivity {_ci(other['sensitivity'])[0]}, specificity "
                      f"{_ci(other['specificity'])[0]} on {record['split']}"
                      + (f"; {other['note']}" if other.get("note") else ""), markup=False)
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
              f"({comparison['n']} {comparison['split']} images; paired bootstrap 95% CI; "
              f"p: {comparison['p_value']})", markup=False)
    table = Table("question", "AUC a", "AUC b", "b - a", "95% CI", "p")
    for name, entry in comparison["auc"].items():
        if "difference" not in entry:
            table.add_row(name, "-", "-", "-", "-", entry.get("note", "-"))
            continue
        table.add_row(name, f"{entry['auc_a']:.3f}", f"{entry['auc_b']:.3f}",
                      f"{entry['difference']:+.3f}",
                      f"{entry['ci_low']:+.3f} to {entry['ci_high']:+.3f}",
                      f"{entry['p_value']:.3g}")
    out.print(table)


def _sensitivities(values: list[float]) -> list[float]:
    """--sensitivity values, checked as the flags are read (before any inference): each a
    target an operating point can reach, in (0, 1] (evaluation.operating_point's rule)."""
    for value in values or []:
        if not 0 < value <= 1:  # NaN fails too
            raise typer.BadParameter(f"{value} is not a sensitivity in (0, 1]; e.g. 0.9.")
    return values


def _ours(path: Path, format_: str) -> bool:
    from transfusion_cli.outputs import has_json_format

    return has_json_format(path, [format_])


def _write_beside(model: Path, record: dict[str, Any], data_roots: list[Path]) -> Path | None:
    """Record the evaluation beside the model, one file per dataset (``best.<fingerprint>.
    evaluation.json``; `tfx export`'s model card reads the training data's), unless a file
    tfx did not write is there or the model lies in a dataset folder being read."""
    from transfusion_cli.console import warn
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.io import OutputPathError, write_json
    from transfusion_cli.outputs import OutputFile, refuse_overwriting_inputs
    from transfusion_cli.runfolder import EVALUATION_FORMAT, evaluation_path

    path = evaluation_path(model, record["data"]["fingerprint"])
    try:
        refuse_overwriting_inputs(
            {"The record beside the model": OutputFile(path, lambda p: _ours(p, EVALUATION_FORMAT),
                                                       "`tfx evaluate`")},
            data_dirs=data_roots)
    except ConfigError as exc:  # the printed result stands
        warn(f"did not record the evaluation beside the model: {exc}")
        return None
    try:
        return write_json(path, record)
    except (OSError, OutputPathError) as exc:  # a read-only or full disk: the result stands
        warn(f"could not record the evaluation beside the model ({exc}).")
        return None


@app.command("evaluate", epilog=examples(
    "tfx evaluate runs/quickstart/checkpoints/best.pt --out eval/   "
    "# metrics with CIs, ROC / PR / reliability PNGs",
    "tfx evaluate model.onnx --split test --json",
    "tfx evaluate runs/random/checkpoints/best.pt runs/imagenet/checkpoints/best.pt   "
    "# does transfer help? AUC difference, CI, paired p"))
def evaluate_command(
    model: Path = typer.Argument(..., help="Checkpoint (.pt) or exported model (.onnx)."),
    model2: Path | None = typer.Argument(None, help="A second model to compare with on the "
                                                    "same images (paired)."),
    data: str | None = typer.Option(None, "--data", help="Dataset.",
                                    show_default="the one recorded in the model"),
    data_dir: Path | None = data_dir_option("Folder of the dataset.",
                                            show_default="the one training used"),
    option: list[str] = dataset_option_option("Dataset option (repeatable; default: "
                                               "training's)."),
    split: Split = split_option("test", "Split to evaluate."),
    bootstrap: int = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", min=1,
                                  help="Bootstrap resamples for the 95% CIs."),
    sensitivity: list[float] = typer.Option(
        [DEFAULT_SENSITIVITY], "--sensitivity", callback=_sensitivities,
        help="Target sensitivity of an operating point, chosen on the validation split (none "
             "without one); repeat for several (named sens90, sens95, ...; the first is the "
             "default that `tfx export` and `tfx predict` use)."),
    seed: int = seed_option("Bootstrap seed."),
    out_dir: Path | None = out_option(None, "Folder for evaluation.json and the ROC, "
                                      "precision-recall and reliability PNGs.",
                                      show_default=False),
    json_output: bool = json_option("Print everything as JSON."),
) -> None:
    """Evaluate a model on a split: metrics with 95% CIs, operating point, calibration."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.evaluation.evaluate import (
        compare_scores,
        evaluate_model,
        evaluation_source,
        write_figures,
    )
    from transfusion_cli.io import write_json
    from transfusion_cli.outputs import refuse_overwriting_inputs

    options = parse_option_pairs(option) or None
    models = [model] + ([model2] if model2 is not None else [])
    sources: list[Any] = []
    for path in models:  # the data each model is scored on, named by it or by the flags
        sources.append(evaluation_source(path, data or (sources[0].name if sources else None),
                                         data_dir, options))
    data_roots = [root for source in sources for root in source.input_roots()]
    if out_dir is not None:
        refuse_overwriting_inputs({"--out": out_dir / "evaluation.json"}, inputs=models,
                                  data_dirs=[data_dir, *data_roots])
    records, outputs = [], []
    for path in models:
        # The second model is scored on the first one's dataset (the same images).
        dataset = data or (outputs[0][split].info.name if outputs else None)
        record, scores = evaluate_model(path, dataset, data_dir, split, n_boot=bootstrap,
                                        seed=seed, sensitivity=sensitivity, options=options,
                                        show_progress=not json_output)
        records.append(record)
        outputs.append(scores)
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
        _write_beside(path, record, data_roots)
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
