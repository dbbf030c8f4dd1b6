"""`tfx explain`: heatmaps of what a model looked at (Grad-CAM and Grad-CAM++)."""

from __future__ import annotations

from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import json_option, out_option
from transfusion_cli.console import err, info, out, print_json, warn


@app.command("explain", epilog=examples(
    "tfx explain runs/quickstart/checkpoints/best.pt samples/*.png --out heatmaps/",
    "tfx explain best.pt photo.jpg --out heatmaps/ --layer block3 --method gradcam"))
def explain_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `tfx fit` (.pt)."),
    images: list[Path] = typer.Argument(..., help="Image files to explain."),
    out_dir: Path = out_option(..., "Folder for the heatmap PNGs (<image>.<method>.png)."),
    layer: str | None = typer.Option(None, "--layer",
                                     help="Block (block3, layer4, ...) or submodule whose "
                                          "activations are explained (default: the last block "
                                          "before the head)."),
    method: list[str] = typer.Option(["gradcam", "gradcam++"], "--method",
                                     help="gradcam and/or gradcam++ (repeatable)."),
    json_output: bool = json_option("Print the results as JSON."),
) -> None:
    """Grad-CAM heatmaps of the score a model is judged by, overlaid on each input image."""
    from transfusion_cli.data.batches import checkpoint_input_roots
    from transfusion_cli.deploy.overlays import overlay_files
    from transfusion_cli.errors import DataError
    from transfusion_cli.evaluation.explain import explain_images
    from transfusion_cli.models.checkpoint import checkpoint_dataset_info, load_checkpoint
    from transfusion_cli.outputs import OutputFolder, refuse_overwriting_inputs

    recorded = load_checkpoint(checkpoint)  # the data it was trained on are never written into
    overlays = overlay_files(out_dir, [str(i) for i in images], [f".{m}.png" for m in method])
    refuse_overwriting_inputs({"--out": OutputFolder(out_dir, "the heatmap PNGs", overlays)},
                              inputs=[checkpoint, *images],
                              data_dirs=checkpoint_input_roots(
                                  recorded, checkpoint_dataset_info(recorded)))
    results = explain_images(checkpoint, images, out_dir, method, layer)
    explained = [r for r in results if r.error is None]
    for message in results[0].model_warnings:  # as `tfx predict` warns: the model's once,
        warn(message)
    for r in explained:  # then each image's own
        for message in r.warnings[len(r.model_warnings):]:
            warn(f"{r.image}: {message}")
    if json_output:
        print_json([r.to_dict() for r in results])
    else:
        written = sum(len(r.files) for r in explained)
        info(f"explained layer '{results[0].layer}' ({', '.join(method)}); wrote {written} "
             f"heatmap(s) to {out_dir}")
        for r in explained:
            files = ", ".join(r.files.values())
            out.print(f"{r.image}: {r.target} = {r.score:.3f} -> {files}", markup=False)
    failures = [r for r in results if r.error is not None]
    for failure in failures:  # as `tfx predict`: each failure, then one error line
        err.print(f"failed: {failure.error}", markup=False)
    if failures:
        raise DataError(f"{len(failures)} of {len(results)} images could not be explained "
                        f"(listed above); the other {len(explained)} were.")
