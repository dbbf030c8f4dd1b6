"""Your own images: ``image-folder`` (root/<class>/*.png) and ``csv`` (a manifest of paths).

Both read the image files `tfx predict` reads (``IMAGE_SUFFIXES``: PNG, JPEG, TIFF, BMP,
WebP, GIF) and DICOM (``.dcm``, with the ``transfusion-cli[dicom]`` extra). Without given
splits, val and test are drawn at random, stratified by class (by patient when the CSV has a
patient column).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from transfusion_cli.api import (
    IMAGE_SUFFIXES,
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
    normalisation,
    read_table,
    reject_duplicates,
    require_data_dir,
    split_manifest,
    stratum_keys,
)

DEFAULT_IMAGE_SIZE = 224
FUNDUS_STEP = "fundus_crop"  # the preprocessing step registered by the `fundus` plugin
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}
COMMON_OPTIONS = {
    "channels": "1, 3 or auto (from the first image; default auto)",
    "fundus_crop": "crop fundus photos to their circular field of view (default false)",
    "positive": "the positive class of a two-class task: makes the task binary",
    "val_fraction": "share held out for validation when not given (default 0.1)",
    "test_fraction": "share held out for testing when not given (default 0.2; 0: no test split)",
}
FOLDER_OPTIONS = dict(COMMON_OPTIONS)
CSV_OPTIONS = {
    **COMMON_OPTIONS,
    "manifest": "the CSV file when --data-dir is a folder (default: the only .csv there)",
    "path_column": "column of image paths, relative to the CSV's folder (default: path, "
                   "image, file or filename, whichever exists)",
    "label_column": "one label column, class names or integers: multi-class",
    "label_columns": "several 0/1 columns (blank: unknown, masked): multi-label",
    "classes": "class names in order (default: the sorted values found)",
    "split_column": "column saying train / val / test per row (default: drawn at random)",
    "patient_column": "column of patient ids: draw the split by patient",
    "root": "folder the image paths are relative to (default: the CSV's folder)",
}
PATH_COLUMNS = ("path", "image", "file", "filename", "Path", "image_path", "filepath")


def detect_channels(paths: list[Path], wanted: str) -> int:
    """1 or 3: as asked, or from the first image's mode (DICOM is grayscale)."""
    if wanted != "auto":
        return int(wanted)
    for path in paths[:1]:
        if path.suffix.lower() == ".dcm":
            return 1
        try:
            with Image.open(path) as image:
                return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L",
                                           "F") else 3
        except (OSError, Image.DecompressionBombError):
            return 3  # unreadable or too large: the cache reports it by name
    return 3


def task_of(classes: tuple[str, ...], positive: str | None, dataset: str
            ) -> tuple[str, tuple[str, ...], dict[int, int]]:
    """(task, class names, class index remap); ``positive`` makes two classes binary."""
    if positive is None:
        return "multiclass", classes, {i: i for i in range(len(classes))}
    if positive not in classes:
        raise ConfigError(f"Dataset '{dataset}' option positive={positive!r} is not one of the "
                          f"classes ({', '.join(classes)}).")
    if len(classes) != 2:
        raise ConfigError(f"Dataset '{dataset}' option positive needs exactly two classes; "
                          f"found {len(classes)} ({', '.join(classes)}).")
    negative = classes[1 - classes.index(positive)]
    return "binary", (negative, positive), {classes.index(negative): 0,
                                            classes.index(positive): 1}


def common_options(reader: OptionReader) -> tuple[str, bool, str | None, float, float]:
    """channels, fundus_crop, positive, val_fraction, test_fraction."""
    channels = reader.choice("channels", "auto", ("auto", "1", "3"))
    crop = reader.boolean("fundus_crop", False)
    positive = reader.text("positive", None)
    val_fraction = reader.fraction("val_fraction", 0.1)
    test_fraction = reader.fraction("test_fraction", 0.2)
    check_fractions(reader.dataset, val_fraction, test_fraction)
    return channels, crop, positive, val_fraction, test_fraction


def random_split(groups: list[str], labels: np.ndarray, task: str, val_fraction: float,
                 test_fraction: float, seed: int, have: set[str]) -> dict[str, np.ndarray]:
    """Draw the splits not in ``have`` from one pool, by group, stratified."""
    if "val" not in have and val_fraction == 0:
        raise ConfigError("There is no given validation split, so val_fraction must be above 0 "
                          "(e.g. --option val_fraction=0.1).")
    fractions = {name: fraction for name, fraction in (("val", val_fraction),
                                                       ("test", test_fraction))
                 if name not in have and fraction > 0}
    return group_split(groups, stratum_keys(labels, task), fractions, seed)


def make_info(name: str, task: str, classes: tuple[str, ...], channels: int, image_size: int,
              crop: bool, resolved: dict) -> DatasetInfo:
    """DatasetInfo of a user dataset."""
    mean, std = normalisation(channels)
    return DatasetInfo(name=name, task=task, class_names=classes, channels=channels,
                       image_size=image_size, mean=mean, std=std,
                       preprocess=FUNDUS_STEP if crop else None,
                       selection_metric="mean_auc" if task == "multilabel" else "auc",
                       options=resolved)


# ---------------------------------------------------------------- image-folder

def folder_images(root: Path, allow_empty: bool = True) -> dict[str, list[Path]]:
    """Class name -> image files under root/<class>/ (searched recursively); an empty class
    folder is skipped, or an error when ``allow_empty`` is false (a class with no examples
    cannot be learned, and dropping it would silently renumber the classes)."""
    classes: dict[str, list[Path]] = {}
    empty: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if files:
            classes[folder.name] = files
        else:
            empty.append(folder)
    if empty and classes and not allow_empty:
        folder = empty[0]
        raise DataError(f"Class folder {folder}/ holds no images ({', '.join(IMAGE_SUFFIXES)}), "
                        f"so class '{folder.name}' cannot be learned; add its images, or remove "
                        "the folder (or hide it by starting its name with '.').")
    return classes


def image_folder_roots(options: DatasetOptions) -> list[Path]:
    """Where class folders that are symlinks lead (root/<class>, root/<split>/<class>)."""
    root = options.data_dir
    if root is None or not root.is_dir():
        return []
    folders = [root, *(root / n for names in SPLIT_FOLDERS.values() for n in names)]
    return [child.resolve() for folder in folders if folder.is_dir()
            for child in folder.iterdir() if child.is_symlink() and child.is_dir()]


def build_image_folder(options: DatasetOptions) -> DatasetBundle:
    """root/<class>/*, or root/{train,val,test}/<class>/*."""
    name = "image-folder"
    reader = OptionReader(name, options.extra)
    channels_opt, crop, positive, val_fraction, test_fraction = common_options(reader)
    root = require_data_dir(name, options.data_dir, "one folder of images per class "
                            "(root/<class>/*.png|jpg|dcm), optionally inside train/, val/ and "
                            "test/", "your own images")
    given = {}
    for split, names in SPLIT_FOLDERS.items():
        folder = next((root / n for n in names if (root / n).is_dir()), None)
        if folder is not None:
            given[split] = folder
    if given and "train" not in given:
        raise DataError(f"{root} has {', '.join(p.name + '/' for p in given.values())} but no "
                        "train/; add train/<class>/ images.")
    roots = given or {"train": root}
    found = {split: folder_images(folder, allow_empty=split != "train")
             for split, folder in roots.items()}
    if not found["train"]:
        raise DataError(f"{roots['train']} has no class folders with images; expected "
                        f"{roots['train']}/<class>/*.png (or .jpg, .dcm, ...).")
    classes = tuple(sorted(found["train"]))
    for split, by_class in found.items():
        extra = sorted(set(by_class) - set(classes))
        if extra:
            raise DataError(f"{roots[split]}/{extra[0]}/ is a class that {roots['train']} does "
                            f"not have; add {roots['train']}/{extra[0]}/ images or remove it.")
    task, class_names, remap = task_of(classes, positive, name)
    entries = {split: [(path, remap[classes.index(c)]) for c in classes
                       for path in by_class.get(c, [])] for split, by_class in found.items()}
    all_paths = [p for rows in entries.values() for p, _ in rows]
    channels = detect_channels(all_paths, channels_opt)
    reader.resolved["channels"] = channels
    dtype = np.int64 if task == "multiclass" else np.float32
    splits = {}
    for split, rows in entries.items():
        splits[split] = ([p for p, _ in rows], np.array([y for _, y in rows], dtype=dtype),
                         [str(p.relative_to(root)) for p, _ in rows])
    paths, labels, ids = splits.pop("train")
    drawn = random_split(ids, labels, task, val_fraction, test_fraction, options.seed,
                         set(splits))
    for split, idx in drawn.items():
        splits[split] = ([paths[i] for i in idx], labels[idx], [ids[i] for i in idx])
    manifest = None
    if len(drawn) > 1:
        manifest = split_manifest("image", ids, drawn, options.seed, dataset=name,
                                  root=str(root), stratified_by="class",
                                  val_fraction=val_fraction, test_fraction=test_fraction)
    reader.resolved["split"] = "folders" if manifest is None else "random"
    info = make_info(name, task, class_names, channels, options.image_size or DEFAULT_IMAGE_SIZE,
                     crop, reader.resolved)
    return file_bundle(info, splits, options.skip_bad_images,
                       f"add images to {root} or change --option val_fraction=F / "
                       "test_fraction=F", manifest)


# ---------------------------------------------------------------- csv manifest

def locate_manifest(data_dir: Path, manifest: str | None) -> Path:
    """The CSV: --data-dir itself, or the named / only .csv inside it."""
    if data_dir.is_file():
        return data_dir
    if manifest:
        path = data_dir / manifest
        if not path.is_file():
            raise DataError(f"{path} does not exist; --option manifest names a CSV in {data_dir}.")
        return path
    files = sorted(data_dir.glob("*.csv"))
    if len(files) == 1:
        return files[0]
    if not files:
        raise DataError(f"{data_dir} has no .csv file; pass the manifest itself as --data-dir "
                        "or --option manifest=FILE.")
    raise DataError(f"{data_dir} has several CSV files ({', '.join(f.name for f in files)}); "
                    "choose one with --option manifest=FILE.")


def csv_roots(options: DatasetOptions) -> list[Path]:
    """The manifest, the folder its paths are relative to, and every folder outside that one
    holding an image it lists (absolute paths, ``../``); what cannot be read is left to the
    build, which says why."""
    if options.data_dir is None:
        return []
    extra = {k: str(v) for k, v in options.extra.items() if v is not None}
    try:
        csv_path = locate_manifest(options.data_dir, extra.get("manifest") or None)
        table = read_table(csv_path)
    except (DataError, OSError):
        return []
    root = Path(os.path.abspath(extra.get("root") or csv_path.parent))
    column = extra.get("path_column") or next((c for c in PATH_COLUMNS if c in table.columns),
                                              None)
    if column not in table.columns:
        return [csv_path, root]
    outside = sorted({Path(os.path.normpath(root / value)).parent
                      for value in table.column(column) if value} - {root})
    folders: list[Path] = []
    for folder in outside:  # sorted: a folder comes before the folders inside it
        if not folder.is_relative_to(root) and not any(folder.is_relative_to(f)
                                                       for f in folders):
            folders.append(folder)
    return [csv_path, root, *folders]


def multiclass_labels(table: Table, column: str, classes: list[str] | None
                      ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices from one column of names or integers."""
    values = table.column(column, fix="choose it with --option label_column=COLUMN")
    for row, value in enumerate(values):
        if value == "":
            raise DataError(f"{table.where(row, column)} is blank; every row needs a label.")
    if classes is None and all(v.lstrip("-").isdigit() for v in values):
        numbers = [int(v) for v in values]
        top = max(numbers)
        for row, number in enumerate(numbers):
            if number < 0:
                raise DataError(f"{table.where(row, column)}: label {number} is negative; "
                                "labels are class indices 0, 1, ...")
        return np.array(numbers, dtype=np.int64), tuple(str(i) for i in range(top + 1))
    names = tuple(classes) if classes else tuple(sorted(set(values)))
    position = {n: i for i, n in enumerate(names)}
    numeric_names = classes is not None and all(v.isdigit() for v in values)
    out = []
    for row, value in enumerate(values):
        if value in position:
            out.append(position[value])
        elif numeric_names and int(value) < len(names):
            out.append(int(value))
        else:
            raise DataError(f"{table.where(row, column)}: label {value!r} is not one of the "
                            f"declared classes ({', '.join(names)}); fix the row or --option "
                            "classes=...")
    return np.array(out, dtype=np.int64), names


def multilabel_labels(table: Table, columns: list[str]) -> np.ndarray:
    """(N, L) float32 of 0/1 columns; blank is NaN (masked)."""
    matrix = np.zeros((len(table), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        for row, value in enumerate(table.column(column, fix="check --option label_columns")):
            lowered = value.lower()
            if lowered in ("1", "1.0", "true", "yes"):
                matrix[row, j] = 1.0
            elif lowered in ("0", "0.0", "false", "no"):
                matrix[row, j] = 0.0
            elif lowered == "":
                matrix[row, j] = np.nan
            else:
                raise DataError(f"{table.where(row, column)}: value {value!r} is not 0, 1 or "
                                "blank (unknown); multi-label columns hold 0/1.")
    return matrix


def build_csv(options: DatasetOptions) -> DatasetBundle:
    """A CSV of image paths and labels (one class column, or several 0/1 columns)."""
    name = "csv"
    reader = OptionReader(name, options.extra)
    channels_opt, crop, positive, val_fraction, test_fraction = common_options(reader)
    data_dir = require_data_dir(name, options.data_dir, "a CSV file with an image path column "
                                "and label column(s) (--data-dir the CSV, or its folder)",
                                "your own images")
    csv_path = locate_manifest(data_dir, reader.text("manifest", None))
    table = read_table(csv_path)
    path_column = reader.text("path_column", None) or next(
        (c for c in PATH_COLUMNS if c in table.columns), "path")
    reader.resolved["path_column"] = path_column
    label_column = reader.text("label_column", None)
    label_columns = reader.names("label_columns", None)
    if label_column and label_columns:
        raise ConfigError("Dataset 'csv': give --option label_column (multi-class) or "
                          "label_columns (multi-label), not both.")
    if not label_column and not label_columns:
        if "label" not in table.columns:
            raise ConfigError(f"Dataset 'csv': say which column holds the labels: --option "
                              f"label_column=COLUMN (multi-class) or label_columns=A,B "
                              f"(multi-label); {csv_path} has {', '.join(table.columns)}.")
        label_column = reader.resolved["label_column"] = "label"
    root = Path(reader.text("root", None) or csv_path.parent)
    raw_paths = table.column(path_column, fix="choose it with --option path_column=COLUMN")
    paths = [Path(p) if Path(p).is_absolute() else root / p for p in raw_paths]
    for row, value in enumerate(raw_paths):
        if not value:
            raise DataError(f"{table.where(row, path_column)} is blank; every row needs an image.")
    reject_duplicates(table, path_column, [Path(os.path.normpath(p)) for p in paths])
    if label_columns:
        labels = multilabel_labels(table, label_columns)
        task, class_names = "multilabel", tuple(label_columns)
        if positive:
            raise ConfigError("Dataset 'csv': option positive applies to label_column, "
                              "not label_columns.")
    else:
        indices, classes = multiclass_labels(table, label_column, reader.names("classes", None))
        task, class_names, remap = task_of(classes, positive, name)
        labels = np.array([remap[int(i)] for i in indices],
                          dtype=np.int64 if task == "multiclass" else np.float32)
    keep = keep_existing(paths, table.where, str(csv_path), options.skip_bad_images,
                         f"check the paths in column '{path_column}' (relative to {root})")
    patient_column = reader.text("patient_column", None)
    groups = (table.column(patient_column, fix="choose it with --option patient_column=COLUMN")
              if patient_column else list(raw_paths))
    split_column = reader.text("split_column", None)
    given: dict[str, list[int]] = {}
    pool = keep
    if split_column:
        values = table.column(split_column, fix="choose it with --option split_column=COLUMN")
        for row in keep:
            split = SPLIT_VALUES.get(values[row].lower())
            if split is None:
                raise DataError(f"{table.where(row, split_column)}: {values[row]!r} is not "
                                "train, val or test.")
            given.setdefault(split, []).append(row)
        pool = given.pop("train", [])
    have = set(given)
    local = random_split([groups[i] for i in pool], labels[pool], task, val_fraction,
                         test_fraction, options.seed, have)
    indices = {split: np.asarray(pool, dtype=np.int64)[idx] for split, idx in local.items()}
    indices.update({split: np.asarray(rows, dtype=np.int64) for split, rows in given.items()})
    manifest = None
    if set(local) - {"train"}:
        manifest = split_manifest("patient" if patient_column else "image",
                                  [groups[i] for i in pool], local, options.seed, dataset=name,
                                  manifest=str(csv_path), stratified_by="class",
                                  val_fraction=val_fraction, test_fraction=test_fraction)
    channels = detect_channels([paths[i] for i in keep], channels_opt)
    reader.resolved["channels"] = channels
    splits = {split: ([paths[i] for i in idx], labels[idx], [raw_paths[i] for i in idx])
              for split, idx in indices.items()}
    info = make_info(name, task, class_names, channels, options.image_size or DEFAULT_IMAGE_SIZE,
                     crop, reader.resolved)
    return file_bundle(info, splits, options.skip_bad_images,
                       f"add rows to {csv_path} or change --option val_fraction=F / "
                       "test_fraction=F", manifest)


@hookimpl
def tfx_register_datasets(register):
    register(DatasetSpec(
        "image-folder", build_image_folder, "your images, one folder per class "
        "(root/<class>/*.png), optional train/ val/ test/", default_image_size=DEFAULT_IMAGE_SIZE,
        needs_data_dir=True, options=FOLDER_OPTIONS, default_augment="light",
        input_roots=image_folder_roots))
    register(DatasetSpec(
        "csv", build_csv, "your images listed in a CSV: a path column and a class column "
        "or several 0/1 columns", default_image_size=DEFAULT_IMAGE_SIZE, needs_data_dir=True,
        options=CSV_OPTIONS, default_augment="light", input_roots=csv_roots))
