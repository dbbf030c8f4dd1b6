"""image-folder and csv: your own images (PNG, JPEG, DICOM), splits, label parsing, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import gray_array, save, write_csv, write_dicom, write_image_folder
from input_files import image_folder
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.dicom import read_dicom
from transfusion_cli.data.preprocess import load_prepared
from transfusion_cli.errors import ConfigError, DataError

SMALL_FIT = ["--image-size", "16", "--batch-size", "4", "--steps", "1"]

# Every test starts from an empty image cache (the cache_dir fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


def ids(bundle) -> dict[str, list[str]]:
    return {s: getattr(bundle, s).ids for s in ("train", "val", "test") if getattr(bundle, s)}


# ------------------------------------------------------------------ image-folder

def test_flat_class_folders_are_split_stratified(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"normal": 10, "referable": 10})
    bundle = build_dataset("image-folder", data_dir=root, image_size=32)
    info = bundle.info
    assert info.class_names == ("normal", "referable") and info.task == "multiclass"
    assert info.channels == 3 and info.options["split"] == "random"
    every = [i for split in ids(bundle).values() for i in split]
    assert sorted(every) == sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    for split in ("train", "val", "test"):
        assert set(getattr(bundle, split).labels.tolist()) == {0, 1}
    for index, name in enumerate(bundle.val.ids):
        assert bundle.val.labels[index] == (0 if name.startswith("normal/") else 1)
    assert bundle.split_manifest["method"] == "image"
    image, _ = bundle.val[0]
    expected = load_prepared(root / bundle.val.ids[0], 32, 3)
    np.testing.assert_array_equal(image.numpy(), expected.transpose(2, 0, 1))


def test_split_folders_are_used_as_given_and_positive_makes_it_binary(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"NORMAL": 3, "PNEUMONIA": 3}, splits=True,
                              gray=True, suffix=".jpg")
    bundle = build_dataset("image-folder", data_dir=root, image_size=32,
                           options={"positive": "NORMAL"})
    assert bundle.split_manifest is None and bundle.info.options["split"] == "folders"
    assert all(i.startswith("val/") for i in bundle.val.ids)
    assert bundle.info.task == "binary" and bundle.info.class_names == ("PNEUMONIA", "NORMAL")
    assert bundle.info.channels == 1
    for index, name in enumerate(bundle.test.ids):
        assert bundle.test.labels[index] == (1.0 if "/NORMAL/" in name else 0.0)
    with pytest.raises(ConfigError, match="positive='COVID' is not one of the classes"):
        build_dataset("image-folder", data_dir=root, options={"positive": "COVID"})


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match=r"needs its files: pass --data-dir.*root/<class>/"):
        build_dataset("image-folder")
    root = write_image_folder(tmp_path / "a", {"x": 3, "y": 3}, splits=True)
    save(gray_array(np.random.default_rng(0)), root / "val" / "z" / "z0.png")
    with pytest.raises(DataError, match=r"val/z/ is a class that .*train does not have"):
        build_dataset("image-folder", data_dir=root)
    root = write_image_folder(tmp_path / "b", {"x": 3, "y": 3}, splits=True)
    for path in (root / "val" / "y").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="Class 'y' has no images in the val split of "
                                        "'image-folder'"):
        build_dataset("image-folder", data_dir=root)
    (tmp_path / "c" / "loose").mkdir(parents=True)
    with pytest.raises(DataError, match="has no class folders with images"):
        build_dataset("image-folder", data_dir=tmp_path / "c")


# ------------------------------------------------------------------ csv

def csv_tree(tmp_path: Path, n: int = 18) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        rel = f"img/{k:03d}.png"
        save(gray_array(rng, 24), tmp_path / "csvdata" / rel)
        rows.append((rel, ["benign", "malignant", "normal"][k % 3], f"P{k // 2}",
                     k % 2, "" if k == 4 else (k // 2) % 2, "test" if k >= 15 else "train"))
    write_csv(tmp_path / "csvdata" / "labels.csv",
              ("path", "label", "patient", "effusion", "edema", "fold"), rows)
    return tmp_path / "csvdata"


def test_csv_multiclass_with_patient_split(tmp_path):
    root = csv_tree(tmp_path)
    bundle = build_dataset("csv", data_dir=root / "labels.csv", image_size=24,
                           options={"patient_column": "patient", "val_fraction": "0.2",
                                    "test_fraction": "0.2"})
    assert bundle.info.class_names == ("benign", "malignant", "normal")
    assert bundle.info.channels == 1 and bundle.split_manifest["method"] == "patient"
    where = {}
    for split, names in ids(bundle).items():
        for name in names:
            where.setdefault(int(name[4:7]) // 2, set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    for index, name in enumerate(bundle.train.ids):
        assert bundle.train.labels[index] == int(name[4:7]) % 3


def test_csv_multilabel_split_column_and_declared_classes(tmp_path):
    root = csv_tree(tmp_path)
    bundle = build_dataset("csv", data_dir=root, image_size=24,
                           options={"label_columns": "effusion,edema", "split_column": "fold"})
    assert bundle.info.task == "multilabel" and bundle.info.class_names == ("effusion", "edema")
    assert sorted(bundle.test.ids) == [f"img/{k:03d}.png" for k in (15, 16, 17)]
    rows = {name: i for i, name in enumerate(bundle.train.ids + bundle.val.ids)}
    labels = np.concatenate([bundle.train.labels, bundle.val.labels])
    assert np.isnan(labels[rows["img/004.png"], 1])
    assert labels[rows["img/005.png"]].tolist() == [1.0, 0.0]
    ordered = build_dataset("csv", data_dir=root, image_size=24,
                            options={"label_column": "label",
                                     "classes": "normal,benign,malignant"})
    assert ordered.info.class_names == ("normal", "benign", "malignant")
    position = {"normal": 0, "benign": 1, "malignant": 2}
    for index, name in enumerate(ordered.train.ids):
        assert ordered.train.labels[index] == position[["benign", "malignant",
                                                         "normal"][int(name[4:7]) % 3]]


def test_csv_errors_name_line_and_column(tmp_path):
    write_csv(tmp_path / "nolabel" / "m.csv", ("path", "y"), [("a.png", "a")])
    with pytest.raises(ConfigError, match="say which column holds the labels.*label_column="):
        build_dataset("csv", data_dir=tmp_path / "nolabel")
    root = csv_tree(tmp_path / "2")
    with pytest.raises(DataError, match=r"labels\.csv has no column 'paths'.*Did you mean "
                                        r"'path'"):
        build_dataset("csv", data_dir=root, options={"path_column": "paths"})
    with pytest.raises(DataError, match=r"line 3, column 'label': label 'malignant' is not one "
                                        r"of the declared classes \(benign, normal\)"):
        build_dataset("csv", data_dir=root, options={"classes": "benign,normal"})
    with pytest.raises(DataError, match=r"line 2, column 'patient': value 'P0' is not 0, 1 or "
                                        r"blank"):
        build_dataset("csv", data_dir=root, options={"label_columns": "effusion,patient"})
    with pytest.raises(DataError, match=r"line 2, column 'label': 'benign' is not train, val "
                                        r"or test"):
        build_dataset("csv", data_dir=root, options={"split_column": "label"})


# ------------------------------------------------------------------ DICOM

def test_dicom_voi_lut_and_monochrome1(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 32), (32, 1)).astype(np.uint16)
    plain = np.asarray(read_dicom(write_dicom(tmp_path / "m2.dcm", ramp)), dtype=np.int16)
    inverted = np.asarray(read_dicom(write_dicom(tmp_path / "m1.dcm", ramp, monochrome1=True)),
                          dtype=np.int16)
    assert plain[0, 0] == 0 and plain[0, -1] == 255
    np.testing.assert_array_equal(inverted, 255 - plain)
    windowed = np.asarray(read_dicom(write_dicom(tmp_path / "w.dcm", ramp,
                                                 window=(2000, 1000))), dtype=np.int16)
    # Window [1500, 2500]: everything darker is black, everything brighter white.
    assert (windowed[:, ramp[0] < 1400] == 0).all() and (windowed[:, ramp[0] > 2600] == 255).all()
    middle = (ramp[0] > 1600) & (ramp[0] < 2400)
    assert ((windowed[:, middle] > 0) & (windowed[:, middle] < 255)).all()
    # With a rescale (modality LUT) the window is in rescaled units: 2 * stored - 1000, so
    # the window [2000, 4000] covers stored values [1500, 2500] again.
    rescaled = np.asarray(read_dicom(write_dicom(tmp_path / "r.dcm", ramp, window=(3000, 2000),
                                                 rescale=(2, -1000))), dtype=np.int16)
    assert (rescaled[:, ramp[0] < 1400] == 0).all() and (rescaled[:, ramp[0] > 2600] == 255).all()
    assert ((rescaled[:, middle] > 0) & (rescaled[:, middle] < 255)).all()


def test_dicom_files_in_a_csv_dataset(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):
        array = (rng.random((20, 20)) * 3000).astype(np.uint16)
        write_dicom(tmp_path / "dcm" / f"{k}.dcm", array, monochrome1=k % 2 == 0)
        rows.append((f"{k}.dcm", k % 2))
    write_csv(tmp_path / "dcm" / "m.csv", ("file", "label"), rows)
    bundle = build_dataset("csv", data_dir=tmp_path / "dcm", image_size=16,
                           options={"test_fraction": "0.25", "val_fraction": "0.25"})
    assert bundle.info.channels == 1 and bundle.info.options["path_column"] == "file"
    image, _ = bundle.train[0]
    expected = load_prepared(tmp_path / "dcm" / bundle.train.ids[0], 16, 1)
    np.testing.assert_array_equal(image.numpy(), expected.transpose(2, 0, 1))


def test_image_folder_reads_every_suffix_predict_reads(tmp_path):
    """WebP and GIF (palette) images train as `tfx predict` reads them: one suffix list."""
    from transfusion_cli.data.preprocess import IMAGE_SUFFIXES
    from transfusion_cli.deploy.predict import collect_images

    root = tmp_path / "imgs"
    write_image_folder(root, {"normal": 5}, suffix=".webp")
    write_image_folder(root, {"referable": 5}, suffix=".gif")
    assert {".webp", ".gif"} <= set(IMAGE_SUFFIXES)
    bundle = build_dataset("image-folder", data_dir=root, image_size=32)
    every = sorted(i for split in ids(bundle).values() for i in split)
    assert every == sorted(str(p.relative_to(root)) for p in root.rglob("*.*"))
    assert sorted(collect_images([root])) == sorted(str(root / i) for i in every)
    for split in ("train", "val", "test"):
        part = getattr(bundle, split)
        for index, name in enumerate(part.ids):
            image, _ = part[index]
            np.testing.assert_array_equal(image.numpy(),
                                          load_prepared(root / name, 32, 3).transpose(2, 0, 1))


def test_a_csv_with_only_a_header_has_no_data_rows(tfx, tmp_path, cache_dir):
    table = tmp_path / "labels.csv"
    table.write_text("path,label\n")
    before = snapshot_tree(tmp_path)
    result = tfx("data", "stats", "--data", "csv", "--data-dir", table)
    assert result.exit_code == 1
    line = result.error_line()
    assert str(table) in line and "no data rows" in line
    assert_tree_unchanged(tmp_path, before)


def test_a_single_class_is_an_error_before_training(tfx, tmp_path):
    data = image_folder(tmp_path / "D", classes=("normal",), per_class=6, size=24)
    before = snapshot_tree(tmp_path)
    result = tfx("fit", "--data", "image-folder", "--data-dir", data, *SMALL_FIT, "--out",
                 tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert "has class 'normal'" in line and "one class" in line
    assert_tree_unchanged(tmp_path, before)


def test_an_empty_class_folder_is_not_silently_dropped(tfx, tmp_path):
    data = image_folder(tmp_path / "D", classes=("mild", "none", "severe"), per_class=6, size=24)
    for image in (data / "mild").iterdir():
        image.unlink()
    before = snapshot_tree(tmp_path)
    result = tfx("fit", "--data", "image-folder", "--data-dir", data, *SMALL_FIT, "--out",
                 tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert f"Class folder {data / 'mild'}/ holds no images" in line and "'mild'" in line
    assert_tree_unchanged(tmp_path, before)


def test_a_csv_listing_an_image_twice_names_the_rows(tfx, tmp_path):
    data = image_folder(tmp_path / "D", per_class=6, size=24)
    rows = [f"normal/{i}.png,normal" for i in range(6)] + \
        [f"sick/{i}.png,sick" for i in range(6)] + ["./normal/2.png,sick"]
    manifest = data / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    before = snapshot_tree(tmp_path)
    result = tfx("fit", "--data", "csv", "--data-dir", manifest, "--image-size", "16",
                 "--batch-size", "4", "--steps", "1", "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert f"{manifest} line 14" in line and "listed twice (first on line 4)" in line
    assert_tree_unchanged(tmp_path, before)
