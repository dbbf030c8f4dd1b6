"""CSV tables of datasets: line numbers for error messages, required columns, header quirks."""

from __future__ import annotations

import csv
import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from transfusion_cli.errors import DataError


@dataclass
class Table:
    """A CSV file read whole: column names, rows of strings, and each row's line number."""

    path: Path
    columns: list[str]
    rows: list[list[str]]
    lines: list[int]  # file line of each row (the header is line 1)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, row: int, column: str | None = None) -> str:
        """'path line N[, column 'C']' for messages."""
        text = f"{self.path} line {self.lines[row]}"
        return f"{text}, column '{column}'" if column else text

    def find(self, name: str, what: str = "column", fix: str = "") -> int:
        """Index of column ``name``; a missing one is a DataError with a suggestion."""
        if name in self.columns:
            return self.columns.index(name)
        folded = {column.strip().lower(): i for i, column in enumerate(self.columns)}
        close = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.6)
        hint = f" Did you mean '{self.columns[folded[close[0]]]}'?" if close else ""
        shown = ", ".join(self.columns[:20]) + (", ..." if len(self.columns) > 20 else "")
        raise DataError(f"{self.path} has no {what} '{name}' (it has: {shown}).{hint}"
                        + (f" {fix}" if fix else ""))

    def column(self, name: str, what: str = "column", fix: str = "") -> list[str]:
        """Every value of one column (stripped)."""
        index = self.find(name, what, fix)
        return [row[index].strip() for row in self.rows]


def _merge_bracket_header(fields: list[str]) -> list[str]:
    """Rejoin header names that carry an unquoted comma inside brackets.

    NIH's Data_Entry_2017 header has ``OriginalImage[Width,Height]`` unquoted: csv splits it
    in two, exactly as it splits the two values on every row, so each half becomes its own
    column: ``OriginalImage[Width]`` and ``OriginalImage[Height]``.
    """
    merged: list[str] = []
    index = 0
    while index < len(fields):
        name = fields[index]
        if "[" in name and "]" not in name:
            end = index
            while end + 1 < len(fields) and "]" not in fields[end]:
                end += 1
            if "]" in fields[end]:
                prefix, first = name.split("[", 1)
                parts = [first, *fields[index + 1: end + 1]]
                parts[-1] = parts[-1].split("]", 1)[0]
                merged.extend(f"{prefix}[{part.strip()}]" for part in parts)
                index = end + 1
                continue
        merged.append(name)
        index += 1
    return merged


def read_table(path: str | os.PathLike) -> Table:
    """Read a CSV with a header row; every row must have as many fields as the header."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty; expected a CSV file with a header row.")
            columns = _merge_bracket_header([name.strip() for name in header])
            while columns and not columns[-1]:  # a trailing comma on the header line
                columns.pop()
            rows, lines = [], []
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                if len(row) > len(columns) and not any(f.strip() for f in row[len(columns):]):
                    row = row[: len(columns)]
                if len(row) != len(columns):
                    raise DataError(
                        f"{path} line {reader.line_num} has {len(row)} fields but the header has "
                        f"{len(columns)}; is the file intact? (quote fields that contain commas)")
                rows.append(row)
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text CSV file ({exc.reason}).") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV file ({exc}).") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; expected a CSV file.") from None
    if not rows:
        raise DataError(f"{path} has a header row but no data rows; add one row per image "
                        "(or point at the complete table).")
    return Table(path, columns, rows, lines)


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty stripped lines of a text file (e.g. NIH's train_val_list.txt)."""
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path} does not exist.") from None


def reject_duplicates(table: Table, column: str, keys: list | None = None) -> None:
    """A DataError naming both rows when an entry (``keys``, by default the column's values) is
    listed twice: its labels would disagree or the same image would count twice."""
    shown = table.column(column)
    seen: dict = {}
    for row, key in enumerate(keys if keys is not None else shown):
        if key in seen:
            raise DataError(f"{table.where(row, column)}: image {shown[row]!r} is listed twice "
                            f"(first on line {table.lines[seen[key]]}); remove one.")
        seen[key] = row
