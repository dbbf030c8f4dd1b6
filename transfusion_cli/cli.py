"""Entry point of the `tfx` command: the only place that maps errors to messages and exit codes."""

from __future__ import annotations

import os
import sys
import traceback

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
        # standalone mode: typer reports usage errors (exit 2) and handles --help itself.
        app(args=args, prog_name="tfx")
    except TfxError as exc:
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
        if DEBUG["enabled"]:
            raise
        print(f"Error: internal error ({type(exc).__name__}: {exc}). Rerun with --debug for "
              "the traceback and report it.", file=sys.stderr)
        sys.exit(1)

if __name__ == "__main__":
    main()
