"""The typer application that command modules attach their commands to."""

from __future__ import annotations

import re

import typer
from rich.markup import escape

from transfusion_cli import __version__

COMMENT = re.compile(r"\s{2,}#\s")  # `tfx ...   # what it does`


def examples(*commands: str) -> str:
    """A command's help epilog: an Examples heading, then one command per line.

    Plain text, shown literally; a comment after a command (``tfx ...   # what it does``) is
    dimmed.
    """
    lines = []
    for command in commands:
        text, *comment = COMMENT.split(command, maxsplit=1)
        line = escape(text)
        lines.append(f"{line}   [dim]# {escape(comment[0])}[/dim]" if comment else line)
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(lines)


app = typer.Typer(
    name="tfx",
    help="Transfusion toolkit: what does ImageNet transfer really buy on your medical images?",
    epilog=examples(
        "tfx fit --data synthetic-retina --epochs 2 -o runs/demo   # about a minute on a CPU",
        "tfx evaluate runs/demo/checkpoints/best.pt   # metrics with 95% CIs",
        "tfx compare-inits --data synthetic-retina --inits random,gabor --seeds 3 -o runs/sweep",
        "tfx export runs/demo/checkpoints/best.pt -o model.onnx",
        "tfx predict model.onnx photo.jpg",
        "tfx --install-completion   # tab completion in your shell (bash, zsh, fish, PowerShell)"),
    no_args_is_help=True,
    # Help text is rich markup; `tfx` (cli.main) escapes every help string it did not write as
    # markup itself, so help shows "pip install 'transfusion-cli[slurm]'" literally.
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = {"enabled": False}


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
    from transfusion_cli import env

    env.check_all()  # a bad TFX_* value fails before any command starts
