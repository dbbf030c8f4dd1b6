"""Entry point of the `tfx` command: the only place that maps errors to messages and exit codes."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.markup import escape

from transfusion_cli.app import DEBUG, app
from transfusion_cli.commands import (  # noqa: F401  (each module adds its commands to `app`)
    compare_cmd,
    data_cmd,
    evaluate_cmd,
    explain_cmd,
    export_cmd,
    figures_cmd,
    fit_cmd,
    listing,
    predict_cmd,
    reproduce_cmd,
    serve_cmd,
    similarity_cmd,
)
from transfusion_cli.console import error_line
from transfusion_cli.errors import TfxError, missing_extra
from transfusion_cli.io import storage_error, storage_failure


def _click_error(name: str) -> type[Exception]:
    """A click exception class, found from typer's public ``BadParameter`` (typer may vendor
    click in a private module): ``UsageError`` (any usage mistake) or ``ClickException``."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


UsageError = _click_error("UsageError")
ClickException = _click_error("ClickException")


def command_tree(typer_app: typer.Typer = app):
    """The click command that `tfx` runs, with every help text shown literally and every
    boolean flag shown as a flag.

    Help is rich markup (the examples epilogs, ``app.examples``, are written as markup): the
    help of commands and parameters is escaped, so that "pip install 'transfusion-cli[slurm]'"
    keeps its ``[slurm]``. Typer shows a flag as ``--json <bool>``, as if it took a value; an
    empty metavar shows it as what it is, ``--json``.
    """
    root = typer.main.get_command(typer_app)
    for command in walk_commands(root):
        command.help = escape(command.help) if command.help else command.help
        command.short_help = escape(command.short_help) if command.short_help else None
        context = typer.Context(command, **root.context_settings)
        for param in command.get_params(context):  # with the help option
            if getattr(param, "help", None):
                param.help = escape(param.help)
            if getattr(param, "is_flag", False):
                param.metavar = ""
    return root


def walk_commands(command):
    """The command and every subcommand below it, depth first."""
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from walk_commands(sub)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a TfxError becomes one stderr line and exit 1 (``--debug``: traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # accepted anywhere on the line: the root option (app.py) reads it
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        # Not standalone: click's usage errors reach us and become one line (as git does).
        code = command_tree().main(args=args, prog_name="tfx", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into Exit(130)
            print("Interrupted.", file=sys.stderr)
        sys.exit(code if isinstance(code, int) else 0)  # as standalone mode always did
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `tfx`, `tfx data`: the help
            # Rich help is printed while the error is made; plain help is its message.
            if exc.format_message().strip():
                print(exc.format_message())
        else:
            print(usage_error_line(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except ClickException as exc:
        print(error_line(exc.format_message()), file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # typer's wrapper for an EOFError a command did not catch
        if DEBUG["enabled"]:
            raise
        cause = exc.__cause__ or exc.__context__
        print(error_line(f"internal error (unexpected end of a file or input: {cause!r}). "
                         "Rerun with --debug for the traceback and report it."), file=sys.stderr)
        sys.exit(1)
    except TfxError as exc:
        discard_partial_work()
        if DEBUG["enabled"]:
            traceback.print_exc()
        lines = str(exc).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith("Caught ") and ": " in lines[-1]:
            # Re-raised by a DataLoader worker: the original message ends the quoted traceback.
            lines = [lines[-1].split(": ", 1)[1]]
        print(error_line(lines[0] if lines else type(exc).__name__), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        discard_partial_work()
        if DEBUG["enabled"]:
            raise
        if (missing := missing_extra(exc)) is not None:  # e.g. torch in the predict install
            print(error_line(missing), file=sys.stderr)
            sys.exit(missing.exit_code)
        if (failure := storage_failure(exc)) is not None:  # full disk, quota or size limit
            print(error_line(storage_error(None, failure)), file=sys.stderr)
        elif isinstance(exc, OSError) and exc.filename and exc.strerror:
            # The file system refused a path the user gave (too long, read-only, full, ...).
            print(error_line(f"{exc.strerror}: {exc.filename}; check that path."),
                  file=sys.stderr)
        else:
            print(error_line(f"internal error ({type(exc).__name__}: {exc}). Rerun with "
                             "--debug for the traceback and report it."), file=sys.stderr)
        sys.exit(1)


def discard_partial_work() -> None:
    """After an error: remove image caches this process started and left incomplete."""
    cache = sys.modules.get("transfusion_cli.data.cache")
    if cache is not None:
        cache.discard_partial_caches()


def usage_error_line(exc: UsageError) -> str:
    """One short line for a usage error: what was wrong and where the help is."""
    message = " ".join(exc.format_message().split()) or "invalid usage"
    command = exc.ctx.command_path if exc.ctx is not None else "tfx"
    return error_line(f"{message.rstrip('.')}; see `{command} --help`.")


if __name__ == "__main__":
    main()
