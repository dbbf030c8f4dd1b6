"""Errors raised by the library; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

import difflib


class TfxError(Exception):
    """A user-facing error: the message says what was wrong and how to fix it."""

    exit_code = 1


class UnknownNameError(TfxError, KeyError):
    """A registry lookup for a name that nobody registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        singular = {"architectures": "architecture", "datasets": "dataset", "inits": "init",
                    "metrics": "metric"}.get(kind, kind)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"Unknown {singular} '{name}'.{hint} See `tfx list {kind}`.")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class ConfigError(TfxError):
    """A configuration value or file that cannot be used."""


class DataError(TfxError):
    """Missing, malformed or unusable data."""


class CheckpointError(TfxError):
    """A checkpoint that cannot be read or does not fit what was asked."""


class ExportError(TfxError):
    """An export that failed or did not pass its checks."""


class TrainingError(TfxError):
    """Training that cannot go on (e.g. a non-finite loss)."""
