"""One dataset as a command reads it: registered name, folder, options and data seed.

Every command that reads a dataset names it here once, whichever way the user named it
(``--data``/``--data-dir``/``--option``, or what a checkpoint or exported model recorded):
``build`` builds it, ``input_roots`` lists every file and folder it reads (the output guard,
``outputs.refuse_overwriting_inputs``, keeps writes out of them) and ``fingerprint`` tells
datasets apart (`tfx evaluate` keeps one record per fingerprint beside a model).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfusion_cli.data.build import build_dataset, resolve_data_dir
from transfusion_cli.data.bundles import DatasetBundle, DatasetOptions
from transfusion_cli.plugins import get

FINGERPRINT_LENGTH = 12  # hex digits of sha256: a file-name key, not a security measure


@dataclass(frozen=True)
class DataSource:
    """A dataset to read: ``data_dir`` as resolved (``--data-dir``, else
    ``$TFX_DATA_DIR/<name>`` when that exists, else None)."""

    name: str
    data_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    skip_bad_images: bool = False

    @classmethod
    def named(cls, name: str, data_dir: str | os.PathLike | None = None,
              options: Mapping[str, Any] | None = None, seed: int = 0,
              skip_bad_images: bool = False) -> DataSource:
        """The source for what a user typed (``data_dir`` None: ``$TFX_DATA_DIR/<name>``)."""
        return cls(name, resolve_data_dir(name, data_dir), dict(options or {}), int(seed),
                   bool(skip_bad_images))

    def build(self, image_size: int | None = None, max_size: int | None = None
              ) -> DatasetBundle:
        """``build_dataset`` with these settings."""
        return build_dataset(self.name, data_dir=self.data_dir, image_size=image_size,
                             seed=self.seed, options=dict(self.options),
                             skip_bad_images=self.skip_bad_images, max_size=max_size)

    def input_roots(self) -> list[Path]:
        """Every file and folder a build reads: the data folder (or file) and what the
        dataset's ``input_roots`` adds (a CSV's image root, ...), without building."""
        roots = [self.data_dir] if self.data_dir is not None else []
        spec = get("datasets", self.name)
        if spec.input_roots is not None:
            roots += [Path(p) for p in spec.input_roots(DatasetOptions(
                data_dir=self.data_dir, seed=self.seed, extra=dict(self.options)))]
        return list(dict.fromkeys(roots))

    def describe(self) -> dict[str, Any]:
        """Plain data naming the dataset (an evaluation record's ``data``, a model card's)."""
        folder = os.path.abspath(self.data_dir) if self.data_dir is not None else None
        return {"name": self.name, "data_dir": folder,
                "options": {str(k): self.options[k] for k in sorted(self.options)},
                "data_seed": self.seed}

    @property
    def fingerprint(self) -> str:
        """A short key of name, absolute folder, options and seed (not of the files' bytes)."""
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]

