"""`tfx predict`: classify images with an exported ONNX model (onnxruntime only, no torch)."""

from __future__ import annotations

from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import (
    Provider,
    json_option,
    operating_point_option,
    provider_option,
    threshold_option,
)
from transfusion_cli.console import err, info, out, print_json_lines, warn


def print_table(results, metadata, rule) -> None:
    """One row per image: probabilities, prediction, referable decision; then the rules and
    thresholds (with their sources) the decisions were made by, and any disagreement."""
    from rich.table import Column, Table
    from rich.text import Text

    has_referable = metadata.task == "multiclass" and metadata.referable_threshold is not None
    widest = max((len(r.image) for r in results), default=5)
    table = Table(Column("image", overflow="fold", min_width=min(widest, 40)),
                  *(Column(header=Text(name)) for name in metadata.class_names), "predicted",
                  *(("referable p", "referable") if has_referable else ()))
    for r in results:
        if r.error is not None:
            continue
        predicted = ", ".join(r.predicted) if isinstance(r.predicted, list) else r.predicted
        row = [Text(r.image), *(f"{r.probabilities.get(n, float('nan')):.3f}"
                                for n in metadata.class_names), Text(predicted or "-")]
        if has_referable:
            row += [f"{r.referable_probability:.3f}", "yes" if r.referable else "no"]
        table.add_row(*row)
    out.print(table)
    for line in rule_lines(rule):
        out.print(line, markup=False, highlight=False)
    for r in results:
        if r.error is None and r.note:
            out.print(f"note, {r.image}: {r.note}", markup=False, highlight=False)


def rule_lines(rule) -> list[str]:
    """How the table's decisions were made: rules, thresholds and their sources."""
    lines = [f"predicted = {rule.predicted_rule}"]
    if rule.referable_rule:
        lines.append(f"referable = {rule.referable_rule}")
    for question, cut in rule.thresholds.items():
        lines.append(f"threshold for {question}: {cut.value:.4g} ({cut.source})")
    return lines


@app.command("predict", epilog=examples(
    "tfx predict model.onnx photo.jpg folder_of_images/",
    "tfx predict model.onnx folder/ --json   # JSON Lines: one per image"))
def predict_command(
    model: Path = typer.Argument(..., help="ONNX model written by `tfx export`."),
    images: list[Path] = typer.Argument(..., help="Image files or folders of images."),
    provider: Provider = provider_option(),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per run."),
    json_output: bool = json_option("Print JSON Lines: one JSON object per image, one per "
                                    "line, in input order."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Also write the results as CSV."),
    threshold: float | None = threshold_option(),
    operating_point: str | None = operating_point_option(
        "Decide at this stored operating point (e.g. sens95: `tfx evaluate --sensitivity 0.95` "
        "before export)."),
    heatmaps: Path | None = typer.Option(
        None, "--heatmaps",
        help="Also write a Grad-CAM overlay per image into this folder (<image>.heatmap.png; "
             "onnxruntime only, from the model's heatmap output).", show_default=False),
) -> None:
    """Predict image files with an exported model; preprocessing comes from its metadata."""
    from transfusion_cli.deploy.overlays import overlay_files
    from transfusion_cli.deploy.predict import (
        HEATMAP_SUFFIX,
        OnnxClassifier,
        collect_images,
        json_record,
        results_csv,
        write_heatmaps,
    )
    from transfusion_cli.errors import DataError
    from transfusion_cli.io import write_text
    from transfusion_cli.outputs import OutputFolder, refuse_overwriting_inputs

    paths = collect_images(images)
    overlays = None if heatmaps is None else OutputFolder(
        heatmaps, "the heatmap overlays",
        overlay_files(heatmaps, [str(p) for p in paths], [HEATMAP_SUFFIX]))
    refuse_overwriting_inputs({"--csv": csv_path, "--heatmaps": overlays},
                              inputs=[model, *paths],
                              data_dirs=[folder for folder in images if folder.is_dir()])
    classifier = OnnxClassifier(model, provider.value, threshold=threshold,
                                operating_point=operating_point)
    if heatmaps is not None:
        classifier.require_heatmaps()  # before any work: a model without them says how
    note = f" ({classifier.runtime.fallback_reason})" if classifier.runtime.fallback_reason else ""
    info(f"provider: {classifier.provider}{note}")
    results = classifier.predict_files(paths, batch_size, heatmaps=heatmaps is not None)
    if heatmaps is not None:
        written = write_heatmaps(classifier, results, heatmaps)
        info(f"wrote {len(written)} heatmap overlays to {heatmaps}")
    for message in classifier.model_warnings:
        warn(message)
    for r in results:
        for message in r.warnings[len(classifier.model_warnings):]:
            warn(f"{r.image}: {message}")
    if json_output:
        print_json_lines(json_record(r, classifier.provider) for r in results)
    else:
        print_table(results, classifier.metadata, classifier.rule)
    if csv_path is not None:
        write_text(csv_path, results_csv(results, classifier.metadata))
        info(f"wrote {csv_path}")
    failures = [r for r in results if r.error is not None]
    for failure in failures:
        err.print(f"failed: {failure.error}", markup=False)
    if failures:
        raise DataError(f"{len(failures)} of {len(results)} images could not be predicted (listed "
                        f"above); the other {len(results) - len(failures)} were.")
