"""The typer application that command modules attach their commands to."""

from __future__ import annotations

import typer

from transfusion_cli import __version__

app = typer.Typer(
    name="tfx",
    help="Transfusion toolkit: what does ImageNet transfer really buy on your medical images?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = {"enabled": False}


def examples(*commands: str) -> str:
    """A command's help epilog: an Examples heading, then one command (and comment) per line.

    Rich markup; square brackets in a command must be escaped (``\\[``).
    """
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(commands)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tfx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", envvar="TFX_DEBUG",
                               help="Show full tracebacks on errors (anywhere on the line)."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the tfx version and exit."),
) -> None:
    """tfx: train, compare initialisations, analyse representations, export to ONNX."""
    DEBUG["enabled"] = debug
