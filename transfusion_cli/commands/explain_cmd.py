"""`tfx explain`: heatmaps of what a model looked at (Grad-CAM and Grad-CAM++)."""

from __future__ import annotations

from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.console import info, out, print_json


@app.command("explain", epilog=examples(
    "tfx explain runs/quickstart/checkpoints/best.pt samples/*.png --out heatmaps/",
    "tfx explain best.pt photo.jpg --out heatmaps/ --layer block3 --method gradcam"))
def explain_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `tfx fit` (.pt)."),
    images: list[Path] = typer.Argument(..., help="Image files to explain."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the heatmap PNGs "
                                                          "(<image>.<method>.png)."),
    layer: str | None = typer.Option(None, "--layer",
                                     help="Block (block3, layer4, ...) or submodule whose "
                                          "activations are explained (default: the last block "
                                          "before the head)."),
    method: list[str] = typer.Option(["gradcam", "gradcam++"], "--method",
                                     help="gradcam and/or gradcam++ (repeatable)."),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Grad-CAM heatmaps of the score a model is judged by, overlaid on each input image."""
    from transfusion_cli.evaluation.explain import explain_images
    from transfusion_cli.outputs import refuse_overwriting_inputs

    refuse_overwriting_inputs({"--out": out_dir}, inputs=[checkpoint, *images])
    results = explain_images(checkpoint, images, out_dir, method, layer)
    if json_output:
        print_json([r.to_dict() for r in results])
        return
    info(f"explained layer '{results[0].layer}' ({', '.join(method)}); wrote {out_dir}")
    for r in results:
        files = ", ".join(r.files.values())
        out.print(f"{r.image}: {r.target} = {r.score:.3f} -> {files}", markup=False)
