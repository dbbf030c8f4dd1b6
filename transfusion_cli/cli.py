"""Entry point of the `tfx` command: the only place that maps errors to messages and exit codes."""

from __future__ import annotations

import sys
import traceback

import typer

try:  # typer >= 0.25 vendors click; its usage errors are these classes
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_errors

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
    similarity_cmd,
)
from transfusion_cli.errors import TfxError


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a TfxError becomes one stderr line and exit 1 (``--debug``: traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # accepted anywhere on the line: the root option (app.py) reads it
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        # Not standalone: click's usage errors reach us and become one line (as git does).
        code = app(args=args, prog_name="tfx", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into Exit(130)
            print("Interrupted.", file=sys.stderr)
        sys.exit(code if isinstance(code, int) else 0)  # as standalone mode always did
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        print(usage_error_line(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        print(f"Error: {exc.format_message().strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # typer's wrapper for an EOFError a command did not catch
        if DEBUG["enabled"]:
            raise
        cause = exc.__cause__ or exc.__context__
        print(f"Error: internal error (unexpected end of a file or input: {cause!r}). Rerun "
              "with --debug for the traceback and report it.", file=sys.stderr)
        sys.exit(1)
    except TfxError as exc:
        discard_partial_work()
        if DEBUG["enabled"]:
            traceback.print_exc()
        lines = str(exc).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith("Caught ") and ": " in lines[-1]:
            # Re-raised by a DataLoader worker: the original message ends the quoted traceback.
            lines = [lines[-1].split(": ", 1)[1]]
        message = lines[0] if lines else type(exc).__name__
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        discard_partial_work()
        if DEBUG["enabled"]:
            raise
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            # The file system refused a path the user gave (too long, read-only, full, ...).
            print(f"Error: {exc.strerror}: {exc.filename}; check that path.", file=sys.stderr)
        else:
            print(f"Error: internal error ({type(exc).__name__}: {exc}). Rerun with --debug "
                  "for the traceback and report it.", file=sys.stderr)
        sys.exit(1)


def discard_partial_work() -> None:
    """After an error: remove image caches this process started and left incomplete."""
    cache = sys.modules.get("transfusion_cli.data.cache")
    if cache is not None:
        cache.discard_partial_caches()


def usage_error_line(exc: click_errors.UsageError) -> str:
    """One short line for a usage error: what was wrong and where the help is."""
    message = " ".join(exc.format_message().split()) or "invalid usage"
    command = exc.ctx.command_path if exc.ctx is not None else "tfx"
    return f"Error: {message.rstrip('.')}; see `{command} --help`."


if __name__ == "__main__":
    main()
