"""`tfx figures`: the paper's representation figures from a compare-inits sweep folder or a
reproduce study folder."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import (
    Device,
    Split,
    chosen_measure,
    device_option,
    json_option,
    measure_option,
    metric_alias_option,
    out_option,
    seed_option,
    split_option,
)
from transfusion_cli.console import info, print_json, warn

DEFAULT_MEASURE = "cca"  # compare.figures.DEFAULT_MEASURE (imported lazily: fast --help)


class Figure(StrEnum):
    """Figures `tfx figures` draws."""

    fig2 = "fig2"
    layers = "layers"
    scatter = "scatter"
    filters = "filters"
    all = "all"


@app.command("figures", epilog=examples(
    "tfx figures fig2 runs/sweep -o figures      # transfer vs random, top two blocks",
    "tfx figures all runs/study -o figures       # a `tfx reproduce` study folder",
    "tfx figures layers runs/sweep -o figures --measure svcca"))
def figures_command(
    figure: Figure = typer.Argument(..., help="fig2 (Figure 2: top-two-block similarity, "
                                    "transfer vs random and random vs random), layers "
                                    "(similarity to initialisation per block), scatter "
                                    "(similarity at init vs after training), filters (first "
                                    "conv before/after), or all."),
    sweep: Path = typer.Argument(..., help="A `tfx compare-inits` sweep folder (with "
                                 "plan.json) or a `tfx reproduce` study folder (its sweeps); "
                                 "only finished cells are used, the others are named."),
    out: Path = out_option(..., "Folder for FIGURE.png and FIGURE.json (the numbers)."),
    measure: str = measure_option(DEFAULT_MEASURE, "Similarity measure (`tfx list metrics`); "
                                  "the paper's is CCA (mean canonical correlation)."),
    metric_alias: str = metric_alias_option(),
    transfer: str = typer.Option(None, "--transfer", help="The init that counts as transfer, "
                                 "as the sweep labels it.",
                                 show_default="imagenet, else the sweep's checkpoint:PATH"),
    samples: int = typer.Option(500, "--samples", help="Probe inputs from the split (the same "
                                "images for every checkpoint)."),
    split: Split = split_option("val", "Split the probe inputs come from."),
    seed: int = seed_option("Seed of the probe sample and of the sampled spatial positions."),
    device: Device = device_option(),
    json_out: bool = json_option("Print the written files, the skipped cells and the "
                                 "low-data blocks as JSON."),
) -> None:
    """Draw the paper's representation figures from a sweep or study (PNG + JSON)."""
    from transfusion_cli.compare.figure_plots import figure_files, make_figures
    from transfusion_cli.compare.figures import FIGURES, FigureSettings, sweep_folders
    from transfusion_cli.outputs import OutputFolder, refuse_overwriting_inputs

    measure = chosen_measure(measure, metric_alias, DEFAULT_MEASURE, "figures")
    folders = sweep_folders(sweep)
    names = FIGURES if figure == Figure.all else (figure.value,)
    refuse_overwriting_inputs({"--out": OutputFolder(out, "the figures",
                                                     figure_files(out, names))},
                              inputs=[f.plan for f in folders])
    settings = FigureSettings(measure=measure, samples=samples, split=split, seed=seed,
                              device=device, transfer=transfer)
    written, numbers = make_figures(names, sweep, out, settings)
    for skipped in numbers["skipped"]:
        warn(f"skipped cell {skipped['cell']}: {skipped['reason']}")
    for name, (image, data) in written.items():
        info(f"{name}: {image} (numbers in {data}, measure {numbers['measure']})")
    if json_out:
        print_json({"measure": numbers["measure"],
                    "figures": {name: {"image": str(image), "numbers": str(data)}
                                for name, (image, data) in written.items()},
                    "skipped": numbers["skipped"], "low_data": numbers["low_data"]})
