"""`tfx plugins` and `tfx list ...`: what the plugins registered."""

from __future__ import annotations

from typing import Literal

import typer
from rich.table import Table
from rich.text import Text

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import json_option
from transfusion_cli.console import out, print_json
from transfusion_cli.registry import KINDS


@app.command("plugins", epilog=examples(
    "tfx plugins   # which plugins loaded, what each registered, broken ones",
    "tfx plugins --json"))
def plugins_command(
    json_output: bool = json_option("Print JSON instead of a table."),
) -> None:
    """List plugins: distribution, version, what each registered, and broken ones with errors."""
    from transfusion_cli.plugins import get_registry

    plugins = [p.as_dict() for p in get_registry().plugins]
    if json_output:
        print_json(plugins)
        return
    table = Table("plugin", "distribution", "version", "registered", "status")
    for p in plugins:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["registered"].items() if v)
        # Text, not markup: errors and warnings quote plugin code and file names.
        status = Text(f"broken: {p['error']}", style="red") if p["error"] else Text("ok")
        if p["warnings"] and not p["error"]:
            status = Text("; ".join(w.splitlines()[0] for w in p["warnings"]), style="yellow")
        table.add_row(*(Text(str(cell)) for cell in (p["name"], p["distribution"], p["version"],
                                                      registered or "-")), status)
    out.print(table)


@app.command("list", epilog=examples(
    "tfx list architectures   # with parameter counts and block names",
    "tfx list inits --json"))
def list_command(
    kind: Literal[KINDS] = typer.Argument(..., help="What to list."),
    json_output: bool = json_option("Print JSON instead of a table."),
) -> None:
    """List registered architectures, datasets, inits or similarity metrics."""
    from transfusion_cli.catalog import spec_rows

    rows = spec_rows(kind)
    if json_output:
        print_json(rows)
        return
    if kind == "architectures":
        table = Table("name", "plugin", "params", "blocks", "description")
        for r in rows:
            params = f"{r['params']:,}" if r["params"] is not None else "-"
            add_text_row(table, r["name"], r["plugin"], params, " ".join(r["blocks"]) or "-",
                         r["description"])
    else:
        table = Table("name", "plugin", "description")
        for r in rows:
            add_text_row(table, r["name"], r["plugin"], r["description"])
    out.print(table)


def add_text_row(table: Table, *cells: str) -> None:
    """A row of plain text: what plugins declare is never read as markup."""
    table.add_row(*(Text(str(cell)) for cell in cells))
