"""NIH ChestX-ray14: 14 findings, multi-label, from Data_Entry_2017*.csv and images*/ folders.

The official ``test_list.txt`` is the test split when present (``train_val_list.txt`` then
limits train + val); otherwise the test split is drawn by patient. Train / val are always
split by patient (``Patient ID``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transfusion_cli.api import (
    DataError,
    DatasetBundle,
    DatasetInfo,
    DatasetOptions,
    DatasetSpec,
    OptionReader,
    Table,
    check_fractions,
    file_bundle,
    fold_name,
    group_split,
    hookimpl,
    keep_existing,
    match_name,
    normalisation,
    read_lines,
    read_table,
    require_data_dir,
    split_manifest,
    stratum_keys,
)
from transfusion_cli.api import info as say

NAME = "nih-cxr14"
FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
DEFAULT_IMAGE_SIZE = 224
OPTIONS = {
    "labels": "findings to predict, comma-separated (default: all 14)",
    "val_fraction": "share of train/val patients held out for validation (default 0.1)",
    "test_fraction": "share of patients for testing when test_list.txt is absent (default 0.2; "
                     "0: no test split)",
}
EXPECTED = ("Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv) and the PNG images in "
            "images*/ folders (images_001/images/*.png as unpacked from the archives), "
            "optionally train_val_list.txt and test_list.txt")
SOURCE = "https://nihcc.app.box.com/v/ChestXray-NIHCC (or Kaggle 'nih-chest-xrays/data')"


def find_table(data_dir: Path) -> Path:
    """The Data_Entry CSV (the newest when several are present)."""
    candidates = sorted(data_dir.glob("Data_Entry_2017*.csv")) or sorted(
        data_dir.glob("Data_Entry*.csv"))
    if not candidates:
        raise DataError(f"{data_dir} has no Data_Entry_2017*.csv; dataset '{NAME}' expects "
                        f"{EXPECTED}. Get it from {SOURCE}.")
    if len(candidates) > 1:
        say(f"{NAME}: using {candidates[-1].name} (also present: "
            f"{', '.join(c.name for c in candidates[:-1])})")
    return candidates[-1]


def index_images(data_dir: Path) -> dict[str, Path]:
    """Image file name -> path, over images*/ and images*/images/ (however they were unpacked)."""
    found: dict[str, Path] = {}
    folders = [p for p in sorted(data_dir.glob("images*")) if p.is_dir()]
    folders += [p / "images" for p in folders if (p / "images").is_dir()]
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(".png") and entry.is_file():
                    found.setdefault(entry.name, Path(entry.path))
    return found


def parse_findings(table: Table, labels: list[str]) -> np.ndarray:
    """(N, L) float32 multi-hot from ``Finding Labels`` (``A|B``, ``No Finding``)."""
    column = table.column("Finding Labels", fix="is this NIH's Data_Entry_2017.csv?")
    known = {fold_name(f): f for f in FINDINGS}
    position = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(table), len(labels)), dtype=np.float32)
    for row, value in enumerate(column):
        for item in filter(None, (part.strip() for part in value.split("|"))):
            if item == NO_FINDING:
                continue
            finding = known.get(fold_name(item))
            if finding is None:
                raise DataError(f"{table.where(row, 'Finding Labels')}: unknown finding "
                                f"{item!r}; expected {NO_FINDING!r} or some of "
                                f"{', '.join(FINDINGS)} separated by '|'.")
            if finding in position:
                matrix[row, position[finding]] = 1.0
    return matrix


def build(options: DatasetOptions) -> DatasetBundle:
    """Read the Data_Entry table, find the images, split (official lists or by patient)."""
    reader = OptionReader(NAME, options.extra)
    chosen = reader.names("labels", list(FINDINGS)) or list(FINDINGS)
    labels = list(FINDINGS) if [c.lower() for c in chosen] == ["all"] else list(dict.fromkeys(
        match_name(NAME, "labels", c, FINDINGS) for c in chosen))
    reader.resolved["labels"] = labels
    val_fraction = reader.fraction("val_fraction", 0.1)
    test_fraction = reader.fraction("test_fraction", 0.2)
    data_dir = require_data_dir(NAME, options.data_dir, EXPECTED, SOURCE)
    table = read_table(find_table(data_dir))
    names = table.column("Image Index", fix="is this NIH's Data_Entry_2017.csv?")
    patients = table.column("Patient ID", fix="is this NIH's Data_Entry_2017.csv?")
    matrix = parse_findings(table, labels)
    images = index_images(data_dir)
    paths = [images.get(name, data_dir / "images" / name) for name in names]
    keep = keep_existing(paths, table.where, str(table.path), options.skip_bad_images,
                         f"unpack every images_*.tar.gz archive into {data_dir}")

    official = (data_dir / "test_list.txt").is_file()
    if official:
        test_names = set(read_lines(data_dir / "test_list.txt"))
        train_val_file = data_dir / "train_val_list.txt"
        train_val_names = set(read_lines(train_val_file)) if train_val_file.is_file() else None
        test_rows = [i for i in keep if names[i] in test_names]
        pool = [i for i in keep if names[i] not in test_names
                and (train_val_names is None or names[i] in train_val_names)]
        test_fraction = 0.0
        reader.resolved["test_fraction"] = None
        reader.resolved["test_split"] = "test_list.txt"
    else:
        test_rows, pool = [], keep
    check_fractions(NAME, val_fraction, test_fraction)
    fractions = {"val": val_fraction}
    if test_fraction > 0:
        fractions["test"] = test_fraction
    pool_patients = [patients[i] for i in pool]
    local = group_split(pool_patients, stratum_keys(matrix[pool], "multilabel"), fractions,
                        options.seed)
    indices = {name: np.asarray(pool, dtype=np.int64)[idx] for name, idx in local.items()}
    if official:
        indices["test"] = np.asarray(test_rows, dtype=np.int64)
    splits = {name: ([paths[i] for i in idx], matrix[idx], [names[i] for i in idx])
              for name, idx in indices.items()}
    manifest = split_manifest(
        "patient", pool_patients, local, options.seed, dataset=NAME,
        label_file=str(table.path), val_fraction=val_fraction,
        test_fraction=None if official else test_fraction,
        test_split=str(data_dir / "test_list.txt") if official else "patient split",
        stratified_by="any positive finding")
    if official:
        manifest["counts"]["test"] = {"images": len(test_rows)}
    mean, std = normalisation(1)
    info = DatasetInfo(name=NAME, task="multilabel", class_names=tuple(labels), channels=1,
                       image_size=options.image_size or DEFAULT_IMAGE_SIZE, mean=mean, std=std,
                       selection_metric="mean_auc", options=reader.resolved)
    return file_bundle(info, splits, options.skip_bad_images,
                       "use the whole dataset, change --option val_fraction=F / "
                       "test_fraction=F, or choose other --option labels=...", manifest)


@hookimpl
def tfx_register_datasets(register):
    register(DatasetSpec(
        NAME, build, "NIH ChestX-ray14 chest X-rays, 14 findings, multi-label",
        default_image_size=DEFAULT_IMAGE_SIZE, needs_data_dir=True, options=OPTIONS,
        default_augment="light"))
