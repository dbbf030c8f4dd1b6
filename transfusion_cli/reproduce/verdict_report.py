"""The verdicts as people read them: the markdown section of report.md, a rich table for the
terminal (`tfx reproduce --judge`) and plain data for ``--json``. Every string that came from
an evidence file is shown as text: control characters removed, never rich markup."""

from __future__ import annotations

from typing import Any

from transfusion_cli.console import CONTROL_CHARACTERS
from transfusion_cli.reproduce.verdicts import ClaimSettings, Verdict

_CONTROL = CONTROL_CHARACTERS  # the console's one list of what a terminal would interpret

RULES_DOC = "docs/reproduce-the-paper.md, 'How a claim is judged'"


def plain(text: Any) -> str:
    """``text`` as a string without terminal control sequences or bidi overrides (newlines and
    tabs become spaces)."""
    return _CONTROL.sub("", str(text).replace("\n", " ").replace("\t", " "))


def settings_text(settings: ClaimSettings) -> str:
    """The settings every verdict depends on, in one line."""
    return (f"one-sided level {settings.alpha:g} ({1 - 2 * settings.alpha:.0%} intervals); "
            f"margins: transfer ±{settings.margin_transfer:g}, comparable "
            f"±{settings.margin_comparable:g}, similarity ±{settings.margin_similarity:g} "
            f"(AUC / similarity units); learning floor {settings.learning_floor:g}; "
            f"convergence: a win needs {settings.min_intervals:g} evaluation intervals, "
            f"\"most\" = {settings.most:.0%} of the speed-up")


def provenance_text(source: str, settings: ClaimSettings) -> str:
    """Where the judged numbers come from and, for published ones, the rule for numbers
    without spread (`tfx reproduce --judge` prints it under the table)."""
    if source != "published":
        return ("Evidence source: study (per-seed values; every part by the calibrated tests, "
                "a part without spread over seeds is inconclusive).")
    return ("Evidence source: published (a paper's summary numbers). Parts given with a spread "
            "over seeds use the calibrated tests; parts without one use the published-summary "
            f"rule: equivalence within the margin, an effect only at "
            f"{settings.published_factor:g} x the margin, \"faster\" only at a step ratio of "
            f"{settings.published_step_ratio:g}. See {RULES_DOC}, 'Published summaries'.")


def _verdict_text(verdict: Verdict) -> str:
    """The verdict, with its scope when it has one (``consistent (pipeline check, ...)``)."""
    return f"{verdict.verdict} ({plain(verdict.scope)})" if verdict.scope else verdict.verdict


def _cell(text: str) -> str:
    return plain(text).replace("|", "\\|")


def verdict_section(verdicts: list[Verdict], settings: ClaimSettings,
                    heading: str = "## Verdicts") -> list[str]:
    """Markdown lines: the verdict table, the settings, then each claim's parts and power."""
    lines = [heading, "", "| claim | statement | verdict | reason | evidence |",
             "|---|---|---|---|---|"]
    lines += [f"| {v.claim} | {_cell(v.statement)} | {_verdict_text(v)} | "
              f"{_cell(v.reason) or '-'} | {_cell(v.evidence) or '-'} |" for v in verdicts]
    lines += ["", f"How each claim is judged: {RULES_DOC}. Settings: {settings_text(settings)}.",
              ""]
    for v in verdicts:
        if not v.parts and not v.method:
            continue
        lines += [f"**{v.claim}** ({v.verdict}). Method: {plain(v.method) or '-'}.", ""]
        lines += [f"- {plain(p.text())}" for p in v.parts]
        if v.power:
            lines += ["", f"Smallest effect this design resolves: {plain(v.power)}."]
        lines.append("")
    return lines


def rich_table(verdicts: list[Verdict], title: str):
    """The verdict table for a terminal (every cell plain text, no markup parsed)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(plain(title)), title_justify="left", show_lines=True)
    for name in ("claim", "verdict", "reason", "evidence", "smallest effect resolved"):
        table.add_column(name, overflow="fold")
    colours = {"consistent": "green", "inconsistent": "red", "inconclusive": "yellow"}
    for v in verdicts:
        table.add_row(Text(v.claim), Text(_verdict_text(v), style=colours.get(v.verdict, "dim")),
                      Text(plain(v.reason) or "-"), Text(plain(v.evidence) or "-"),
                      Text(plain(v.power) or "-"))
    return table


def verdicts_data(verdicts: list[Verdict], settings: ClaimSettings) -> dict[str, Any]:
    """Plain data for ``--json`` and verdicts.json."""
    return {"settings": settings.to_dict(), "rules": RULES_DOC,
            "verdicts": [v.to_dict() for v in verdicts]}
