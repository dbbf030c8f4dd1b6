"""The representations part of `tfx reproduce`: the numbers and figures `tfx figures` makes
(``compare.figures``, one implementation), for the part's finished cells.

``evidence.representations`` is the plain-data result of ``representation_numbers``: per
architecture and init the per-block similarity to init (mean, std and n over seeds, low-data
flag), Figure 2 per architecture (transfer vs random and random vs random over pairs, with
their spread), the measure's name, and the cells left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.compare.figures import DEFAULT_MEASURE, FigureSettings
from transfusion_cli.console import warn
from transfusion_cli.errors import TfxError


def representation_evidence(directory: Path, cells: list[str], archs: list[str],
                            measure: str = DEFAULT_MEASURE,
                            samples: int = 256, split: str = "val") -> dict[str, Any] | None:
    """The representation numbers of ``cells`` (ids) of ``archs`` in the sweep ``directory``;
    None (with a warning) when they cannot be computed, e.g. no finished cells yet."""
    from transfusion_cli.compare.figures import finished_runs, representation_numbers

    try:
        found = finished_runs(directory, cells=set(cells), archs=set(archs))
        return representation_numbers(found, FigureSettings(measure=measure, samples=samples,
                                                            split=split))
    except (TfxError, np.linalg.LinAlgError) as exc:
        warn(f"representations: {exc}")
        return None


def _finite(values: list[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def evidence_part(reps: dict[str, Any]) -> dict[str, Any]:
    """The representation numbers as the evidence file's ``representations`` part
    (``reproduce.evidence_format``): per-seed values of each block's similarity to init, and
    per-pair values of Figure 2's top-two-block average, each with its low-data flag. A block
    without one finite value is left out (it cannot be judged)."""
    to_init: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for group, arms in reps.get("to_init", {}).items():
        for init, arm in arms.items():
            blocks = [{"block": b["block"], "values": _finite(b["values"]),
                       "low_data": b["low_data"]} for b in arm["blocks"]]
            to_init.setdefault(group, {})[init] = [b for b in blocks if b["values"]]
    figure2: dict[str, dict[str, Any]] = {}
    for group, entry in reps.get("fig2", {}).items():
        out: dict[str, Any] = {"blocks": list(entry["blocks"])}
        for kind, key in (("transfer vs random", "pretrained_vs_random"),
                          ("random vs random", "random_vs_random")):
            values = _finite([p["value"] for p in entry.get(kind, {}).get("pairs", [])])
            if values:
                out[key] = {"values": values, "low_data": entry[kind]["low_data"]}
        figure2[group] = out
    split = reps.get("settings", {}).get("split", "val")
    return {"metric": reps["measure"], "split": {"val": "validation"}.get(split, split),
            "note": f"{reps['measure']}: {reps['measure_description']}; transfer arm "
                    f"{reps.get('transfer')}", "to_init": to_init, "figure2": figure2}


def save_figures(reps: dict[str, Any], folder: Path) -> dict[str, Path]:
    """fig2, layers, scatter and filters (PNG, each with its JSON) in ``folder``."""
    from transfusion_cli.compare.figure_plots import write_figures

    return {name: image for name, (image, _) in write_figures(reps, folder).items()}
