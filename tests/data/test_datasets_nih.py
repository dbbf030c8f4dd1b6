"""nih-cxr14: the real mini set (unquoted-comma header), official lists, patient split, errors."""

from __future__ import annotations

import numpy as np
import pytest
from datasets_fixtures import NIH_FINDINGS, nih_rows, shared_file, write_nih
from tfx_plugins.datasets.nih_cxr14 import index_images, parse_findings

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.preprocess import load_prepared
from transfusion_cli.data.tables import read_table
from transfusion_cli.errors import DataError

MINI_ROWS = {
    "00000001_000.png": "Cardiomegaly", "00000002_000.png": "No Finding",
    "00000003_000.png": "Hernia", "00000005_000.png": "No Finding",
    "00000013_003.png": "Pleural_Thickening", "00027426_000.png": "No Finding",
}


# Every test starts from an empty image cache (the cache_dir fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


def test_real_mini_table_header_quirk_and_findings():
    table = read_table(shared_file("nih_cxr14_mini", "Data_Entry_subset.csv"))
    assert len(table.columns) == 11 and len(table) == 6
    assert table.columns[7:] == ["OriginalImage[Width]", "OriginalImage[Height]",
                                 "OriginalImagePixelSpacing[x]", "OriginalImagePixelSpacing[y]"]
    assert table.column("Image Index") == list(MINI_ROWS)
    assert table.column("OriginalImage[Height]")[0] == "2749"
    matrix = parse_findings(table, list(NIH_FINDINGS))
    for row, finding in enumerate(MINI_ROWS.values()):
        hot = [NIH_FINDINGS[i] for i in np.flatnonzero(matrix[row])]
        assert hot == ([] if finding == "No Finding" else [finding])


def test_real_mini_set_with_all_labels_cannot_train():
    # Six images cannot show every finding in train: a one-line error says which and why.
    with pytest.raises(DataError, match=r"Label 'Atelectasis' has no positive images in the "
                                        r"train split of 'nih-cxr14'.*cannot be learned"):
        build_dataset("nih-cxr14", data_dir=shared_file("nih_cxr14_mini"), image_size=32)


def test_real_mini_images_through_the_loader(tmp_path):
    mini = shared_file("nih_cxr14_mini")
    root = tmp_path / "mini"  # the real files, linked (not copied), plus our own split lists
    root.mkdir()
    (root / "Data_Entry_subset.csv").symlink_to(mini / "Data_Entry_subset.csv")
    (root / "images").symlink_to(mini / "images")
    names = list(MINI_ROWS)
    (root / "train_val_list.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "test_list.txt").write_text("\n".join(names[4:]) + "\n")
    bundle = build_dataset("nih-cxr14", data_dir=root, image_size=32,
                           options={"labels": "cardiomegaly"})
    assert bundle.info.class_names == ("Cardiomegaly",) and bundle.info.channels == 1
    assert sorted(bundle.test.ids) == names[4:]
    assert sorted(bundle.train.ids + bundle.val.ids) == names[:4]
    assert "00000001_000.png" in bundle.train.ids
    for split in (bundle.train, bundle.test):
        for index, name in enumerate(split.ids):
            image, target = split[index]
            expected = load_prepared(mini / "images" / name, 32, 1)
            np.testing.assert_array_equal(image.numpy(), expected.transpose(2, 0, 1))
            assert target.tolist() == [1.0 if MINI_ROWS[name] == "Cardiomegaly" else 0.0]


def test_official_lists_and_patient_split(tmp_path):
    root = write_nih(tmp_path / "nih")
    bundle = build_dataset("nih-cxr14", data_dir=root, image_size=32)
    assert bundle.info.class_names == NIH_FINDINGS and bundle.info.task == "multilabel"
    test_names = (root / "test_list.txt").read_text().split()
    assert sorted(bundle.test.ids) == sorted(test_names)
    patient = {name: p for name, _, p in nih_rows()}
    train_p = {patient[n] for n in bundle.train.ids}
    val_p = {patient[n] for n in bundle.val.ids}
    assert val_p and not train_p & val_p
    assert bundle.info.options["test_split"] == "test_list.txt"
    findings = {name: labels for name, labels, _ in nih_rows()}
    for index, name in enumerate(bundle.train.ids):
        hot = {NIH_FINDINGS[i] for i in np.flatnonzero(bundle.train.labels[index])}
        assert hot == (set() if findings[name] == "No Finding" else
                       set(findings[name].split("|")))


def test_without_lists_the_test_split_is_drawn_by_patient(tmp_path):
    root = write_nih(tmp_path / "nih", official_lists=False)
    bundle = build_dataset("nih-cxr14", data_dir=root, image_size=32,
                           options={"labels": "Cardiomegaly,Effusion", "test_fraction": "0.3"})
    patient = {name: p for name, _, p in nih_rows()}
    groups = [{patient[n] for n in getattr(bundle, s).ids} for s in ("train", "val", "test")]
    assert all(groups) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert bundle.split_manifest["test_fraction"] == 0.3


def test_images_found_however_the_archives_were_unpacked(tmp_path):
    root = write_nih(tmp_path / "nih")
    flat = tmp_path / "nih" / "images_002"
    flat.mkdir()
    (root / "images_001" / "images" / "00000001_000.png").rename(flat / "00000001_000.png")
    found = index_images(root)
    assert found["00000001_000.png"] == flat / "00000001_000.png"
    assert len(found) == len(nih_rows())


def test_unknown_finding_names_the_line(tmp_path):
    rows = nih_rows()
    rows[2] = (rows[2][0], "Cardiomegally|Mass", rows[2][2])
    root = write_nih(tmp_path / "nih", rows=rows)
    with pytest.raises(DataError, match=r"line 4, column 'Finding Labels': unknown finding "
                                        r"'Cardiomegally'"):
        build_dataset("nih-cxr14", data_dir=root, image_size=32)


def test_missing_table_and_images(tmp_path):
    with pytest.raises(DataError, match=r"Data_Entry_2017\.csv.*nihcc\.app\.box\.com"):
        build_dataset("nih-cxr14")
    root = write_nih(tmp_path / "nih")
    (root / "images_001" / "images" / "00000005_000.png").unlink()
    with pytest.raises(DataError, match=r"1 of \d+ images listed in .*Data_Entry_2017_v2020\.csv "
                                        r"are missing.*images_\*\.tar\.gz"):
        build_dataset("nih-cxr14", data_dir=root, image_size=32)
    (root / "Data_Entry_2017_v2020.csv").unlink()
    with pytest.raises(DataError, match="has no Data_Entry_2017"):
        build_dataset("nih-cxr14", data_dir=root, image_size=32)
