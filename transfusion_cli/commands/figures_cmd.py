"""`tfx figures`: the paper's representation figures from a compare-inits sweep folder."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.console import info, print_json
from transfusion_cli.data.stats import SPLITS
from transfusion_cli.train.settings import DEVICES


class Figure(StrEnum):
    """Figures `tfx figures` draws."""

    fig2 = "fig2"
    layers = "layers"
    scatter = "scatter"
    filters = "filters"
    all = "all"


@app.command("figures", epilog=examples(
    "tfx figures fig2 runs/sweep -o figures      [dim]# transfer vs random, top two blocks[/dim]",
    "tfx figures all runs/sweep -o figures --metric svcca"))
def figures_command(
    figure: Figure = typer.Argument(..., help="fig2 (Figure 2: top-two-block similarity, "
                                    "transfer vs random and random vs random), layers "
                                    "(similarity to initialisation per block), scatter "
                                    "(similarity at init vs after training), filters (first "
                                    "conv before/after), or all."),
    sweep: Path = typer.Argument(..., help="A `tfx compare-inits` sweep folder (with "
                                 "plan.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for FIGURE.png and FIGURE.json."),
    metric: str = typer.Option("cca", "--metric", help="Similarity metric (`tfx list "
                               "metrics`); the paper's figures use CCA."),
    transfer: str = typer.Option(None, "--transfer", help="The init that counts as transfer, "
                                 "as written in --inits.",
                                 show_default="imagenet, else the sweep's checkpoint:PATH"),
    samples: int = typer.Option(500, "--samples", help="Probe inputs from the split."),
    split: Literal[SPLITS] = typer.Option("val", "--split",
                                          help="Split the probe inputs come from."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probe sample."),
    device: Literal[DEVICES] = typer.Option("auto", "--device",
                                            help="Where to run; auto: CUDA if present."),
    json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Draw the paper's representation figures from a compare-inits sweep (PNG + JSON)."""
    from transfusion_cli.outputs import refuse_overwriting_inputs
    from transfusion_cli.similarity.figures import FIGURES, FigureSettings, make_figure

    refuse_overwriting_inputs({"--out": out}, inputs=[sweep / "plan.json"])
    settings = FigureSettings(metric=metric, samples=samples, split=split, seed=seed,
                              device=device, transfer=transfer)
    names = FIGURES if figure == Figure.all else (figure.value,)
    written = {}
    for name in names:
        image, numbers = make_figure(name, sweep, out, settings)
        written[name] = {"image": str(image), "numbers": str(numbers)}
        info(f"{name}: {image} (numbers in {numbers})")
    if json_out:
        print_json(written)
