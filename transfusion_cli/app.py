"""The typer application that command modules attach their commands to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tfx",
    help="Transfusion toolkit: what does ImageNet transfer really buy on your medical images?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = {"enabled": False}


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """tfx: train, compare initialisations, analyse representations, export to ONNX."""
    if debug:
        DEBUG["enabled"] = True
