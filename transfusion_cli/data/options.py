"""Reading dataset options: strings from ``--option KEY=VALUE`` or typed values from YAML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transfusion_cli.errors import ConfigError

TRUE = {"true", "yes", "1", "on"}
FALSE = {"false", "no", "0", "off"}


class OptionReader:
    """Parses one dataset's options and records each resolved value in ``resolved``."""

    def __init__(self, dataset: str, given: Mapping[str, Any]):
        self.dataset = dataset
        self.given = dict(given)
        self.resolved: dict[str, Any] = {}

    def _fail(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"Dataset '{self.dataset}' option {key}={value!r}: expected {expected}"
                           f" (e.g. --option {key}=...).")

    def raw(self, key: str) -> Any:
        """The value as given (None when absent)."""
        return self.given.get(key)

    def text(self, key: str, default: str | None) -> str | None:
        """A string."""
        value = self.given.get(key, default)
        value = None if value is None else str(value).strip()
        self.resolved[key] = value
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """true/false, yes/no, 1/0, on/off (or a YAML bool)."""
        value = self.given.get(key, default)
        if isinstance(value, bool):
            result = value
        elif str(value).strip().lower() in TRUE:
            result = True
        elif str(value).strip().lower() in FALSE:
            result = False
        else:
            raise self._fail(key, value, "true or false")
        self.resolved[key] = result
        return result

    def fraction(self, key: str, default: float) -> float:
        """A number in [0, 1)."""
        value = self.given.get(key, default)
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise self._fail(key, value, "a fraction between 0 and 1") from None
        if not 0.0 <= result < 1.0:
            raise self._fail(key, value, "a fraction between 0 and 1")
        self.resolved[key] = result
        return result

    def integer(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        """A whole number >= ``minimum`` (or the default, which may be None)."""
        value = self.given.get(key, default)
        if value is None:
            self.resolved[key] = None
            return None
        try:
            result = int(str(value).strip())
        except ValueError:
            raise self._fail(key, value, f"a whole number >= {minimum}") from None
        if result < minimum:
            raise self._fail(key, value, f"a whole number >= {minimum}")
        self.resolved[key] = result
        return result

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """One of ``choices`` (case-insensitive)."""
        value = self.given.get(key, default)
        result = str(value).strip().lower()
        if result not in choices:
            raise self._fail(key, value, "one of " + ", ".join(choices))
        self.resolved[key] = result
        return result

    def names(self, key: str, default: Sequence[str] | None) -> list[str] | None:
        """A list: comma-separated text or a YAML list."""
        value = self.given.get(key, default)
        if value is None:
            self.resolved[key] = None
            return None
        items = split_list(value)
        if not items:
            raise self._fail(key, value, "a comma-separated list")
        self.resolved[key] = items
        return items


def split_list(value: Any) -> list[str]:
    """``"a, b,c"`` or ``["a", "b"]`` -> ``["a", "b", "c"]``."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, Sequence):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    return [part.strip() for part in parts if part.strip()]


def fold_name(name: str) -> str:
    """Case-, space- and underscore-insensitive form of a label name."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def match_name(dataset: str, key: str, given: str, known: Sequence[str]) -> str:
    """The entry of ``known`` that ``given`` names (``pleural_effusion``: ``Pleural Effusion``)."""
    import difflib

    folded = {fold_name(name): name for name in known}
    if fold_name(given) in folded:
        return folded[fold_name(given)]
    close = difflib.get_close_matches(fold_name(given), list(folded), n=1, cutoff=0.6)
    hint = f" Did you mean '{folded[close[0]]}'?" if close else ""
    raise ConfigError(f"Dataset '{dataset}' option {key}: unknown label '{given}'.{hint} "
                      f"Known labels: {', '.join(known)}.")
