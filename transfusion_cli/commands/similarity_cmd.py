"""`tfx similarity` (SVCCA / PWCCA / CKA layer by layer) and `tfx filters` (first-layer filters).

Heavy libraries (torch, numpy, matplotlib) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import (
    Device,
    Split,
    chosen_measure,
    data_dir_option,
    dataset_option_option,
    device_option,
    json_option,
    measure_option,
    metric_alias_option,
    out_option,
    seed_option,
    split_option,
)
from transfusion_cli.console import info, out, print_json

DEFAULT_CROSS_PNG = "similarity_cross.png"
# The same default as compare_checkpoints (DEFAULT_METRICS; a test checks they agree), written
# out so that this module imports no numpy.
DEFAULT_MEASURES = "svcca,pwcca,cka"


@app.command("similarity", epilog=examples(
    "tfx similarity runs/a/checkpoints/init.pt runs/a/checkpoints/best.pt --plot sim.png",
    "tfx similarity runs/a/checkpoints/best.pt runs/b/checkpoints/best.pt --cross "
    "--measure cka"))
def similarity_command(
    checkpoint_a: Path = typer.Argument(..., help="First checkpoint, e.g. "
                                        "RUN/checkpoints/init.pt (PWCCA weights come from A)."),
    checkpoint_b: Path = typer.Argument(..., help="Second checkpoint, e.g. "
                                        "RUN/checkpoints/best.pt."),
    measure: str = measure_option(DEFAULT_MEASURES, "Similarity measures, comma-separated "
                                  "(`tfx list metrics`): cca, svcca, pwcca, cka, cka_debiased, "
                                  "cka_minibatch.", "-m"),
    metric: str | None = metric_alias_option(),
    layers: str = typer.Option("all", "--layers", help="Comma-separated block names "
                               "(stem, block1, ..., head) or 'all'."),
    cross: bool = typer.Option(False, "--cross", help="Every layer of A against every layer "
                               "of B (any two architectures), drawn as a heatmap (--plot, "
                               f"default {DEFAULT_CROSS_PNG})."),
    against: list[str] = typer.Option(None, "--against", help="Another run folder (or trained "
                                      "checkpoint beside its init.pt) whose similarity to its "
                                      "own initialisation is overlaid on --plot; repeatable."),
    data: str = typer.Option(None, "--data", help="Probe dataset.",
                             show_default="the one recorded in checkpoint A, with its options"),
    data_dir: Path = data_dir_option("Folder of the probe dataset."),
    option: list[str] = dataset_option_option("Probe dataset option (repeatable)."),
    split: Split = split_option("val", "Probe split."),
    samples: int = typer.Option(500, "--samples", help="Probe inputs (seeded subset of the "
                                "split; all when it is smaller)."),
    seed: int = seed_option("Seed of the probe subset and of the spatial positions kept."),
    spatial: str = typer.Option("auto", "--spatial", help="Conv maps: 'auto' average-pools the "
                                "larger map to the smaller one's grid; an integer S pools both "
                                "to at most SxS (1 = global average)."),
    max_points: int = typer.Option(50_000, "--max-points", help="Data points (input x "
                                   "position) per layer; kept at >= 10x the neurons when the "
                                   "inputs allow."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Inputs per forward pass."),
    device: Device = device_option(),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    baseline: bool = typer.Option(False, "--baseline", help="Also report a null baseline: the "
                                  "same measures with B's data points shuffled within each "
                                  "batch."),
    json_out: bool = json_option("JSON on stdout: a list of objects with layer, neurons, "
                                 "points and one key per measure."),
    plot: Path = typer.Option(None, "--plot", help="PNG: similarity over layers (the paper's "
                              "similarity-to-initialisation curve), or the heatmap with "
                              "--cross."),
) -> None:
    """Compare two checkpoints' representations layer by layer (SVCCA, PWCCA, CKA)."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.outputs import refuse_overwriting_inputs
    from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints, run_checkpoints
    from transfusion_cli.similarity.plots import figure_format

    measure = chosen_measure(measure, metric, DEFAULT_MEASURES, "similarity")
    if plot is not None:
        figure_format(plot, "--plot")  # before the long pass, not after it
    runs = [run_checkpoints(text) for text in against or []]
    refuse_overwriting_inputs(
        {"--plot": plot or (Path(DEFAULT_CROSS_PNG) if cross else None)},
        inputs=[checkpoint_a, checkpoint_b, *(path for run in runs for path in run)],
        data_dirs=[data_dir, *_probe_roots(checkpoint_a, data, data_dir, option)])
    result = compare_checkpoints(
        checkpoint_a, checkpoint_b, metrics=measure, layers=layers, cross=cross,
        against=against or [], data=data, data_dir=data_dir,
        options=parse_option_pairs(option) if option else None, split=split, samples=samples,
        seed=seed, spatial=spatial, max_points=max_points, batch_size=batch_size,
        device=device, workers=workers, baseline=baseline)
    if cross:
        _cross_report(result, json_out, plot)
    else:
        _layer_report(result, json_out, plot)


def _probe_roots(checkpoint: Path, data: str | None, data_dir: Path | None,
                 option: list[str] | None) -> list[Path]:
    """Every file and folder the probe dataset is read from: ``--data``'s, else the one
    checkpoint A was trained on (the output guard keeps --plot out of them)."""
    from transfusion_cli.data.batches import checkpoint_input_roots
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.data.source import DataSource
    from transfusion_cli.models.checkpoint import checkpoint_dataset_info, load_checkpoint

    if data:
        return DataSource.named(data, data_dir, parse_option_pairs(option or [])).input_roots()
    recorded = load_checkpoint(checkpoint)
    return checkpoint_input_roots(recorded, checkpoint_dataset_info(recorded), data_dir)


def _cross_report(result, json_out: bool, plot: Path | None) -> None:
    """Every layer of A against every layer of B: matrices on stdout, heatmap PNG."""
    from transfusion_cli.similarity.analysis import result_matrix
    from transfusion_cli.similarity.plots import save_heatmap
    from transfusion_cli.similarity.report import cross_table, json_rows

    comparison = result.comparisons[0]
    a, b, rows, cols = comparison.a, comparison.b, result.rows, result.cols
    matrices = {n: result_matrix(comparison.results, rows, cols, n) for n in result.metrics}
    if json_out:
        print_json(json_rows(comparison.title, comparison.results, result.metrics))
    else:
        title = f"{a.label()} ({a.arch}) vs {b.label()} ({b.arch})"
        for name, matrix in matrices.items():
            out.print(cross_table(f"{name}: {title}", matrix, rows, cols), markup=False)
    target = plot or Path(DEFAULT_CROSS_PNG)
    save_heatmap(matrices, rows, cols, f"{a.label()} ({a.arch})", f"{b.label()} ({b.arch})",
                 target)
    info(f"heatmap written to {target}")


def _layer_report(result, json_out: bool, plot: Path | None) -> None:
    """Matched layers of each comparison: tables (or JSON) on stdout, optional line plot."""
    from transfusion_cli.similarity.plots import Curve, save_layer_plot
    from transfusion_cli.similarity.report import json_rows, layer_table

    names, probe = result.metrics, result.probe
    where = f"{probe.info.name} {probe.split}, {len(probe)} inputs"
    if json_out:
        print_json([row for c in result.comparisons
                    for row in json_rows(c.title, c.results, names)])
    else:
        for c in result.comparisons:
            out.print(layer_table(f"{c.title} ({c.a.arch}; {where})", c.results, names,
                                  result.baseline), markup=False)
    if plot is None:
        return
    curves = [Curve(f"{c.title} ({c.b.arch})", [r.layer_a for r in c.results],
                    {n: [r.metrics[n].value for r in c.results] for n in names})
              for c in result.comparisons]
    save_layer_plot(curves, names, plot, title=f"Similarity by layer ({where})")
    info(f"plot written to {plot}")


@app.command("filters", epilog=examples(
    "tfx filters runs/a/checkpoints/best.pt -o filters.png",
    "tfx filters runs/a/checkpoints/init.pt --compare runs/a/checkpoints/best.pt -o change.png"))
def filters_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint whose first-layer filters to draw."),
    layer: str = typer.Option(None, "--layer", help="Block whose first conv to draw.",
                              show_default="the first block, stem or block1"),
    output: Path = out_option(..., "Image file to write; its suffix names the format (.png, "
                              ".jpg, .pdf, .svg, ...)."),
    compare: Path = typer.Option(None, "--compare", help="Second checkpoint drawn beside the "
                                 "first (e.g. init.pt vs best.pt)."),
    json_out: bool = json_option("Summary as JSON on stdout."),
) -> None:
    """Draw a layer's convolution filters as an image grid (normalised per filter)."""
    from transfusion_cli.models.filters import filter_change, filter_grid, model_filters
    from transfusion_cli.models.trained import checkpoint_label, load_trained
    from transfusion_cli.outputs import refuse_overwriting_inputs
    from transfusion_cli.similarity.plots import figure_format, save_image_panels

    figure_format(output, "--out")
    paths = [checkpoint] + ([compare] if compare is not None else [])
    refuse_overwriting_inputs({"--out": output}, inputs=paths)
    filters = []
    for path in paths:
        trained = load_trained(path, "cpu")
        # --compare without --layer draws the same block as the first checkpoint.
        wanted = layer or (filters[0][2].layer if filters else None)
        found = model_filters(trained.model, wanted)
        filters.append((path, trained.arch, found))
    panels = []
    for path, arch, found in filters:
        out_c, in_c, kh, kw = found.weights.shape
        shown = "RGB" if in_c == 3 else ("grey" if in_c == 1 else f"mean of {in_c} inputs")
        panels.append((f"{checkpoint_label(path)} ({arch}) {found.module}: {out_c} filters "
                       f"{kh}x{kw}, {shown}", filter_grid(found.weights)))
    save_image_panels(panels, output)
    summary = {"out": str(output), "filters": [
        {"checkpoint": str(path), "arch": arch, "layer": found.layer, "module": found.module,
         "shape": list(found.weights.shape)} for path, arch, found in filters]}
    if compare is not None:
        summary["change"] = filter_change(filters[0][2].weights, filters[1][2].weights)
    if json_out:
        print_json(summary)
        return
    for entry in summary["filters"]:
        out.print(f"{entry['checkpoint']}: {entry['arch']} {entry['layer']} "
                  f"({entry['module']}) filters {tuple(entry['shape'])}")
    change = summary.get("change")
    if change and change["comparable"]:
        out.print(f"change: relative norm {change['relative_change']:.4f}, mean cosine "
                  f"{change['mean_cosine']:.4f} (min {change['min_cosine']:.4f})")
    elif change:
        out.print("change: not comparable (different filter shapes)")
    info(f"filters written to {output}")
