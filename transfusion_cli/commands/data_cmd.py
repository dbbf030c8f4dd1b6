"""`tfx data show` (contact sheet PNG) and `tfx data stats` (label counts per split)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from transfusion_cli.app import app
from transfusion_cli.console import info, out, print_json

data_app = typer.Typer(help="Look at a dataset: contact sheet and label statistics.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

SPLITS = ("train", "val", "test")


class Split(StrEnum):
    """A dataset split."""

    train = "train"
    val = "val"
    test = "test"


DATA = typer.Option(..., "--data", help="Dataset name (see `tfx list datasets`).")
DATA_DIR = typer.Option(None, "--data-dir", help="Folder with the dataset's files.")
OPTIONS = typer.Option([], "--option", metavar="KEY=VALUE",
                       help="Dataset option, repeatable (e.g. uncertainty=u-ones).")
DATA_SEED = typer.Option(0, "--data-seed", help="Data seed (synthetic content, patient split).")
IMAGE_SIZE = typer.Option(None, "--image-size", help="Image size in pixels (default: the "
                          "dataset's).")


def load_bundle(data: str, data_dir: Path | None, option: list[str], data_seed: int,
                image_size: int | None):
    """Build the dataset the way `tfx fit` does."""
    from transfusion_cli.data.build import build_dataset, parse_option_pairs

    return build_dataset(data, data_dir=data_dir, image_size=image_size, seed=data_seed,
                         options=parse_option_pairs(option))


@data_app.command("show")
def show_command(
    data: str = DATA,
    out_path: Path = typer.Option(..., "--out", help="PNG file to write."),
    split: Split = typer.Option(Split.train, "--split", help="Which split to show."),
    per_class: int = typer.Option(8, "--per-class", min=1, max=64,
                                  help="Examples per row (class or label)."),
    data_dir: Path | None = DATA_DIR,
    option: list[str] = OPTIONS,
    data_seed: int = DATA_SEED,
    image_size: int | None = IMAGE_SIZE,
) -> None:
    """Write a contact sheet: a row of examples per class (per label for multi-label data)."""
    from transfusion_cli.data.contact_sheet import contact_sheet, write_contact_sheet

    bundle = load_bundle(data, data_dir, option, data_seed, image_size)
    sheet = contact_sheet(bundle, split.value, per_class, seed=data_seed)
    path = write_contact_sheet(out_path, sheet)
    info(f"Wrote a {sheet.width}x{sheet.height} contact sheet of {data} ({split.value}).")
    out.print(str(path))


def label_stats(bundle) -> dict[str, Any]:
    """Task, channels, size, options and per-split label counts of a built dataset."""
    import numpy as np

    from transfusion_cli.data.bundles import dataset_labels

    meta = bundle.info
    result: dict[str, Any] = {
        "dataset": meta.name, "task": meta.task, "channels": meta.channels,
        "image_size": meta.image_size, "classes": list(meta.class_names),
        "mean": list(meta.mean), "std": list(meta.std),
        "referable_threshold": meta.referable_threshold,
        "selection_metric": meta.selection_metric, "options": dict(meta.options), "splits": {},
    }
    for name in SPLITS:
        dataset = getattr(bundle, name)
        if dataset is None:
            continue
        labels = dataset_labels(dataset)
        entry: dict[str, Any] = {"images": len(dataset)}
        if meta.task == "multilabel":
            labels = labels.reshape(len(labels), -1).astype(np.float64)
            entry["labels"] = {
                label: {"positive": int((labels[:, k] == 1).sum()),
                        "negative": int((labels[:, k] == 0).sum()),
                        "masked": int(np.isnan(labels[:, k]).sum())}
                for k, label in enumerate(meta.class_names)}
            entry["no_positive_label"] = int((~(labels == 1).any(axis=1)).sum())
        else:
            flat = labels.reshape(len(labels), -1)[:, 0] if len(labels) else labels.reshape(0)
            if meta.task == "binary":
                names = list(meta.class_names)
                if len(names) != 2:
                    names = [f"not {names[0]}" if names else "negative",
                             names[0] if names else "positive"]
                codes = (flat >= 0.5).astype(int)
            else:
                names, codes = list(meta.class_names), flat.astype(int)
            counts = np.bincount(codes, minlength=len(names))
            entry["classes"] = {label: int(counts[k]) for k, label in enumerate(names)}
            if meta.referable_threshold is not None:
                entry["referable"] = int((codes >= meta.referable_threshold).sum())
        result["splits"][name] = entry
    return result


@data_app.command("stats")
def stats_command(
    data: str = DATA,
    data_dir: Path | None = DATA_DIR,
    option: list[str] = OPTIONS,
    data_seed: int = DATA_SEED,
    image_size: int | None = IMAGE_SIZE,
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Label counts per split (positives / negatives / masked per label for multi-label)."""
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
