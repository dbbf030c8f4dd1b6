"""`tfx plugins` and `tfx list ...`: what the plugins registered."""

from __future__ import annotations

from enum import StrEnum

import typer
from rich.table import Table

from transfusion_cli.app import app
from transfusion_cli.console import out, print_json


class Kind(StrEnum):
    """What `tfx list` can list."""

    architectures = "architectures"
    datasets = "datasets"
    inits = "inits"
    metrics = "metrics"


@app.command("plugins")
def plugins_command(
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List plugins: distribution, version, what each registered, and broken ones with errors."""
    from transfusion_cli.registry import get_registry

    plugins = [p.as_dict() for p in get_registry().plugins]
    if json_output:
        print_json(plugins)
        return
    table = Table("plugin", "distribution", "version", "registered", "status")
    for p in plugins:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["registered"].items() if v)
        status = f"[red]broken: {p['error']}[/red]" if p["error"] else "ok"
        if p["warnings"] and not p["error"]:
            status = f"[yellow]{'; '.join(w.splitlines()[0] for w in p['warnings'])}[/yellow]"
        table.add_row(p["name"], p["distribution"], p["version"], registered or "-", status)
    out.print(table)


def architecture_rows() -> list[dict]:
    """One row per concrete architecture: name, plugin, params (5 classes, 3 channels), blocks."""
    import torch

    from transfusion_cli.models.blocks import block_names
    from transfusion_cli.registry import get_registry

    registry = get_registry()
    rows = []
    for spec in registry.specs("architectures"):
        row = {"name": spec.name, "plugin": registry.owner("architectures", spec.name),
               "family": spec.family, "description": spec.description,
               "default_image_size": spec.default_image_size, "pretrained": spec.pretrained}
        if spec.resolve is None:
            with torch.device("meta"):  # parameter counts without allocating weights
                model = spec.build(num_classes=5, in_chans=3)
            row["params"] = sum(p.numel() for p in model.parameters())
            row["blocks"] = block_names(model)
        else:
            row["params"], row["blocks"] = None, []
        rows.append(row)
    return rows


def spec_rows(kind: str) -> list[dict]:
    """Name, plugin and description of every spec of ``kind`` (extras per kind)."""
    from transfusion_cli.registry import get_registry

    if kind == "architectures":
        return architecture_rows()
    registry = get_registry()
    rows = []
    for spec in registry.specs(kind):
        row = {"name": spec.name, "plugin": registry.owner(kind, spec.name),
               "description": spec.description}
        if kind == "datasets":
            row.update(default_image_size=spec.default_image_size,
                       needs_data_dir=spec.needs_data_dir, options=spec.options)
        if kind == "inits":
            row["takes_argument"] = spec.takes_argument
        rows.append(row)
    return rows


@app.command("list")
def list_command(
    kind: Kind = typer.Argument(..., help="What to list."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List registered architectures, datasets, inits or similarity metrics."""
    rows = spec_rows(kind.value)
    if json_output:
        print_json(rows)
        return
    if kind is Kind.architectures:
        table = Table("name", "plugin", "params", "blocks", "description")
        for r in rows:
            params = f"{r['params']:,}" if r["params"] is not None else "-"
            table.add_row(r["name"], r["plugin"], params, " ".join(r["blocks"]) or "-",
                          r["description"])
    else:
        table = Table("name", "plugin", "description")
        for r in rows:
            table.add_row(r["name"], r["plugin"], r["description"])
    out.print(table)
