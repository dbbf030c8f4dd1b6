"""Entry point of the `tfx` command: the only place that maps errors to messages and exit codes."""

from __future__ import annotations

import os
import sys
import traceback

import click

from transfusion_cli.app import DEBUG, app
from transfusion_cli.commands import (  # noqa: F401  (each module adds its commands to `app`)
    compare_cmd,
    data_cmd,
    export_cmd,
    fit_cmd,
    listing,
    predict_cmd,
    similarity_cmd,
)
from transfusion_cli.errors import TfxError


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a TfxError becomes one stderr line and exit 1 (``--debug``: traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # accepted anywhere on the line, not only before the command
        args.remove("--debug")
        DEBUG["enabled"] = True
    DEBUG["enabled"] = DEBUG["enabled"] or os.environ.get("TFX_DEBUG") == "1"
    try:
        app(args=args, prog_name="tfx", standalone_mode=False)
    except TfxError as exc:
        if DEBUG["enabled"]:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"Error: {message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception:
        if DEBUG["enabled"]:
            raise
        etype, value = sys.exc_info()[:2]
        click.echo(f"Error: internal error ({etype.__name__}: {value}). Rerun with --debug for "
                   "the traceback and report it.", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
