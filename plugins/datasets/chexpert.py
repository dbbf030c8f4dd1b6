"""CheXpert (v1.0 and v1.0-small): multi-label chest X-ray findings with uncertainty policies.

``train.csv`` is split by patient into train and val; ``valid.csv`` (radiologist labels, no
uncertain ones) is the test split. Labels are 1.0 positive, 0.0 negative, -1.0 uncertain and
blank (not mentioned); the uncertainty policy (per label) and the blank policy decide what
the model is trained and scored on. NaN targets are masked out of loss and metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.api import (
    ConfigError,
    DataError,
    DatasetBundle,
    DatasetInfo,
    DatasetOptions,
    DatasetSpec,
    OptionReader,
    Table,
    check_fractions,
    file_bundle,
    group_split,
    hookimpl,
    keep_existing,
    match_name,
    normalisation,
    read_table,
    require_data_dir,
    split_list,
    split_manifest,
    stratum_keys,
)
from transfusion_cli.api import info as say

NAME = "chexpert"
OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)
PAPER_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
POLICIES = ("u-ignore", "u-ones", "u-zeros")
BLANK_POLICIES = ("negative", "ignore")
VARIANTS = {"small": "CheXpert-v1.0-small", "full": "CheXpert-v1.0"}
DEFAULT_IMAGE_SIZE = 224
OPTIONS = {
    "labels": "observations to predict, comma-separated, or 'all' (default: the paper's five: "
              + ", ".join(PAPER_LABELS) + ")",
    "uncertainty": "uncertain (-1) label policy: u-ignore (default, masked), u-ones or u-zeros; "
                   "per label as Edema=u-ones,Atelectasis=u-zeros (a bare policy sets the rest)",
    "blank": "blank (not mentioned) labels: negative (default) or ignore (masked)",
    "frontal_only": "keep only frontal views (default false)",
    "val_fraction": "share of train.csv patients held out for validation (default 0.1)",
    "variant": "auto, small (CheXpert-v1.0-small) or full (CheXpert-v1.0)",
}
EXPECTED = ("CheXpert-v1.0-small/train.csv and valid.csv (or CheXpert-v1.0/...) with the "
            "images their Path column names, relative to the folder holding CheXpert-v1.0-small/")
SOURCE = "https://stanfordmlgroup.github.io/competitions/chexpert/"
PATIENT = re.compile(r"(patient\d+)")


def parse_uncertainty(value: Any, labels: list[str]) -> dict[str, str]:
    """``u-ones`` / ``Edema=u-ones,u-zeros`` / a YAML mapping -> a policy for every label."""
    default = "u-ignore"
    specific: dict[str, str] = {}
    items: list[tuple[str | None, str]] = []
    if isinstance(value, Mapping):
        items = [(None if str(k) == "default" else str(k), str(v)) for k, v in value.items()]
    else:
        for item in split_list(value):
            label, sep, policy = item.rpartition("=")
            items.append((label.strip() if sep else None, policy.strip()))
    for label, policy in items:
        policy = policy.lower()
        if policy not in POLICIES:
            raise ConfigError(f"Dataset '{NAME}' option uncertainty: unknown policy '{policy}'; "
                              f"use one of {', '.join(POLICIES)} (per label: Edema=u-ones).")
        if label is None:
            default = policy
            continue
        name = match_name(NAME, "uncertainty", label, OBSERVATIONS)
        if name not in labels:
            raise ConfigError(f"Dataset '{NAME}' option uncertainty sets a policy for '{name}', "
                              f"which is not among the chosen labels ({', '.join(labels)}); "
                              "add it with --option labels=... or drop the policy.")
        specific[name] = policy
    return {label: specific.get(label, default) for label in labels}


def locate(data_dir: Path, variant: str) -> tuple[Path, str]:
    """(folder holding train.csv and valid.csv, variant name)."""
    found = {name: data_dir / folder for name, folder in VARIANTS.items()
             if (data_dir / folder / "train.csv").is_file()}
    if not found and (data_dir / "train.csv").is_file() and (data_dir / "valid.csv").is_file():
        found = {"full" if data_dir.name == VARIANTS["full"] else "small": data_dir}
    if variant != "auto":
        if variant not in found:
            raise DataError(f"{data_dir} has no {VARIANTS[variant]}/train.csv; dataset "
                            f"'{NAME}' expects {EXPECTED}. Get it from {SOURCE}.")
        return found[variant], variant
    if not found:
        raise DataError(f"{data_dir} has no CheXpert-v1.0-small/train.csv or "
                        f"CheXpert-v1.0/train.csv; dataset '{NAME}' expects {EXPECTED}. "
                        f"Get it from {SOURCE}.")
    if len(found) > 1:
        say(f"{NAME}: both CheXpert-v1.0 and CheXpert-v1.0-small are in {data_dir}; using the "
            "small one (--option variant=full for the other)")
        return found["small"], "small"
    name = next(iter(found))
    return found[name], name


def image_paths(table: Table, csv_dir: Path) -> list[Path]:
    """Paths from the Path column: relative to the folder holding CheXpert-v1.0[-small]/.

    A renamed top folder still works: the first component is then taken as that folder.
    """
    values = table.column("Path", fix="is this a CheXpert train.csv / valid.csv?")
    root = csv_dir.parent
    if values and not (root / values[0]).is_file():
        _, _, rest = values[0].partition("/")
        if rest and (csv_dir / rest).is_file():
            return [csv_dir / value.partition("/")[2] for value in values]
    return [root / value for value in values]


def label_matrix(table: Table, labels: list[str], uncertainty: dict[str, str], blank: str
                 ) -> np.ndarray:
    """(N, L) float32: 1 / 0 / NaN (masked) after the uncertainty and blank policies."""
    matrix = np.zeros((len(table), len(labels)), dtype=np.float32)
    for column, label in enumerate(labels):
        values = table.column(label, what="observation column",
                              fix="is this a CheXpert train.csv / valid.csv?")
        for row, value in enumerate(values):
            if value == "":
                matrix[row, column] = np.nan if blank == "ignore" else 0.0
                continue
            try:
                number = float(value)
            except ValueError:
                number = 2.0
            if number == 1.0 or number == 0.0:
                matrix[row, column] = number
            elif number == -1.0:
                matrix[row, column] = {"u-ones": 1.0, "u-zeros": 0.0,
                                       "u-ignore": np.nan}[uncertainty[label]]
            else:
                raise DataError(f"{table.where(row, label)}: value {value!r} is not 1.0, 0.0, "
                                "-1.0 or blank; is the file intact?")
    return matrix


def read_split(csv_path: Path, csv_dir: Path, labels: list[str], uncertainty: dict[str, str],
               blank: str, frontal_only: bool, skip_bad_images: bool
               ) -> tuple[list[Path], np.ndarray, list[str], list[str]]:
    """(paths, label matrix, ids, patients) of one CheXpert CSV."""
    table = read_table(csv_path)
    if frontal_only:
        views = table.column("Frontal/Lateral", fix="it is needed for frontal_only=true")
        keep_rows = [i for i, view in enumerate(views) if view.lower() == "frontal"]
        table = Table(table.path, table.columns, [table.rows[i] for i in keep_rows],
                      [table.lines[i] for i in keep_rows])
    paths = image_paths(table, csv_dir)
    matrix = label_matrix(table, labels, uncertainty, blank)
    ids = table.column("Path")
    patients = []
    for row, value in enumerate(ids):
        match = PATIENT.search(value)
        if not match:
            raise DataError(f"{table.where(row, 'Path')}: {value!r} has no patientNNNNN "
                            "component; is this a CheXpert CSV?")
        patients.append(match.group(1))
    keep = keep_existing(paths, table.where, str(csv_path), skip_bad_images,
                         f"put the images under {csv_dir.parent}")
    return ([paths[i] for i in keep], matrix[keep], [ids[i] for i in keep],
            [patients[i] for i in keep])


def build(options: DatasetOptions) -> DatasetBundle:
    """Read train.csv / valid.csv, apply the label policies, split train by patient."""
    reader = OptionReader(NAME, options.extra)
    chosen = reader.names("labels", list(PAPER_LABELS)) or list(PAPER_LABELS)
    labels = list(OBSERVATIONS) if [c.lower() for c in chosen] == ["all"] else [
        match_name(NAME, "labels", c, OBSERVATIONS) for c in chosen]
    labels = list(dict.fromkeys(labels))
    reader.resolved["labels"] = labels
    uncertainty = parse_uncertainty(reader.raw("uncertainty") or "u-ignore", labels)
    reader.resolved["uncertainty"] = uncertainty
    blank = reader.choice("blank", "negative", BLANK_POLICIES)
    frontal_only = reader.boolean("frontal_only", False)
    val_fraction = reader.fraction("val_fraction", 0.1)
    variant = reader.choice("variant", "auto", ("auto", *VARIANTS))
    check_fractions(NAME, val_fraction, 0.0)
    data_dir = require_data_dir(NAME, options.data_dir, EXPECTED, SOURCE)
    csv_dir, variant = locate(data_dir, variant)
    reader.resolved["variant"] = variant

    args = (csv_dir, labels, uncertainty, blank, frontal_only, options.skip_bad_images)
    paths, matrix, ids, patients = read_split(csv_dir / "train.csv", *args)
    indices = group_split(patients, stratum_keys(matrix, "multilabel"), {"val": val_fraction},
                          options.seed)
    splits = {name: ([paths[i] for i in idx], matrix[idx], [ids[i] for i in idx])
              for name, idx in indices.items()}
    test_paths, test_matrix, test_ids, _ = read_split(csv_dir / "valid.csv", *args)
    splits["test"] = (test_paths, test_matrix, test_ids)
    manifest = split_manifest("patient", patients, indices, options.seed, dataset=NAME,
                              label_file=str(csv_dir / "train.csv"), val_fraction=val_fraction,
                              test_split=str(csv_dir / "valid.csv"),
                              stratified_by="any positive label")
    manifest["counts"]["test"] = {"images": len(test_paths)}
    mean, std = normalisation(1)
    info = DatasetInfo(name=NAME, task="multilabel", class_names=tuple(labels), channels=1,
                       image_size=options.image_size or DEFAULT_IMAGE_SIZE, mean=mean, std=std,
                       selection_metric="mean_auc", options=reader.resolved)
    return file_bundle(info, splits, options.skip_bad_images,
                       "use more of train.csv (e.g. frontal_only=false), change "
                       "--option val_fraction=F, or choose other --option labels=...", manifest)


@hookimpl
def tfx_register_datasets(register):
    register(DatasetSpec(
        NAME, build, "CheXpert chest X-rays, multi-label findings (paper: 5), uncertainty "
        "policies", default_image_size=DEFAULT_IMAGE_SIZE, needs_data_dir=True, options=OPTIONS,
        default_augment="light"))
