"""`tfx data show` (contact sheet PNG), `tfx data stats` (label counts per split) and `tfx data
fetch` (a published file, checksum-checked)."""

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
    split_option,
)
from transfusion_cli.console import info, out, print_json

data_app = typer.Typer(help="Look at a dataset (contact sheet, label statistics) or download "
                       "one (fetch).", no_args_is_help=True)
app.add_typer(data_app, name="data")

DATA = typer.Option(..., "--data", help="Dataset name (see `tfx list datasets`).")
DATA_DIR = data_dir_option()
OPTIONS = dataset_option_option()
DATA_SEED = typer.Option(0, "--data-seed", help="Data seed (synthetic content, patient split).")
IMAGE_SIZE = typer.Option(None, "--image-size", help="Image size in pixels.",
                          show_default="the dataset's")


def load_bundle(data: str, data_dir: Path | None, option: list[str], data_seed: int,
                image_size: int | None):
    """Build the dataset the way `tfx fit` does."""
    from transfusion_cli.data.build import build_dataset, parse_option_pairs

    return build_dataset(data, data_dir=data_dir, image_size=image_size, seed=data_seed,
                         options=parse_option_pairs(option))


@data_app.command("show", epilog=examples(
    "tfx data show --data synthetic-retina -o sheet.png",
    "tfx data show --data chexpert --data-dir /data/CheXpert --split val -o val.png"))
def show_command(
    data: str = DATA,
    out_path: Path = out_option(..., "PNG file to write."),
    split: Split = split_option("train", "Which split to show."),
    per_class: int = typer.Option(8, "--per-class", min=1, max=64,
                                  help="Examples per row (class or label)."),
    data_dir: Path | None = DATA_DIR,
    option: list[str] = OPTIONS,
    data_seed: int = DATA_SEED,
    image_size: int | None = IMAGE_SIZE,
) -> None:
    """Write a contact sheet: a row of examples per class (per label for multi-label data)."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.data.contact_sheet import contact_sheet, write_contact_sheet
    from transfusion_cli.data.source import DataSource
    from transfusion_cli.outputs import refuse_overwriting_inputs

    refuse_overwriting_inputs({"--out": out_path}, data_dirs=DataSource.named(
        data, data_dir, parse_option_pairs(option or [])).input_roots())
    bundle = load_bundle(data, data_dir, option, data_seed, image_size)
    sheet = contact_sheet(bundle, split, per_class, seed=data_seed)
    path = write_contact_sheet(out_path, sheet)
    info(f"Wrote a {sheet.width}x{sheet.height} contact sheet of {data} ({split}).")
    out.print(str(path))


@data_app.command("stats", epilog=examples(
    "tfx data stats --data synthetic-chest",
    "tfx data stats --data chexpert --option uncertainty=u-ones --json"))
def stats_command(
    data: str = DATA,
    data_dir: Path | None = DATA_DIR,
    option: list[str] = OPTIONS,
    data_seed: int = DATA_SEED,
    image_size: int | None = IMAGE_SIZE,
    json_output: bool = json_option(),
) -> None:
    """Label counts per split (positives / negatives / masked per label for multi-label)."""
    from transfusion_cli.data.stats import label_stats

    stats = label_stats(load_bundle(data, data_dir, option, data_seed, image_size))
    if json_output:
        print_json(stats)
        return
    print_stats(stats)


def print_stats(stats: dict[str, Any]) -> None:
    """Human-readable form of ``label_stats``."""
    from rich.table import Table

    options = ", ".join(f"{k}={v}" for k, v in stats["options"].items()) or "none"
    out.print(f"{stats['dataset']}: {stats['task']}, {stats['channels']} channel(s), "
              f"{stats['image_size']} px, best checkpoint by {stats['selection_metric']}")
    out.print(f"options: {options}")
    splits = stats["splits"]
    table = Table("label" if stats["task"] == "multilabel" else "class", *splits,
                  title="positive / negative / masked" if stats["task"] == "multilabel"
                  else "images per class")
    if stats["task"] == "multilabel":
        for label in stats["classes"]:
            table.add_row(label, *(
                "{positive} / {negative} / {masked}".format(**entry["labels"][label])
                for entry in splits.values()))
        table.add_row("no positive label", *(str(e["no_positive_label"]) for e in splits.values()))
    else:
        for label in next(iter(splits.values()))["classes"] if splits else []:
            table.add_row(label, *(format_share(e["classes"][label], e["images"])
                                   for e in splits.values()))
        if stats["referable_threshold"] is not None:
            table.add_row(f"referable (>= {stats['referable_threshold']})", *(
                format_share(e["referable"], e["images"]) for e in splits.values()))
    table.add_row("images", *(str(e["images"]) for e in splits.values()), style="bold")
    out.print(table)


def format_share(count: int, total: int) -> str:
    """'123 (45.6%)'."""
    return f"{count} ({100 * count / total:.1f}%)" if total else str(count)


@data_app.command("save", epilog=examples(
    "tfx data save --data synthetic-retina --n 4 -o samples/   "
    "# then: tfx predict model.onnx samples/"))
def save_command(
    data: str = DATA,
    out_dir: Path = out_option(..., "Folder for the PNG files."),
    n: int = typer.Option(4, "--n", min=1, help="How many images (spread over the classes)."),
    split: Split = split_option("test", "Which split to sample."),
    data_dir: Path | None = DATA_DIR,
    option: list[str] = OPTIONS,
    data_seed: int = DATA_SEED,
    image_size: int | None = IMAGE_SIZE,
) -> None:
    """Save sample images as PNG files named <split>-<index>-<label>.png."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.data.samples import save_samples
    from transfusion_cli.data.source import DataSource
    from transfusion_cli.outputs import OutputFolder, refuse_overwriting_inputs

    refuse_overwriting_inputs({"--out": OutputFolder(out_dir, "the sample PNGs")},
                              data_dirs=DataSource.named(
                                  data, data_dir, parse_option_pairs(option or [])).input_roots())
    bundle = load_bundle(data, data_dir, option, data_seed, image_size)
    paths = save_samples(bundle, out_dir, n, split, seed=data_seed)
    info(f"Wrote {len(paths)} {data} {split} images to {out_dir}.")
    for path in paths:
        out.print(str(path), markup=False)


@data_app.command("fetch", epilog=examples(
    "tfx data fetch medmnist/retinamnist               # 28 px, into $TFX_DATA_DIR/medmnist",
    "tfx data fetch medmnist/pneumoniamnist --size 224 -o ~/data/medmnist"))
def fetch_command(
    what: str = typer.Argument(..., metavar="DATASET/NAME", help="What to download, e.g. "
                               "medmnist/retinamnist (a dataset that can fetch its files)."),
    size: int = typer.Option(28, "--size", help="Image size of the file (MedMNIST+: 28, 64, "
                             "128 or 224 px)."),
    out_dir: Path | None = out_option(None, "Folder to download into.",
                                      show_default="$TFX_DATA_DIR/<dataset>"),
) -> None:
    """Download a dataset's published file and check its published checksum (MD5) before it
    is kept; an existing file is never overwritten."""
    from transfusion_cli import env
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.plugins import get

    dataset, sep, name = what.partition("/")
    if not sep or not dataset or not name:
        raise ConfigError(f"{what!r}: write DATASET/NAME, e.g. medmnist/retinamnist.")
    spec = get("datasets", dataset)
    if spec.fetch is None:
        raise ConfigError(f"Dataset '{dataset}' has no files tfx can download; get them as "
                          "`tfx list datasets` describes and pass --data-dir.")
    if out_dir is None:
        root = env.value("TFX_DATA_DIR")
        if root is None:
            raise ConfigError("Where to? Pass --out FOLDER, or set TFX_DATA_DIR (the file then "
                              f"goes to $TFX_DATA_DIR/{dataset}, where tfx looks for it).")
        out_dir = Path(root) / dataset
    path = spec.fetch(name, size, out_dir)
    out.print(str(path), markup=False)
