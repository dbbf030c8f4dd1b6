"""retina: EyePACS and APTOS layouts as published, patient split, fundus crop, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import (
    eyepacs_grades,
    fundus_array,
    save,
    shared_file,
    write_aptos,
    write_csv,
    write_eyepacs,
)
from PIL import Image
from tfx_plugins.preprocess.fundus import FUNDUS_CROP, fundus_crop

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.preprocess import load_prepared, prepare_image
from transfusion_cli.errors import ConfigError, DataError
from transfusion_cli.plugins import get

# Every test starts from an empty image cache (the cache_dir fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


@pytest.fixture
def eyepacs(tmp_path) -> Path:
    return write_eyepacs(tmp_path / "eyepacs")


def all_ids(bundle) -> dict[str, list[str]]:
    return {name: getattr(bundle, name).ids for name in ("train", "val", "test")}


def test_eyepacs_patient_split_keeps_both_eyes_together(eyepacs):
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32, seed=1)
    info = bundle.info
    assert info.task == "multiclass" and info.num_outputs == 5 and info.channels == 3
    assert info.referable_threshold == 2 and info.selection_metric == "referable_auc"
    assert info.preprocess == "fundus_crop" and info.options["layout"] == "eyepacs"
    where = {}
    for split, ids in all_ids(bundle).items():
        for image_id in ids:
            where.setdefault(image_id.rsplit("_", 1)[0], set()).add(split)
    assert all(len(splits) == 1 for splits in where.values())
    assert sum(len(ids) for ids in all_ids(bundle).values()) == len(eyepacs_grades())
    for split in ("train", "val", "test"):  # every grade everywhere (stratified by patient)
        assert set(getattr(bundle, split).labels.tolist()) == set(range(5))
    manifest = bundle.split_manifest
    assert manifest["method"] == "patient" and manifest["seed"] == 1
    assert sorted(p for ps in manifest["patients"].values() for p in ps) == sorted(where)
    assert "7" in manifest["patients"][next(iter(where["7"]))]
    # Labels come from trainLabels.csv, row by row.
    grades = eyepacs_grades()
    assert bundle.train.labels.tolist() == [grades[i] for i in bundle.train.ids]
    assert bundle.train[3][1].item() == grades[bundle.train.ids[3]]


def test_split_is_seeded_and_ratios_are_options(eyepacs):
    a = all_ids(build_dataset("retina", data_dir=eyepacs, image_size=32, seed=0))
    b = all_ids(build_dataset("retina", data_dir=eyepacs, image_size=32, seed=0))
    c = all_ids(build_dataset("retina", data_dir=eyepacs, image_size=32, seed=5))
    assert a == b and a != c
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32,
                           options={"val_fraction": "0.25", "test_fraction": 0})
    assert bundle.test is None and bundle.info.options["test_fraction"] == 0.0
    assert bundle.split_manifest["counts"]["val"]["patients"] == 5
    with pytest.raises(ConfigError, match="val_fraction='x'.*fraction between 0 and 1"):
        build_dataset("retina", data_dir=eyepacs, options={"val_fraction": "x"})
    with pytest.raises(ConfigError, match="no option 'val_frac'.*Did you mean 'val_fraction'"):
        build_dataset("retina", data_dir=eyepacs, options={"val_frac": "0.2"})


def test_default_image_size_is_the_papers(eyepacs):
    assert get("datasets", "retina").default_image_size == 587
    assert build_dataset("retina", data_dir=eyepacs).info.image_size == 587


def test_aptos_layout_is_detected(tmp_path):
    grades = write_aptos(tmp_path / "aptos")
    bundle = build_dataset("retina", data_dir=tmp_path / "aptos", image_size=32)
    assert bundle.info.options["layout"] == "aptos"
    ids = [i for ids in all_ids(bundle).values() for i in ids]
    assert sorted(ids) == sorted(grades)
    image, grade = bundle.val[0]
    assert image.shape == (3, 32, 32) and grade.item() == grades[bundle.val.ids[0]]
    assert bundle.split_manifest["counts"]["train"]["patients"] == len(bundle.train)


def test_eyepacs_official_test_set_is_used_when_present(eyepacs):
    rng = np.random.default_rng(1)
    test = {f"{p}_{eye}": p % 5 for p in range(900, 915) for eye in ("left", "right")}
    for image_id in test:
        save(fundus_array(rng, grade=test[image_id]), eyepacs / "test" / f"{image_id}.jpeg")
    write_csv(eyepacs / "retinopathy_solution.csv", ("image", "level", "Usage"),
              [(k, v, "Public") for k, v in test.items()])
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32)
    assert sorted(bundle.test.ids) == sorted(test)
    assert bundle.info.options["test_split"] == "retinopathy_solution.csv"
    assert len(bundle.train) + len(bundle.val) == len(eyepacs_grades())


def test_missing_data_says_what_and_where(tmp_path):
    with pytest.raises(DataError, match=r"needs its files: pass --data-dir.*trainLabels\.csv "
                                        r"\(columns image,level\).*kaggle\.com"):
        build_dataset("retina")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty has neither trainLabels\.csv \(EyePACS\) nor "
                                        r"train\.csv \(APTOS 2019\).*Get it from"):
        build_dataset("retina", data_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        build_dataset("retina", data_dir=tmp_path / "nowhere")


def test_tfx_data_dir_environment_variable(eyepacs, monkeypatch):
    monkeypatch.setenv("TFX_DATA_DIR", str(eyepacs.parent))
    (eyepacs.parent / "retina").symlink_to(eyepacs)
    assert build_dataset("retina", image_size=32).info.options["layout"] == "eyepacs"


def test_misspelt_column_gets_a_suggestion(eyepacs):
    write_csv(eyepacs / "trainLabels.csv", ("image", "levels"), eyepacs_grades().items())
    with pytest.raises(DataError, match=r"trainLabels\.csv has no column 'level'.*"
                                        r"Did you mean 'levels'\?"):
        build_dataset("retina", data_dir=eyepacs, image_size=32)


def test_grade_out_of_range_names_the_line(eyepacs):
    rows = list(eyepacs_grades().items())
    rows[3] = (rows[3][0], 7)
    write_csv(eyepacs / "trainLabels.csv", ("image", "level"), rows)
    with pytest.raises(DataError, match=r"trainLabels\.csv line 5, column 'level': grade '7' is "
                                        r"not one of 0-4"):
        build_dataset("retina", data_dir=eyepacs, image_size=32)


def test_duplicate_image_and_both_layouts_are_errors(eyepacs):
    rows = [*eyepacs_grades().items(), ("10_left", 0)]
    write_csv(eyepacs / "trainLabels.csv", ("image", "level"), rows)
    with pytest.raises(DataError, match="'10_left' is listed twice"):
        build_dataset("retina", data_dir=eyepacs, image_size=32)
    write_csv(eyepacs / "train.csv", ("id_code", "diagnosis"), [])
    with pytest.raises(DataError, match="both trainLabels.csv.*--option layout=eyepacs"):
        build_dataset("retina", data_dir=eyepacs, image_size=32)


def test_class_absent_from_a_split_and_empty_split(tmp_path):
    grades = {k: v for k, v in eyepacs_grades().items() if v < 4}
    grades.update({"999_left": 4, "999_right": 4})  # one patient with grade 4: train only
    write_eyepacs(tmp_path / "rare", grades)
    with pytest.raises(DataError, match=r"Class 'proliferative' has no images in the (val|test) "
                                        r"split of 'retina'.*--option val_fraction"):
        build_dataset("retina", data_dir=tmp_path / "rare", image_size=32)
    write_eyepacs(tmp_path / "one", {"5_left": 0, "5_right": 2})
    with pytest.raises(DataError, match="The val split of 'retina' is empty"):
        build_dataset("retina", data_dir=tmp_path / "one", image_size=32)


def test_fundus_crop_on_the_real_cc0_photo(tmp_path):
    photo = np.asarray(Image.open(shared_file("fundus_cc0", "retina.jpg")).convert("RGB"))
    height, width = photo.shape[:2]
    # The same photo inside a wide black frame, as EyePACS cameras record it.
    framed = np.zeros((height + 100, width + 600, 3), dtype=np.uint8)
    framed[50: 50 + height, 300: 300 + width] = photo
    cropped = fundus_crop(framed)
    assert cropped.shape[0] == cropped.shape[1]
    assert cropped.shape[0] <= max(height, width) + 2
    ours = prepare_image(Image.fromarray(framed), 64, 3, FUNDUS_CROP).astype(float)
    direct = prepare_image(Image.fromarray(photo), 64, 3, FUNDUS_CROP).astype(float)
    assert np.abs(ours - direct).mean() < 4.0  # the frame is gone: same picture
    uncropped = prepare_image(Image.fromarray(framed), 64, 3).astype(float)
    assert np.abs(uncropped - direct).mean() > 20.0
    save(framed, tmp_path / "framed.png")
    np.testing.assert_array_equal(load_prepared(tmp_path / "framed.png", 64, 3, FUNDUS_CROP),
                                  ours.astype(np.uint8))


def test_fundus_crop_leaves_a_borderless_crop_alone():
    patch = np.asarray(Image.open(shared_file("fundus_cc0", "microaneurysms.png")).convert("RGB"))
    assert fundus_crop(patch).shape[:2] == patch.shape[:2]


def reference_fundus_crop(image: np.ndarray) -> np.ndarray:
    """The plain float formulation of the crop (mean gray, np.percentile), padded square."""
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    bright = float(np.percentile(gray, 99))
    if bright <= 0:
        return image
    mask = gray > 0.08 * bright
    rows = np.flatnonzero(mask.mean(axis=1) > 0.01)
    cols = np.flatnonzero(mask.mean(axis=0) > 0.01)
    if len(rows) == 0 or len(cols) == 0:
        return image
    cropped = image[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    side = max(cropped.shape[:2])
    padded = np.zeros((side, side) + cropped.shape[2:], dtype=cropped.dtype)
    top, left = (side - cropped.shape[0]) // 2, (side - cropped.shape[1]) // 2
    padded[top: top + cropped.shape[0], left: left + cropped.shape[1]] = cropped
    return padded


def test_fast_fundus_crop_matches_the_float_reference():
    rng = np.random.default_rng(0)
    images = [np.asarray(Image.open(shared_file("fundus_cc0", "retina.jpg")).convert("RGB")),
              np.zeros((12, 12, 3), dtype=np.uint8)]
    for k in range(40):
        image = fundus_array(rng, int(rng.integers(8, 200)), int(rng.integers(8, 200)), k % 5)
        if k % 3 == 0:
            image = (image * rng.random()).astype(np.uint8)
        if k % 7 == 0:
            image = rng.integers(0, 256, image.shape, dtype=np.uint8)
        images += [image, np.asarray(Image.fromarray(image).convert("L"))]
    for image in images:
        np.testing.assert_array_equal(fundus_crop(image), reference_fundus_crop(image))
