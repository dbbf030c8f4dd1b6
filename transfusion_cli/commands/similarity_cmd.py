"""`tfx similarity` (SVCCA / PWCCA / CKA layer by layer) and `tfx filters` (first-layer filters).

Heavy libraries (torch, numpy, matplotlib) are imported inside the commands.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from transfusion_cli.app import app
from transfusion_cli.console import info, out, print_json, warn
from transfusion_cli.errors import CheckpointError, ConfigError, TfxError

DEFAULT_CROSS_PNG = "similarity_cross.png"


def _metric_specs(text: str) -> list:
    from transfusion_cli.registry import get

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ConfigError("--metric is empty; name one or more metrics, e.g. svcca,pwcca,cka "
                          "(`tfx list metrics`).")
    return [get("metrics", name) for name in names]


def _requested_layers(text: str) -> list[str] | None:
    names = [n.strip() for n in text.split(",") if n.strip()]
    return None if not names or names == ["all"] else list(dict.fromkeys(names))


def _unknown_layer(name: str, loaded, valid: list[str]) -> TfxError:
    return ConfigError(f"Unknown layer '{name}' for {loaded.arch} ({loaded.label()}); valid "
                       f"layers: {', '.join(valid)}.")


def _diagonal_pairs(a, b, requested: list[str] | None) -> list[tuple[str, str]]:
    from transfusion_cli.models.blocks import block_names

    names_a, names_b = block_names(a.model), block_names(b.model)
    if requested is None:
        if names_a != names_b or a.arch != b.arch:
            common = [n for n in names_a if n in names_b]
            hint = (f", or compare layers both have by name with --layers {','.join(common)}"
                    if common else "")
            raise ConfigError(f"A is {a.arch} and B is {b.arch}: different architectures are "
                              f"not matched layer by layer; use --cross to compare every layer "
                              f"of A with every layer of B{hint}.")
        return [(n, n) for n in names_a]
    for name in requested:
        for loaded, names in ((a, names_a), (b, names_b)):
            if name not in names:
                raise _unknown_layer(name, loaded, names)
    return [(n, n) for n in requested]


def _cross_layers(a, b, requested: list[str] | None) -> tuple[list[str], list[str]]:
    from transfusion_cli.models.blocks import block_names

    names_a, names_b = block_names(a.model), block_names(b.model)
    if requested is None:
        return names_a, names_b
    for name in requested:
        if name not in names_a and name not in names_b:
            raise ConfigError(f"Unknown layer '{name}'; {a.arch} has {', '.join(names_a)} and "
                              f"{b.arch} has {', '.join(names_b)}.")
    rows = [n for n in requested if n in names_a]
    cols = [n for n in requested if n in names_b]
    if not rows or not cols:
        raise ConfigError("--layers names no layer of " + (a.arch if not rows else b.arch)
                          + "; with --cross name layers of both models.")
    return rows, cols


def _run_of(text: str) -> tuple[Path, Path]:
    """(init.pt, trained checkpoint) of a run folder or of a checkpoint beside its init.pt."""
    path = Path(text)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        final = next((folder / n for n in ("best.pt", "last.pt") if (folder / n).is_file()),
                     None)
        if final is None or not (folder / "init.pt").is_file():
            raise CheckpointError(f"--against {text}: no checkpoints/init.pt and best.pt (or "
                                  "last.pt) there; pass a run folder written by `tfx fit`.")
        return folder / "init.pt", final
    if not path.is_file():
        raise CheckpointError(f"--against {text} does not exist; pass a run folder or a "
                              "checkpoint that has an init.pt beside it.")
    if path.name == "init.pt" or not (path.parent / "init.pt").is_file():
        raise CheckpointError(f"--against {text}: no init.pt beside it to compare with; pass a "
                              "run folder or a trained checkpoint inside RUN/checkpoints/.")
    return path.parent / "init.pt", path


def _preparer(loaded, device):
    import torch

    from transfusion_cli.data.bundles import normalize

    def prepare(images):
        x = normalize(images, loaded.info, loaded.in_chans)
        return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x
    return prepare


def _compare(a, b, pairs, specs, probe, settings, device):
    from transfusion_cli.similarity.analysis import compare_models
    from transfusion_cli.similarity.probe import probe_batches

    started = time.perf_counter()
    results = compare_models(
        a.model, b.model,
        probe_batches(probe, settings["batch_size"], device, settings["workers"]),
        prepare_a=_preparer(a, device), prepare_b=_preparer(b, device), pairs=pairs,
        metrics=specs, inputs=len(probe), spatial=settings["spatial"],
        max_points=settings["max_points"], seed=settings["seed"],
        baseline=settings["baseline"])
    info(f"{a.label()} vs {b.label()}: {len(pairs)} layer pair(s) over {len(probe)} inputs in "
         f"{time.perf_counter() - started:.1f} s")
    for result in results:
        where = result.layer_a if result.layer_a == result.layer_b else \
            f"{result.layer_a}/{result.layer_b}"
        for name, metric in result.metrics.items():
            if metric.reason:
                warn(f"{where}: {name} is NaN: {metric.reason}")
        for note in result.notes:
            warn(f"{where}: {note}")
    return results


@app.command("similarity")
def similarity_command(
    checkpoint_a: Path = typer.Argument(..., help="First checkpoint, e.g. "
                                        "RUN/checkpoints/init.pt (PWCCA weights come from A)."),
    checkpoint_b: Path = typer.Argument(..., help="Second checkpoint, e.g. "
                                        "RUN/checkpoints/best.pt."),
    metric: str = typer.Option("svcca,pwcca,cka", "--metric", "-m", help="Comma-separated "
                               "metrics (`tfx list metrics`): cca, svcca, pwcca, cka, "
                               "cka_debiased, cka_minibatch."),
    layers: str = typer.Option("all", "--layers", help="Comma-separated block names "
                               "(stem, block1, ..., head) or 'all'."),
    cross: bool = typer.Option(False, "--cross", help="Every layer of A against every layer "
                               "of B (any two architectures), drawn as a heatmap (--plot, "
                               f"default {DEFAULT_CROSS_PNG})."),
    against: list[str] = typer.Option(None, "--against", help="Another run folder (or trained "
                                      "checkpoint beside its init.pt) whose similarity to its "
                                      "own initialisation is overlaid on --plot; repeatable."),
    data: str = typer.Option(None, "--data", help="Probe dataset (default: the one recorded "
                             "in checkpoint A, with its options)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder of the probe dataset."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Probe dataset option "
                                     "KEY=VALUE (repeatable)."),
    split: str = typer.Option("val", "--split", help="Probe split: train, val or test."),
    samples: int = typer.Option(500, "--samples", help="Probe inputs (seeded subset of the "
                                "split; all when it is smaller)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probe subset and of the spatial "
                             "positions kept."),
    spatial: str = typer.Option("auto", "--spatial", help="Conv maps: 'auto' average-pools the "
                                "larger map to the smaller one's grid; an integer S pools both "
                                "to at most SxS (1 = global average)."),
    max_points: int = typer.Option(50_000, "--max-points", help="Data points (input x "
                                   "position) per layer; kept at >= 10x the neurons when the "
                                   "inputs allow."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Inputs per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present), cpu or "
                               "cuda."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    baseline: bool = typer.Option(False, "--baseline", help="Also report a null baseline: the "
                                  "same metrics with B's data points shuffled within each "
                                  "batch."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout: a list of objects "
                                  "with layer, neurons, points and one key per metric."),
    plot: Path = typer.Option(None, "--plot", help="PNG: similarity over layers (the paper's "
                              "similarity-to-initialisation curve), or the heatmap with "
                              "--cross."),
) -> None:
    """Compare two checkpoints' representations layer by layer (SVCCA, PWCCA, CKA)."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.similarity.activations import parse_spatial
    from transfusion_cli.similarity.analysis import load_model, resolve_device
    from transfusion_cli.similarity.probe import build_probe

    specs = _metric_specs(metric)
    if against and cross:
        raise ConfigError("--against overlays similarity-to-initialisation curves and cannot "
                          "be combined with --cross; run them separately.")
    if max_points < 1:
        raise ConfigError(f"--max-points {max_points} must be at least 1.")
    settings = {"spatial": parse_spatial(spatial), "max_points": max_points, "seed": seed,
                "batch_size": batch_size, "workers": workers, "baseline": baseline}
    dev = resolve_device(device)
    a, b = load_model(checkpoint_a, dev), load_model(checkpoint_b, dev)
    requested = _requested_layers(layers)
    if cross:
        rows, cols = _cross_layers(a, b, requested)
        pairs = [(r, c) for r in rows for c in cols]
    else:
        pairs = _diagonal_pairs(a, b, requested)
    runs = [_run_of(text) for text in against or []]
    probe = build_probe(a.checkpoint, data=data, data_dir=str(data_dir) if data_dir else None,
                        options=parse_option_pairs(option) if option else None, split=split,
                        samples=samples, seed=seed)
    info(f"probe: {probe.info.name} {split}, {len(probe)} inputs of "
         f"{probe.info.image_size} px, device {dev}")

    if cross:
        _cross_report(a, b, pairs, specs, probe, settings, dev, json_out, plot)
    else:
        comparisons = [(a, b, pairs)]
        for init_path, final_path in runs:
            ra, rb = load_model(init_path, dev), load_model(final_path, dev)
            run_layers = [n for n in requested or [] if n in ra.model.tfx_blocks]
            comparisons.append((ra, rb, _diagonal_pairs(ra, rb, run_layers or None)))
        _layer_report(comparisons, specs, probe, settings, dev, json_out, plot)


def _cross_report(a, b, pairs, specs, probe, settings, dev, json_out, plot) -> None:
    """Every layer of A against every layer of B: matrices on stdout, heatmap PNG."""
    from transfusion_cli.similarity.analysis import result_matrix
    from transfusion_cli.similarity.plots import save_heatmap
    from transfusion_cli.similarity.report import cross_table, json_rows

    names = [s.name for s in specs]
    rows = list(dict.fromkeys(la for la, _ in pairs))
    cols = list(dict.fromkeys(lb for _, lb in pairs))
    results = _compare(a, b, pairs, specs, probe, settings, dev)
    matrices = {n: result_matrix(results, rows, cols, n) for n in names}
    if json_out:
        print_json(json_rows(f"{a.label()} vs {b.label()}", results, names))
    else:
        title = f"{a.label()} ({a.arch}) vs {b.label()} ({b.arch})"
        for name, matrix in matrices.items():
            out.print(cross_table(f"{name}: {title}", matrix, rows, cols), markup=False)
    target = plot or Path(DEFAULT_CROSS_PNG)
    save_heatmap(matrices, rows, cols, f"{a.label()} ({a.arch})", f"{b.label()} ({b.arch})",
                 target)
    info(f"heatmap written to {target}")


def _layer_report(comparisons, specs, probe, settings, dev, json_out, plot) -> None:
    """Matched layers of each comparison: tables (or JSON) on stdout, optional line plot."""
    from transfusion_cli.similarity.plots import Curve, save_layer_plot
    from transfusion_cli.similarity.report import json_rows, layer_table

    names = [s.name for s in specs]
    done = [(ca, cb, _compare(ca, cb, pairs, specs, probe, settings, dev))
            for ca, cb, pairs in comparisons]
    where = f"{probe.info.name} {probe.split}, {len(probe)} inputs"
    if json_out:
        print_json([row for ca, cb, results in done
                    for row in json_rows(f"{ca.label()} vs {cb.label()}", results, names)])
    else:
        for ca, cb, results in done:
            out.print(layer_table(f"{ca.label()} vs {cb.label()} ({ca.arch}; {where})",
                                  results, names, settings["baseline"]), markup=False)
    if plot is None:
        return
    curves = [Curve(f"{ca.label()} vs {cb.label()} ({cb.arch})", [r.layer_a for r in results],
                    {n: [r.metrics[n].value for r in results] for n in names})
              for ca, cb, results in done]
    save_layer_plot(curves, names, plot, title=f"Similarity by layer ({where})")
    info(f"plot written to {plot}")


@app.command("filters")
def filters_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint whose first-layer filters to draw."),
    layer: str = typer.Option(None, "--layer", help="Block whose first conv to draw (default: "
                              "the first block, stem or block1)."),
    output: Path = typer.Option(..., "--out", help="PNG file to write."),
    compare: Path = typer.Option(None, "--compare", help="Second checkpoint drawn beside the "
                                 "first (e.g. init.pt vs best.pt)."),
    json_out: bool = typer.Option(False, "--json", help="Summary as JSON on stdout."),
) -> None:
    """Draw a layer's convolution filters as an image grid (normalised per filter)."""
    from transfusion_cli.models.checkpoint import build_model, load_checkpoint
    from transfusion_cli.models.filters import filter_change, filter_grid, model_filters
    from transfusion_cli.similarity.plots import save_image_panels
    from transfusion_cli.similarity.report import checkpoint_label

    paths = [checkpoint] + ([compare] if compare is not None else [])
    filters = []
    for path in paths:
        ckpt = load_checkpoint(path)
        # --compare without --layer draws the same block as the first checkpoint.
        wanted = layer or (filters[0][2].layer if filters else None)
        found = model_filters(build_model(ckpt), wanted)
        filters.append((path, ckpt["arch"]["name"], found))
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
