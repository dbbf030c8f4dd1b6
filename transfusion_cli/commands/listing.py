"""`tfx plugins` and `tfx list ...`: what the plugins registered."""

from __future__ import annotations

from typing import Literal

import typer
from rich.table import Table

from transfusion_cli.app import app, examples
from transfusion_cli.console import out, print_json
from transfusion_cli.registry import KINDS


@app.command("plugins", epilog=examples(
    "tfx plugins   [dim]# which plugins loaded, what each registered, broken ones[/dim]",
    "tfx plugins --json"))
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


@app.command("list", epilog=examples(
    "tfx list architectures   [dim]# with parameter counts and block names[/dim]",
    "tfx list inits --json"))
def list_command(
    kind: Literal[KINDS] = typer.Argument(..., help="What to list."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
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
            table.add_row(r["name"], r["plugin"], params, " ".join(r["blocks"]) or "-",
                          r["description"])
    else:
        table = Table("name", "plugin", "description")
        for r in rows:
            table.add_row(r["name"], r["plugin"], r["description"])
    out.print(table)
