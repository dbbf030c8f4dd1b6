"""MedMNIST / MedMNIST+ (2D): any official ``.npz`` file, its own train / val / test splits.

The task comes from the labels: (N, L>1) multi-label, (N, 1) with values 0/1 binary, else
multi-class; known files (``retinamnist``, ``pneumoniamnist``, ``chestmnist``, ...) also get
their class names, and RetinaMNIST, graded 0-4 like the paper's Retina, the referable threshold.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
from tfx_plugins.datasets.medmnist_files import fetch

from transfusion_cli.api import (
    DataError,
    DatasetBundle,
    DatasetInfo,
    DatasetOptions,
    DatasetSpec,
    NpzArraySource,
    OptionReader,
    cached_split,
    check_splits,
    hookimpl,
    normalisation,
    npz_member_header,
)

NAME = "medmnist"
NPZ_SPLITS = ("train", "val", "test")  # MedMNIST .npz members: <split>_images, <split>_labels
SOURCE = "https://zenodo.org/records/10519652 (MedMNIST v2 / MedMNIST+, e.g. retinamnist.npz)"
OPTIONS = {"subset": "which .npz when --data-dir is a folder: e.g. retinamnist or "
                     "pneumoniamnist_224 (default: the only .npz there)"}
ORGAN = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
         "lung-left", "lung-right", "pancreas", "spleen")
# Official MedMNIST v2 label names (medmnist/info.py) and tasks of the 2D datasets.
KNOWN: dict[str, tuple[str, tuple[str, ...]]] = {
    "pathmnist": ("multiclass", (
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
        "normal colon mucosa", "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium")),
    "chestmnist": ("multilabel", (
        "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
        "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")),
    "dermamnist": ("multiclass", (
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
        "vascular lesions")),
    "octmnist": ("multiclass", (
        "choroidal neovascularization", "diabetic macular edema", "drusen", "normal")),
    "pneumoniamnist": ("binary", ("normal", "pneumonia")),
    "retinamnist": ("multiclass", ("none", "mild", "moderate", "severe", "proliferative")),
    "breastmnist": ("binary", ("malignant", "normal, benign")),
    "bloodmnist": ("multiclass", (
        "basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
        "monocyte", "neutrophil", "platelet")),
    "tissuemnist": ("multiclass", (
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
        "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
        "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb")),
    "organamnist": ("multiclass", ORGAN),
    "organcmnist": ("multiclass", ORGAN),
    "organsmnist": ("multiclass", ORGAN),
}
GRADED = {"retinamnist": 2}  # ordinal DR grades: referable from grade 2


def locate(data_dir: Path | None, subset: str | None) -> Path:
    """The .npz file: --data-dir itself, or the one ``subset`` names (or the only one) in it."""
    if data_dir is None:
        raise DataError(f"Dataset '{NAME}' needs a MedMNIST .npz file: pass --data-dir "
                        "path/to/retinamnist.npz (or a folder of them with --option "
                        f"subset=NAME, or set TFX_DATA_DIR/{NAME}). Get them from {SOURCE}.")
    if data_dir.is_file():
        return data_dir
    if not data_dir.is_dir():
        raise DataError(f"{data_dir} does not exist; dataset '{NAME}' expects a MedMNIST .npz "
                        f"file (keys train_images, train_labels, ...). Get it from {SOURCE}.")
    files = sorted(data_dir.glob("*.npz"))
    if subset:
        path = data_dir / (subset if subset.endswith(".npz") else f"{subset}.npz")
        sizes = [f for f in files if re.fullmatch(rf"{re.escape(subset)}_(64|128|224)", f.stem)]
        if not path.is_file() and len(sizes) == 1:
            return sizes[0]  # `subset=retinamnist` in a folder holding retinamnist_64.npz only
        if not path.is_file() and sizes:
            raise DataError(f"{data_dir} holds {subset} at several sizes "
                            f"({', '.join(f.name for f in sizes)}); choose one with --option "
                            f"subset={sizes[0].stem} (or give the file itself as --data-dir).")
        if not path.is_file():
            shown = ", ".join(f.stem for f in files) or "none"
            raise DataError(f"{path} does not exist (npz files in {data_dir}: {shown}); "
                            f"choose one with --option subset=NAME. Get it from {SOURCE}.")
        return path
    if len(files) == 1:
        return files[0]
    if not files:
        raise DataError(f"{data_dir} has no .npz file; dataset '{NAME}' expects a MedMNIST .npz "
                        f"(e.g. retinamnist.npz). Get it from {SOURCE}.")
    raise DataError(f"{data_dir} has several .npz files ({', '.join(f.stem for f in files)}); "
                    "choose one with --option subset=NAME.")


def known_name(path: Path) -> str | None:
    """``retinamnist_224.npz`` / ``retinamnist_fixture.npz`` -> ``retinamnist``."""
    stem = path.stem.lower()
    base = re.split(r"[_\-.]", stem, maxsplit=1)[0]
    return base if base in KNOWN else None


def infer_task(path: Path, labels: dict[str, np.ndarray]) -> tuple[str, tuple[str, ...]]:
    """(task, class names) from the file name when known, else from the label arrays."""
    name = known_name(path)
    if name is not None:
        return KNOWN[name]
    widths = {values.shape[1] for values in labels.values()}
    if len(widths) != 1:
        raise DataError(f"{path}: the label arrays have different widths {sorted(widths)}; "
                        "is this a MedMNIST file?")
    width = widths.pop()
    if width > 1:
        return "multilabel", tuple(f"label_{i}" for i in range(width))
    top = max(int(values.max()) for values in labels.values() if values.size)
    if top <= 1:
        return "binary", ("0", "1")
    return "multiclass", tuple(str(i) for i in range(top + 1))


def check_labels(path: Path, split: str, values: np.ndarray, task: str,
                 classes: tuple[str, ...]) -> np.ndarray:
    """Labels in range, as the training code wants them: int64 (N,), float32 (N,) or (N, L)."""
    key = f"{split}_labels"
    width = len(classes) if task == "multilabel" else 1
    if values.ndim != 2 or values.shape[1] != width:
        raise DataError(f"{path}: {key} has shape {values.shape}; expected (N, {width}) for "
                        f"this {task} file.")
    top = 1 if task != "multiclass" else len(classes) - 1
    bad = np.flatnonzero(((values < 0) | (values > top)).any(axis=1))
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{path}: {key}[{row}] is {values[row].tolist()}, outside 0-{top} "
                        f"({len(bad)} such rows); is this the right file for a {task} task?")
    if task == "multiclass":
        return values[:, 0].astype(np.int64)
    if task == "binary":
        return values[:, 0].astype(np.float32)
    return values.astype(np.float32)


def read_labels(path: Path) -> dict[str, np.ndarray]:
    """The three ``<split>_labels`` arrays; any unreadable file or member is a DataError."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); download the MedMNIST .npz file again.")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        raise DataError(f"Cannot read {path} as an .npz file: it is not a zip archive (a text "
                        "file, or an incomplete download?); expected a MedMNIST .npz file.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            wanted = [f"{s}_{kind}" for s in NPZ_SPLITS for kind in ("images", "labels")]
            missing = [key for key in wanted if key not in npz.files]
            if missing:
                raise DataError(f"{path} has no {', '.join(missing)} (it has: "
                                f"{', '.join(npz.files)}); expected a MedMNIST file with "
                                "train/val/test _images and _labels.")
            labels = {s: np.asarray(npz[f"{s}_labels"]) for s in NPZ_SPLITS}
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise DataError(f"{path} holds arrays of Python objects, not numbers; tfx does not "
                            "load those (they could run code). Expected a MedMNIST .npz file."
                            ) from None
        raise DataError(f"Cannot read {path} as an .npz file ({exc}); is it a complete "
                        "MedMNIST download?") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"Cannot read {path} as an .npz file ({type(exc).__name__}: "
                        f"{exc or 'truncated'}); is it a complete MedMNIST download?") from None
    for split, values in labels.items():
        if values.dtype.kind not in "biuf":
            raise DataError(f"{path}: {split}_labels holds {values.dtype} values; MedMNIST "
                            "labels are integers.")
        if values.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(values).all(axis=tuple(range(1, values.ndim))))
            if len(bad):
                raise DataError(f"{path}: {split}_labels[{int(bad[0])}] is not a number "
                                f"({len(bad)} such rows); every MedMNIST label must be 0 or a "
                                "positive integer.")
    return labels


def build(options: DatasetOptions) -> DatasetBundle:
    """Read the npz, infer the task, and return the three official splits (cached at size)."""
    reader = OptionReader(NAME, options.extra)
    path = locate(options.data_dir, reader.text("subset", None))
    labels = read_labels(path)
    headers = {s: npz_member_header(path, f"{s}_images") for s in NPZ_SPLITS}
    for split, (_, dtype) in headers.items():
        if dtype != np.uint8:
            raise DataError(f"{path}: {split}_images holds {dtype} values; MedMNIST images are "
                            "uint8 (0-255). Convert them, e.g. (x * 255).round().astype('uint8') "
                            "for floats in 0-1.")
    members = {s: headers[s][0] for s in NPZ_SPLITS}
    shapes = {s: _image_shape(path, s, members[s]) for s in NPZ_SPLITS}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{path}: the splits hold images of different shapes {shapes}.")
    height, width, channels = shapes["train"]
    if height != width:
        raise DataError(f"{path}: images are {height}x{width}; tfx expects square images.")
    for split in NPZ_SPLITS:
        if members[split][0] != len(labels[split]):
            raise DataError(f"{path}: {split}_images has {members[split][0]} images but "
                            f"{split}_labels has {len(labels[split])} rows.")
    task, classes = infer_task(path, labels)
    targets = {s: check_labels(path, s, labels[s], task, classes) for s in NPZ_SPLITS}
    image_size = options.image_size or height
    mean, std = normalisation(channels)
    graded = GRADED.get(known_name(path) or "")
    reader.resolved.update(file=str(path), native_size=height)
    info = DatasetInfo(
        name=NAME, task=task, class_names=classes, channels=channels, image_size=image_size,
        mean=mean, std=std, referable_threshold=graded,
        selection_metric="referable_auc" if graded else (
            "mean_auc" if task == "multilabel" else "auc"),
        options=reader.resolved)
    splits = {}
    for split in NPZ_SPLITS:
        source = NpzArraySource(path, f"{split}_images", image_size, channels)
        ids = [f"{path.stem}/{split}/{i}" for i in range(len(source))]
        splits[split] = cached_split(NAME, f"{path.stem}-{split}", source, targets[split], task,
                                     ids, image_size, channels, options.skip_bad_images)
    check_splits(info, {s: splits[s].labels for s in NPZ_SPLITS},
                 "is this the complete file? The MedMNIST splits are fixed")
    return DatasetBundle(info, splits["train"], splits["val"], splits["test"])


def _image_shape(path: Path, split: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of one split's images from the array shape."""
    if len(shape) == 3:
        return shape[1], shape[2], 1
    if len(shape) == 4 and shape[3] in (1, 3):
        return shape[1], shape[2], shape[3]
    raise DataError(f"{path}: {split}_images has shape {shape}; tfx reads 2D MedMNIST files "
                    "(N, H, W) or (N, H, W, 3), not the 3D ones.")


@hookimpl
def tfx_register_datasets(register):
    register(DatasetSpec(
        NAME, build, "any MedMNIST / MedMNIST+ 2D .npz file (e.g. retinamnist, pneumoniamnist)",
        default_image_size=None, needs_data_dir=True, options=OPTIONS,
        default_augment="light", fetch=fetch))
