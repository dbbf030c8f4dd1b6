"""`tfx predict`: classify images with an exported ONNX model (onnxruntime only, no torch)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.console import err, info, out, print_json_lines, warn


class Provider(StrEnum):
    """onnxruntime execution provider."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def print_table(results, metadata) -> None:
    """One row per image: probabilities, prediction, referable decision."""
    from rich.table import Column, Table

    has_referable = metadata.task == "multiclass" and metadata.referable_threshold is not None
    widest = max((len(r.image) for r in results), default=5)
    table = Table(Column("image", overflow="fold", min_width=min(widest, 40)),
                  *metadata.class_names, "predicted",
                  *(("referable p", "referable") if has_referable else ()))
    for r in results:
        if r.error is not None:
            continue
        predicted = ", ".join(r.predicted) if isinstance(r.predicted, list) else r.predicted
        row = [r.image, *(f"{r.probabilities.get(n, float('nan')):.3f}"
                          for n in metadata.class_names), predicted or "-"]
        if has_referable:
            row += [f"{r.referable_probability:.3f}", "yes" if r.referable else "no"]
        table.add_row(*row)
    out.print(table)


@app.command("predict", epilog=examples(
    "tfx predict model.onnx photo.jpg folder_of_images/",
    "tfx predict model.onnx folder/ --json   [dim]# JSON Lines: one per image[/dim]"))
def predict_command(
    model: Path = typer.Argument(..., help="ONNX model written by `tfx export`."),
    images: list[Path] = typer.Argument(..., help="Image files or folders of images."),
    provider: Provider = typer.Option(Provider.auto, "--provider",
                                      help="auto: CUDA when it can be created, else CPU."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per run."),
    json_output: bool = typer.Option(False, "--json",
                                     help="Print JSON Lines: one JSON object per image, one "
                                          "per line, in input order."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Also write the results as CSV."),
) -> None:
    """Predict image files with an exported model; preprocessing comes from its metadata."""
    from transfusion_cli.deploy.predict import OnnxClassifier, collect_images, results_csv
    from transfusion_cli.errors import DataError
    from transfusion_cli.io import write_text
    from transfusion_cli.outputs import refuse_overwriting_inputs

    paths = collect_images(images)
    refuse_overwriting_inputs({"--csv": csv_path}, inputs=[model, *paths],
                              data_dirs=[folder for folder in images if folder.is_dir()])
    classifier = OnnxClassifier(model, provider.value)
    note = f" ({classifier.runtime.fallback_reason})" if classifier.runtime.fallback_reason else ""
    info(f"provider: {classifier.provider}{note}")
    results = classifier.predict_files(paths, batch_size)
    for message in classifier.model_warnings:
        warn(message)
    for r in results:
        for message in r.warnings[len(classifier.model_warnings):]:
            warn(f"{r.image}: {message}")
    if json_output:
        print_json_lines(dict(r.to_dict(), provider=classifier.provider) if r.error is None
                         else r.to_dict() for r in results)
    else:
        print_table(results, classifier.metadata)
    if csv_path is not None:
        write_text(csv_path, results_csv(results, classifier.metadata))
        info(f"wrote {csv_path}")
    failures = [r for r in results if r.error is not None]
    for failure in failures:
        err.print(f"failed: {failure.error}", markup=False)
    if failures:
        raise DataError(f"{len(failures)} of {len(results)} images could not be predicted (listed "
                        f"above); the other {len(results) - len(failures)} were.")
