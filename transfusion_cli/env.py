"""Every environment variable tfx reads, declared and parsed in one place.

Each ``Variable`` says what its value means, its default and the values allowed; ``value``
parses it (unset or empty: the default) and a bad value is a ConfigError naming the variable
and the allowed values. ``check_all`` parses every variable that is set: the CLI calls it
before any command, so a typo fails at once, not after an hour of training.
docs/environment.md lists the same variables (a test keeps the two equal).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfusion_cli.errors import ConfigError
from transfusion_cli.limits import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_IMAGE_SIZE,
    IMAGE_PIXELS_CEILING,
    IMAGE_SIZE_CEILING,
    MAX_IMAGE_PIXELS_ENV,
    MAX_IMAGE_SIZE_ENV,
    MIN_IMAGE_SIZE,
)

JPEG_DECODERS = ("pillow", "nvjpeg")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
MAX_PROGRESS_INTERVAL_S = 86_400.0  # a day: a larger interval is a typo, not a wish
# A plugin's entry-point or distribution name (PEP 508 distribution names, letters first).
PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE]\+?[0-9]+)?")


class BadValue(ValueError):
    """A value outside what a variable allows (the Variable turns it into a ConfigError)."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: what it means, its default and what it allows."""

    name: str
    meaning: str
    default: str  # as people read it
    allowed: str  # as people read it, also in the error message
    parse: Callable[[str], Any]
    option: str = ""  # read by this CLI option (typer parses it) rather than by ``value``

    def read(self) -> Any:
        """The parsed value, or None when unset or empty (the caller's default applies)."""
        text = os.environ.get(self.name)
        if text is None or not text.strip():
            return None
        try:
            return self.parse(text.strip())
        except BadValue:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise ConfigError(f"{self.name}={shown!r} is not allowed: {self.name} takes "
                              f"{self.allowed}; fix it, or unset it for the default "
                              f"({self.default}).") from None


def _number(text: str) -> float:
    """A finite non-negative decimal number (ASCII digits: '²' and 'inf' are not numbers)."""
    if not _DECIMAL.fullmatch(text):
        raise BadValue(text)
    number = float(text)
    if not math.isfinite(number):
        raise BadValue(text)
    return number


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = _number(text)
        if number != int(number) or not low <= number <= high:
            raise BadValue(text)
        return int(number)
    return parse


def _seconds(text: str) -> float:
    number = _number(text)
    if number > MAX_PROGRESS_INTERVAL_S:
        raise BadValue(text)
    return number


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise BadValue(text)
        return text.lower()
    return parse


def _boolean(text: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise BadValue(text)


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _plugin_names(text: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    if any(not PLUGIN_NAME.fullmatch(n) for n in names):
        raise BadValue(text)
    return names


def _text(text: str) -> str:
    return text


VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable("TFX_DATA_DIR", "folder holding one sub-folder per dataset "
             "($TFX_DATA_DIR/retina), used when --data-dir is not given", "none",
             "a folder path", _path),
    Variable("TFX_CACHE_DIR", "where preprocessed-image caches (and downloaded weights) live",
             "the platform's user cache folder (~/.cache/tfx)", "a folder path", _path),
    Variable("TFX_WEIGHTS_DIR", "local pretrained weight files (<timm tag>.safetensors)",
             "$TFX_CACHE_DIR/weights", "a folder path", _path),
    Variable(MAX_IMAGE_SIZE_ENV, "largest --image-size fit, data, evaluate and export accept",
             str(DEFAULT_MAX_IMAGE_SIZE),
             f"a whole number of pixels from {MIN_IMAGE_SIZE} to {IMAGE_SIZE_CEILING}",
             _whole(MIN_IMAGE_SIZE, IMAGE_SIZE_CEILING)),
    Variable(MAX_IMAGE_PIXELS_ENV, "largest source image (width x height) tfx decodes; larger "
             "ones are refused as possible decompression bombs", f"{DEFAULT_MAX_IMAGE_PIXELS}",
             f"a whole number of pixels from 1 to {IMAGE_PIXELS_CEILING} (200000000 or 2e8)",
             _whole(1, IMAGE_PIXELS_CEILING)),
    Variable("TFX_JPEG_DECODER", "decoder of JPEGs when an image cache is filled (nvjpeg: on "
             "the GPU when CUDA is present, else Pillow)", "pillow",
             " or ".join(JPEG_DECODERS), _choice(JPEG_DECODERS)),
    Variable("TFX_PROGRESS_INTERVAL", "seconds between progress lines when stderr is not a "
             "terminal", "10", f"a number of seconds from 0 to {MAX_PROGRESS_INTERVAL_S:.0f}",
             _seconds),
    Variable("TFX_LOAD_PLUGINS", "third-party plugins to load, comma-separated entry-point or "
             "distribution names; empty: built-ins only", "all installed plugins",
             "plugin names (letters, digits, '.', '_', '-') separated by commas",
             _plugin_names),
    Variable("TFX_OFFLINE", "no downloads: pretrained weights come from TFX_WEIGHTS_DIR only",
             "0", "1, true, yes, on or 0, false, no, off", _boolean),
    Variable("TFX_DEBUG", "full tracebacks on errors (as --debug)", "0",
             "1, true, yes, on or 0, false, no, off", _boolean, option="--debug"),
    Variable("TFX_SERVE_TOKEN", "the bearer token `tfx serve` requires (as --token)", "none",
             "the --token value (tfx serve checks its length)", _text, option="--token"),
)}


def value(name: str) -> Any:
    """The parsed value of variable ``name``, or None when it is unset or empty."""
    return VARIABLES[name].read()


def is_set(name: str) -> bool:
    """Whether variable ``name`` is present in the environment (even empty)."""
    return name in os.environ


def check_all() -> None:
    """Parse every variable that is set (those a CLI option reads are its business): the first
    bad value is a ConfigError."""
    for variable in VARIABLES.values():
        if not variable.option:
            variable.read()
