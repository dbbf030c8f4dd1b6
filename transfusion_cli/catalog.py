"""The registry as plain rows, one per spec: what `tfx list` prints and a notebook reads."""

from __future__ import annotations

from typing import Any

from transfusion_cli.plugins import get_registry
from transfusion_cli.registry import KINDS, Registry


def spec_rows(kind: str, registry: Registry | None = None) -> list[dict[str, Any]]:
    """Name, plugin and description of every spec of ``kind``, with what is particular to the
    kind (architectures: parameter count for 5 classes and 3 channels, and blocks)."""
    from transfusion_cli.errors import ConfigError

    if kind not in KINDS:
        raise ConfigError(f"Cannot list {kind!r}; choose one of {', '.join(KINDS)}.")
    registry = registry or get_registry()
    rows = []
    for spec in registry.specs(kind):
        row: dict[str, Any] = {"name": spec.name, "plugin": registry.owner(kind, spec.name)}
        if kind == "architectures":
            row.update(family=spec.family, description=spec.description,
                       default_image_size=spec.default_image_size, pretrained=spec.pretrained)
            row.update(_architecture_details(spec))
        else:
            row["description"] = spec.description
        if kind == "datasets":
            row.update(default_image_size=spec.default_image_size,
                       needs_data_dir=spec.needs_data_dir, options=spec.options)
        if kind == "inits":
            row.update(takes_argument=spec.takes_argument, needs_weights=spec.needs_weights)
        if kind == "metrics":
            row["needs_more_points_than_neurons"] = spec.needs_more_points_than_neurons
        rows.append(row)
    return rows


def _architecture_details(spec: Any) -> dict[str, Any]:
    if spec.resolve is not None:  # a pattern (timm/*): nothing concrete to build
        return {"params": None, "blocks": []}
    from transfusion_cli.models.summary import architecture_summary

    return architecture_summary(spec)
