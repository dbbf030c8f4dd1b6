"""The one way tests run `tfx`: in this process (fast) or as a real subprocess.

Tests get it as the ``tfx`` fixture (tests/conftest.py); helper modules and session fixtures,
which cannot request a function fixture, use ``TFX`` from here, the same object.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# PYTHONPATH entries a `tfx` subprocess may need beyond the installed package: this folder,
# so that test plugins declared by entry point (e.g. ``fit-fakes = fit_helpers``) import.
TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CliResult:
    """What one `tfx` command did: its exit code and what it wrote."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr."""
        return self.stdout + self.stderr

    def error_line(self) -> str:
        """The one `Error: ...` line on stderr; fails if there is none, several, a traceback
        or an internal error."""
        return error_line(self.stderr)

    def check(self) -> CliResult:
        """This result, after asserting that the command succeeded."""
        assert self.exit_code == 0, (
            f"tfx {' '.join(self.args)} exited with {self.exit_code}:\n{self.stderr[-4000:]}")
        return self


def error_line(stderr: str) -> str:
    """The one `Error: ...` line of ``stderr``; fails if there is none, several, a traceback
    or an internal error."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    assert "internal error" not in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def _environment(env: Mapping[str, str | None] | None):
    """``env`` set in os.environ meanwhile (a None value unsets); the old values afterwards."""
    saved = {key: os.environ.get(key) for key in env or {}}
    try:
        for key, value in (env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TfxRunner:
    """Runs `tfx ARGS`; arguments may be strings, paths or numbers."""

    def __call__(self, *args: object, env: Mapping[str, str | None] | None = None,
                 check: bool = False) -> CliResult:
        """`tfx ARGS` in this process, through the real entry point (`cli.main`); ``env`` is
        set meanwhile; ``check``: assert it succeeded."""
        from transfusion_cli.cli import main

        argv = tuple(str(a) for a in args)
        out, err = io.StringIO(), io.StringIO()
        with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(argv))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        result = CliResult(argv, code, out.getvalue(), err.getvalue())
        return result.check() if check else result

    def command(self, *args: object) -> list[str]:
        """The argv of `tfx ARGS` as a subprocess (``python -m transfusion_cli``)."""
        return [sys.executable, "-m", "transfusion_cli", *(str(a) for a in args)]

    def environment(self, env: Mapping[str, str | None] | None = None,
                    pythonpath: Iterable[Path | str] = ()) -> dict[str, str]:
        """os.environ with ``env`` applied (None unsets) and ``pythonpath`` put first."""
        full = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        full["PYTHONPATH"] = os.pathsep.join(
            [*(str(p) for p in pythonpath), *filter(None, [full.get("PYTHONPATH")])])
        return full

    def subprocess(self, *args: object, env: Mapping[str, str | None] | None = None,
                   pythonpath: Iterable[Path | str] = (), cwd: Path | None = None,
                   timeout: float = 300, check: bool = False, **run_options) -> CliResult:
        """The real `tfx ARGS` in a fresh interpreter (for what needs a process of its own:
        plugin discovery, signals, resource limits, the entry point's exit codes);
        ``run_options`` go to ``subprocess.run`` (e.g. ``preexec_fn``)."""
        argv = tuple(str(a) for a in args)
        done = subprocess.run(self.command(*argv), capture_output=True, text=True, cwd=cwd,
                              env=self.environment(env, pythonpath), timeout=timeout,
                              **run_options)
        result = CliResult(argv, done.returncode, done.stdout, done.stderr)
        return result.check() if check else result


TFX = TfxRunner()
