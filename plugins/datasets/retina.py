"""Retina: diabetic-retinopathy grades 0-4 on EyePACS (Kaggle) or APTOS 2019 fundus photos.

Both layouts are read as published. Images are cropped to the circular field of view (the
``fundus_crop`` preprocessing step, plugins/preprocess/fundus.py) and resized (paper: 587
px); the split is by patient (EyePACS ``<patient>_<left|right>``: both eyes in one split),
stratified by the patient's highest grade and seeded by the data seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    group_split,
    hookimpl,
    keep_existing,
    normalisation,
    read_table,
    reject_duplicates,
    require_data_dir,
    split_manifest,
)

NAME = "retina"
GRADES = ("none", "mild", "moderate", "severe", "proliferative")
REFERABLE_GRADE = 2
DEFAULT_IMAGE_SIZE = 587
OPTIONS = {
    "layout": "auto (from the files present), eyepacs or aptos",
    "val_fraction": "share of patients held out for validation (default 0.1)",
    "test_fraction": "share of patients held out for testing (default 0.2; 0: no test split; "
                     "EyePACS with retinopathy_solution.csv and test/ uses those instead)",
    "fundus_crop": "crop to the circular field of view before resizing (default true)",
}
EXPECTED = ("EyePACS: trainLabels.csv (columns image,level) and train/<image>.jpeg, or "
            "APTOS 2019: train.csv (columns id_code,diagnosis) and train_images/<id_code>.png")
SOURCE = ("https://www.kaggle.com/c/diabetic-retinopathy-detection/data (EyePACS) or "
          "https://www.kaggle.com/c/aptos2019-blindness-detection/data (APTOS 2019)")
EYE = re.compile(r"(.+)_(left|right)", re.IGNORECASE)
OTHER_SUFFIXES = (".jpeg", ".jpg", ".png", ".tif", ".tiff")
FUNDUS_STEP = "fundus_crop"  # the preprocessing step registered by the `fundus` plugin


@dataclass(frozen=True)
class Layout:
    """Where one published layout keeps its labels and images."""

    name: str
    label_file: str
    id_column: str
    grade_column: str
    image_folder: str
    suffix: str


LAYOUTS = {
    "eyepacs": Layout("eyepacs", "trainLabels.csv", "image", "level", "train", ".jpeg"),
    "aptos": Layout("aptos", "train.csv", "id_code", "diagnosis", "train_images", ".png"),
}
# EyePACS's labelled test set, published after the competition.
EYEPACS_TEST = Layout("eyepacs", "retinopathy_solution.csv", "image", "level", "test", ".jpeg")


def detect_layout(data_dir: Path, wanted: str) -> Layout:
    """The layout asked for, or the one whose label file is present."""
    if wanted != "auto":
        return LAYOUTS[wanted]
    present = [layout for layout in LAYOUTS.values() if (data_dir / layout.label_file).is_file()]
    if not present:
        raise DataError(f"{data_dir} has neither trainLabels.csv (EyePACS) nor train.csv "
                        f"(APTOS 2019); dataset '{NAME}' expects {EXPECTED}. Get it from {SOURCE}.")
    if len(present) > 1:
        raise DataError(f"{data_dir} has both trainLabels.csv (EyePACS) and train.csv (APTOS); "
                        "choose one with --option layout=eyepacs or --option layout=aptos.")
    return present[0]


def patient_of(image_id: str, layout: Layout) -> str:
    """EyePACS ``10_left`` -> ``10``; APTOS ids (one image per patient) stay as they are."""
    match = EYE.fullmatch(image_id) if layout.name == "eyepacs" else None
    return match.group(1) if match else image_id


def parse_grades(table: Table, column: str, fix: str) -> np.ndarray:
    """Grades 0-4 from one column; anything else names the line."""
    grades = []
    for row, value in enumerate(table.column(column, fix=fix)):
        try:
            grade = int(float(value))
        except ValueError:
            grade = -1
        if grade not in range(len(GRADES)) or str(value).strip() == "":
            raise DataError(f"{table.where(row, column)}: grade {value!r} is not one of 0-4; "
                            "correct or remove that row.")
        grades.append(grade)
    return np.array(grades, dtype=np.int64)


def image_suffix(folder: Path, ids: list[str], layout: Layout) -> str:
    """The published suffix, or another common one if that is how the images are stored."""
    for image_id in ids[:20]:
        for suffix in (layout.suffix, *OTHER_SUFFIXES):
            if (folder / f"{image_id}{suffix}").is_file():
                return suffix
    return layout.suffix


def read_labelled(data_dir: Path, layout: Layout, skip_bad_images: bool
                  ) -> tuple[list[Path], np.ndarray, list[str]]:
    """(image paths, grades, image ids) of one label file, missing images handled."""
    table = read_table(data_dir / layout.label_file)
    fix = f"this is the {layout.name} layout, whose {layout.label_file} has columns " \
          f"{layout.id_column},{layout.grade_column}"
    ids = table.column(layout.id_column, fix=fix)
    grades = parse_grades(table, layout.grade_column, fix)
    reject_duplicates(table, layout.id_column)
    folder = data_dir / layout.image_folder
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; the {layout.name} layout keeps its images in "
                        f"{layout.image_folder}/<{layout.id_column}>{layout.suffix}. "
                        f"Get it from {SOURCE}.")
    suffix = image_suffix(folder, ids, layout)
    paths = [folder / f"{image_id}{suffix}" for image_id in ids]
    keep = keep_existing(paths, table.where, str(table.path), skip_bad_images,
                         f"put every image in {folder}")
    return [paths[i] for i in keep], grades[keep], [ids[i] for i in keep]


def build(options: DatasetOptions) -> DatasetBundle:
    """Read EyePACS or APTOS, split by patient, and return cached splits."""
    reader = OptionReader(NAME, options.extra)
    wanted = reader.choice("layout", "auto", ("auto", *LAYOUTS))
    val_fraction = reader.fraction("val_fraction", 0.1)
    test_fraction = reader.fraction("test_fraction", 0.2)
    crop = reader.boolean("fundus_crop", True)
    data_dir = require_data_dir(NAME, options.data_dir, EXPECTED, SOURCE)
    layout = detect_layout(data_dir, wanted)
    reader.resolved["layout"] = layout.name
    official_test = (layout.name == "eyepacs" and (data_dir / EYEPACS_TEST.label_file).is_file()
                     and (data_dir / EYEPACS_TEST.image_folder).is_dir())
    if official_test:
        test_fraction = 0.0
        reader.resolved["test_fraction"] = None
        reader.resolved["test_split"] = EYEPACS_TEST.label_file
    check_fractions(NAME, val_fraction, test_fraction)

    paths, grades, ids = read_labelled(data_dir, layout, options.skip_bad_images)
    patients = [patient_of(image_id, layout) for image_id in ids]
    fractions = {"val": val_fraction}
    if test_fraction > 0:
        fractions["test"] = test_fraction
    indices = group_split(patients, grades.tolist(), fractions, options.seed)
    splits = {name: ([paths[i] for i in idx], grades[idx], [ids[i] for i in idx])
              for name, idx in indices.items()}
    manifest = split_manifest(
        "patient", patients, indices, options.seed, dataset=NAME, layout=layout.name,
        label_file=str(data_dir / layout.label_file), val_fraction=val_fraction,
        test_fraction=None if official_test else test_fraction,
        stratified_by="the patient's highest grade")
    if official_test:
        splits["test"] = read_labelled(data_dir, EYEPACS_TEST, options.skip_bad_images)
        manifest["test_split"] = str(data_dir / EYEPACS_TEST.label_file)
        manifest["counts"]["test"] = {"images": len(splits["test"][0])}

    mean, std = normalisation(3)
    info = DatasetInfo(
        name=NAME, task="multiclass", class_names=GRADES, channels=3,
        image_size=options.image_size or DEFAULT_IMAGE_SIZE, mean=mean, std=std,
        referable_threshold=REFERABLE_GRADE, selection_metric="referable_auc",
        preprocess=FUNDUS_STEP if crop else None, options=reader.resolved)
    bundle = file_bundle(info, splits, options.skip_bad_images,
                         "use more images, or change the split with --option val_fraction=F, "
                         "--option test_fraction=F or another --data-seed", manifest)
    for split in (bundle.train, bundle.val, bundle.test):
        if split is not None:  # patient id per image: `tfx evaluate` resamples patients
            split.groups = [patient_of(image_id, layout) for image_id in split.ids]
    return bundle


@hookimpl
def tfx_register_datasets(register):
    register(DatasetSpec(
        NAME, build, "diabetic retinopathy grades 0-4 (EyePACS / APTOS 2019 fundus photos), "
        "referable DR AUC", default_image_size=DEFAULT_IMAGE_SIZE, needs_data_dir=True,
        options=OPTIONS, default_augment="fundus"))
