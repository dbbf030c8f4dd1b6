"""`tfx export`: a checkpoint to a verified ONNX model (fp32, int8 or fp16)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import data_dir_option, json_option, out_option
from transfusion_cli.console import info, out, print_json


class Quantize(StrEnum):
    """Precision of the written model."""

    none = "none"
    int8 = "int8"
    fp16 = "fp16"


def _figure(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value == value else "nan"
    return "-" if value is None else str(value)


def print_summary(report: dict[str, Any]) -> None:
    """The report as a short table on stdout."""
    from rich.table import Table

    settings, sizes, latency = report["settings"], report["sizes"], report["latency"]
    quantize = settings["quantize"]
    files = report["files"]
    models = ", ".join(f"{path} ({precision})" for precision, path in files.items()
                       if precision not in ("report", "model_card", "triton"))
    out.print(f"wrote {models} and the report {files['report']} ({settings['exporter']}, "
              f"opset {settings['opset']}, input {settings['input_shape']})", markup=False)
    if "model_card" in files:
        out.print(f"model card: {files['model_card']}", markup=False)
    if files.get("triton"):
        out.print(f"Triton model repository: {', '.join(files['triton'])}", markup=False)
    heatmap = report.get("heatmap") or {}
    if heatmap.get("output"):
        out.print(f"heatmap output '{heatmap['output']}' {heatmap['shape']}: max abs diff vs "
                  f"PyTorch {heatmap['max_abs_diff']:.2e}", markup=False)
    table = Table("model", "file MB", "batch-1 ms", "max |diff| vs PyTorch", "top-1 agree (b8)")
    table.add_row("pytorch fp32 (checkpoint)", _figure(report["checkpoint"]["bytes"] / 1e6, 2),
                  _figure(latency["pytorch_fp32"]["median_ms"], 2), "-", "-")
    for precision in ("fp32", quantize) if quantize != "none" else ("fp32",):
        parity = report["parity"][precision]
        table.add_row(f"onnxruntime {precision}", _figure(sizes[f"{precision}_bytes"] / 1e6, 2),
                      _figure(latency[f"onnxruntime_{precision}"]["median_ms"], 2),
                      f"{parity['max_abs_diff']:.2e}",
                      _figure(parity["batch_8"]["top1_agreement"], 3))
    out.print(table)
    if "metric" in report:
        metric = report["metric"]
        out.print(f"{metric['name']} on {metric['images']} {metric['split']} images: fp32 "
                  f"{_figure(metric['fp32'])}, {quantize} {_figure(metric[quantize])} "
                  f"(drop {_figure(metric['drop'])})")


@app.command("export", epilog=examples(
    "tfx export runs/quickstart/checkpoints/best.pt --out model.onnx",
    "tfx export best.pt -o model.onnx --quantize int8   # + model.int8.onnx"))
def export_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `tfx fit` (.pt)."),
    out_path: Path = out_option(Path("model.onnx"), "ONNX file of the fp32 model; a quantised "
                                "model goes beside it (model.int8.onnx / model.fp16.onnx), and "
                                "so do the report (model.export.json) and the model card "
                                "(model.MODEL_CARD.md)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input size in pixels.",
                                          show_default="the training size"),
    quantize: Quantize = typer.Option(Quantize.none, "--quantize",
                                      help="Also write a quantised model: int8 (static QDQ, "
                                           "model.int8.onnx) or fp16 (float16 weights and "
                                           "compute, model.fp16.onnx)."),
    calibration_data: str | None = typer.Option(
        None, "--calibration-data",
        help="int8 calibration images: a dataset name or a folder of images.",
        show_default="the checkpoint's training data"),
    calibration_images: int = typer.Option(256, "--calibration-images", min=1,
                                           help="How many calibration images."),
    eval_images: int | None = typer.Option(None, "--eval-images", min=1,
                                           help="Validation images for the fp32 vs quantised "
                                                "metric.", show_default="all"),
    data_dir: Path | None = data_dir_option("Folder of the checkpoint's dataset.",
                                            show_default="the one training used"),
    tolerance: float = typer.Option(1e-4, "--tolerance",
                                    help="Largest max-abs difference of fp32 logits "
                                         "(onnxruntime vs PyTorch) that passes."),
    evaluation: Path | None = typer.Option(
        None, "--evaluation", help="`tfx evaluate` result (evaluation.json) whose test metrics "
                                   "the model card (NAME.MODEL_CARD.md) reports.",
        show_default="the record of the training data beside the checkpoint, if any"),
    triton_repo: Path | None = typer.Option(
        None, "--triton-repo",
        help="Also write a Triton Inference Server model repository here: "
             "DIR/<model>/config.pbtxt and DIR/<model>/1/model.onnx per written model.",
        show_default=False),
    json_output: bool = json_option("Print the report as JSON."),
) -> None:
    """Export a checkpoint to ONNX, check it against PyTorch, optionally quantise it."""
    from transfusion_cli.deploy.export import ExportSettings, export_checkpoint

    settings = ExportSettings(checkpoint=checkpoint, out=out_path, opset=opset,
                              image_size=image_size, quantize=quantize.value,
                              calibration_data=calibration_data,
                              calibration_images=calibration_images, eval_images=eval_images,
                              data_dir=data_dir, tolerance=tolerance,
                              evaluation=evaluation, triton_repo=triton_repo)
    report = export_checkpoint(settings, progress=info)
    if json_output:
        print_json(report)
    else:
        print_summary(report)
