"""Small dataset trees in each exact published layout, written by the tests themselves."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CHEXPERT_COLUMNS = (
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding",
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when that folder is absent."""
    import pytest

    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared real-data folder is not on this machine)")
    return path


def fundus_array(rng: np.random.Generator, width: int = 64, height: int = 48,
                 grade: int = 0) -> np.ndarray:
    """A fundus-like photo: an orange disc on black, wider than tall, with grade-many spots."""
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx, radius = height / 2, width / 2, 0.45 * height
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    image = np.zeros((height, width, 3), dtype=np.float32)
    image[disc] = (200, 90, 40)
    image += rng.normal(0, 6, image.shape) * disc[..., None]
    for _ in range(grade * 2):
        y, x = rng.integers(int(cy - radius / 2), int(cy + radius / 2), 2)
        image[max(y - 1, 0): y + 2, max(x - 1, 0): x + 2] = (120, 20, 20)
    return np.clip(image, 0, 255).astype(np.uint8)


def gray_array(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A grayscale X-ray-like image."""
    base = np.linspace(40, 200, size)[None, :] * np.ones((size, 1))
    return np.clip(base + rng.normal(0, 10, (size, size)), 0, 255).astype(np.uint8)


def save(array: np.ndarray, path: Path) -> Path:
    """Write an array as an image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable]) -> Path:
    """A CSV as the published files write them (unquoted unless needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(header))
        writer.writerows([list(r) for r in rows])
    return path


def eyepacs_grades(patients_per_grade: int = 4) -> dict[str, int]:
    """image id -> grade: both eyes of every patient, one patient with different eyes."""
    grades = {}
    patient = 10
    for grade in range(5):
        for _ in range(patients_per_grade):
            grades[f"{patient}_left"] = grade
            grades[f"{patient}_right"] = grade
            patient += 3
    grades["7_left"], grades["7_right"] = 0, 3  # one patient, two different eyes
    return grades


def write_eyepacs(root: Path, grades: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Kaggle EyePACS layout: trainLabels.csv (image,level) and train/<image>.jpeg."""
    rng = np.random.default_rng(seed)
    grades = grades if grades is not None else eyepacs_grades()
    for image_id, grade in grades.items():
        save(fundus_array(rng, grade=grade), root / "train" / f"{image_id}.jpeg")
    write_csv(root / "trainLabels.csv", ("image", "level"), grades.items())
    return root


def write_aptos(root: Path, per_grade: int = 4, seed: int = 0) -> dict[str, int]:
    """APTOS 2019 layout: train.csv (id_code,diagnosis) and train_images/<id_code>.png."""
    rng = np.random.default_rng(seed)
    grades = {}
    for grade in range(5):
        for _ in range(per_grade):
            code = f"{rng.integers(0, 16 ** 12):012x}"
            grades[code] = grade
            save(fundus_array(rng, grade=grade), root / "train_images" / f"{code}.png")
    write_csv(root / "train.csv", ("id_code", "diagnosis"), grades.items())
    return grades


def chexpert_value(patient: int, label: int) -> str:
    """A deterministic mix of positive, negative, uncertain and blank values."""
    code = (patient * 7 + label * 3) % 6
    return {0: "1.0", 1: "0.0", 2: "-1.0", 3: "", 4: "0.0", 5: "1.0"}[code]


def write_chexpert(root: Path, patients: int = 16, seed: int = 0,
                   folder: str = "CheXpert-v1.0-small") -> Path:
    """CheXpert layout: <folder>/train.csv, valid.csv, train/patientNNNNN/studyN/viewN_*.jpg."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, patients + 1):
        views = [("view1_frontal", "Frontal", "AP")]
        if p % 3 == 0:
            views.append(("view2_lateral", "Lateral", ""))
        for view, frontal, appa in views:
            rel = f"{folder}/train/patient{p:05d}/study1/{view}.jpg"
            save(gray_array(rng), root / rel)
            values = [chexpert_value(p, j) for j in range(14)]
            rows.append([rel, "Female" if p % 2 else "Male", 40 + p, frontal, appa, *values])
    write_csv(root / folder / "train.csv", CHEXPERT_COLUMNS, rows)
    valid = []
    for p in range(64541, 64549):
        rel = f"{folder}/valid/patient{p:05d}/study1/view1_frontal.jpg"
        save(gray_array(rng), root / rel)
        values = ["1.0" if (p + j) % 2 else "0.0" for j in range(14)]
        valid.append([rel, "Male", 55, "Frontal", "PA", *values])
    write_csv(root / folder / "valid.csv", CHEXPERT_COLUMNS, valid)
    return root


def nih_rows(patients: int = 48) -> list[tuple[str, str, int]]:
    """(image, finding labels, patient): each finding in 3 patients, some 'No Finding'."""
    rows = []
    for p in range(1, patients + 1):
        if p <= 42:
            finding = NIH_FINDINGS[(p - 1) % 14]
            second = NIH_FINDINGS[p % 14] if p % 5 == 0 else None
            labels = f"{finding}|{second}" if second else finding
        else:
            labels = "No Finding"
        rows.append((f"{p:08d}_000.png", labels, p))
        if p % 4 == 0:
            rows.append((f"{p:08d}_001.png", "No Finding", p))
    return rows


def write_nih(root: Path, rows: list[tuple[str, str, int]] | None = None,
              official_lists: bool = True, seed: int = 0) -> Path:
    """NIH layout: Data_Entry_2017_v2020.csv (unquoted-comma header), images_001/images/*.png."""
    rng = np.random.default_rng(seed)
    rows = rows if rows is not None else nih_rows()
    lines = [NIH_HEADER]
    for name, labels, patient in rows:
        lines.append(f"{name},{labels},0,{patient},{30 + patient % 50},M,PA,2500,2048,"
                     "0.14300000000000002,0.14300000000000002")
        save(gray_array(rng, 32), root / "images_001" / "images" / name)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    if official_lists:
        test_patients = {p for _, _, p in rows if p % 6 == 0 or p in (43, 44)}
        test = [n for n, _, p in rows if p in test_patients]
        train_val = [n for n, _, p in rows if p not in test_patients]
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
        (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    return root


def write_image_folder(root: Path, classes: dict[str, int], splits: bool = False,
                       seed: int = 0, suffix: str = ".png", gray: bool = False) -> Path:
    """root/<class>/*.png, or root/{train,val,test}/<class>/*.png when ``splits``."""
    rng = np.random.default_rng(seed)
    parts = ("train", "val", "test") if splits else ("",)
    for part in parts:
        for name, count in classes.items():
            for k in range(count):
                array = gray_array(rng) if gray else fundus_array(rng, 40, 40, k % 5)
                save(array, root / part / name / f"{name}_{k}{suffix}")
    return root


def write_dicom(path: Path, array: np.ndarray, monochrome1: bool = False,
                window: tuple[float, float] | None = None,
                rescale: tuple[float, float] | None = None) -> Path:
    """A minimal valid DICOM file (uint16 grayscale) written with pydicom."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "tfx-test"
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = np.ascontiguousarray(array.astype(np.uint16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
