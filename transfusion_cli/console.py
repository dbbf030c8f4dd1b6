"""Where output goes: data on stdout, progress, warnings and errors on stderr.

Everything printed is plain text: the consoles never read rich markup in a string (a file
named ``scan[/1].png`` prints as itself), and every control character (an escape sequence
in a file name, a carriage return, a bidi override) is shown as its escape (``\\x1b``),
never passed raw to the terminal. ``terminal_safe`` is that one sanitiser; the consoles apply
it to every piece of text they render, so table cells and rich ``Text`` are covered too.
Warnings and info lines are one line each: ``single_line`` also escapes their line breaks.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.segment import Segment
from rich.text import Text

# C0 and C1 control characters (newline and tab excepted), DEL, the Unicode line and paragraph
# separators and the bidi embeddings/overrides/isolates ("Trojan source" reordering).
CONTROL_CHARACTERS = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: Any) -> str:
    """``text`` as a string whose control characters are shown as escapes (``\\x1b``,
    ``\\u202e``): safe to write to a terminal, newlines and tabs kept."""
    return CONTROL_CHARACTERS.sub(lambda m: ascii(m.group())[1:-1], str(text))


def single_line(text: Any) -> str:
    """``terminal_safe(text)`` with line breaks shown as escapes too: a file name holding
    ``\n`` cannot start a line of its own (a forged ``Error:``) in a one-line message."""
    return terminal_safe(text).replace("\r", "\\r").replace("\n", "\\n")


def plain(text: Any, style: str = "") -> Text:
    """``text`` as a rich ``Text`` shown literally (no markup, control characters escaped)."""
    return Text(terminal_safe(text), style=style)


class SafeConsole(Console):
    """A console that reads no markup unless a call asks for it, and escapes control
    characters in every piece of text it renders (strings, ``Text``, table cells, titles)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("highlight", False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not CONTROL_CHARACTERS.search(segment.text):
                yield segment
            else:
                yield Segment(terminal_safe(segment.text), segment.style)


# Off a terminal (a pipe, a file) tables are drawn at their natural width: never cut or wrapped.
UNLIMITED_WIDTH = 100_000


class DataConsole(SafeConsole):
    """The stdout console: the terminal's width on a terminal, unlimited when piped or
    redirected, so every table printer shows full values wherever its output goes."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(UNLIMITED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


out = DataConsole(soft_wrap=True)
err = SafeConsole(stderr=True, soft_wrap=True)


def json_safe(value: Any) -> Any:
    """The value with NaN/inf floats replaced by None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Print strict JSON (NaN/inf become null) to stdout."""
    sys.stdout.write(json.dumps(json_safe(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_lines(records: Iterable[Any]) -> None:
    """Print each record as one line of strict JSON (JSON Lines) to stdout."""
    for record in records:
        sys.stdout.write(json.dumps(json_safe(record), default=str) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """One warning line on stderr (``message`` is plain text, never markup)."""
    err.print(Text.assemble(("warning:", "yellow"), " ", Text(single_line(message))))


def info(message: str) -> None:
    """One progress/info line on stderr (plain text, never markup)."""
    err.print(Text(single_line(message)))


def error_line(message: Any) -> str:
    """The CLI's one-line error text for ``message`` (control characters escaped)."""
    lines = terminal_safe(message).strip().splitlines()
    return f"Error: {lines[0] if lines else message}"
