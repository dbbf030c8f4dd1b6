"""chexpert: the published CSV layout, uncertainty / blank policies, patient split, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import CHEXPERT_COLUMNS, chexpert_value, write_chexpert

from transfusion_cli.data.build import build_dataset
from transfusion_cli.errors import ConfigError, DataError

OBSERVATIONS = CHEXPERT_COLUMNS[5:]
PAPER = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


# Every test starts from an empty image cache (the cache_dir fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory) -> Path:
    return write_chexpert(tmp_path_factory.mktemp("data") / "chexpert")


def expected(ids: list[str], labels: list[str], policy: dict[str, str], blank: str = "negative"
             ) -> np.ndarray:
    """What the policies make of the raw values the fixture wrote, computed independently."""
    rows = []
    for path in ids:
        patient = int(re.search(r"patient(\d+)", path).group(1))
        row = []
        for label in labels:
            raw = chexpert_value(patient, OBSERVATIONS.index(label))
            if raw == "":
                row.append(np.nan if blank == "ignore" else 0.0)
            elif raw == "-1.0":
                row.append({"u-ones": 1.0, "u-zeros": 0.0, "u-ignore": np.nan}[policy[label]])
            else:
                row.append(float(raw))
        rows.append(row)
    return np.array(rows, dtype=np.float32)


def build(chexpert: Path, **options):
    return build_dataset("chexpert", data_dir=chexpert, image_size=32, options=options)


def test_default_is_the_papers_five_with_u_ignore_and_blank_negative(chexpert):
    bundle = build(chexpert)
    info = bundle.info
    assert list(info.class_names) == PAPER and info.task == "multilabel"
    assert info.channels == 1 and info.selection_metric == "mean_auc"
    assert info.options["uncertainty"] == dict.fromkeys(PAPER, "u-ignore")
    assert info.options["blank"] == "negative" and info.options["variant"] == "small"
    ignore = dict.fromkeys(PAPER, "u-ignore")
    for split in (bundle.train, bundle.val):
        np.testing.assert_array_equal(split.labels, expected(split.ids, PAPER, ignore))
    assert np.isnan(bundle.train.labels).any()  # uncertain labels are masked
    image, target = bundle.train[0]
    assert image.shape == (1, 32, 32) and target.shape == (5,)
    np.testing.assert_array_equal(target.numpy(), bundle.train.labels[0])


def test_valid_csv_is_the_test_split_and_train_is_split_by_patient(chexpert):
    bundle = build(chexpert)
    assert all("/valid/" in i for i in bundle.test.ids) and len(bundle.test) == 8
    assert not np.isnan(bundle.test.labels).any()
    patients = {name: {re.search(r"patient\d+", i).group() for i in getattr(bundle, name).ids}
                for name in ("train", "val")}
    assert patients["train"] and patients["val"] and not patients["train"] & patients["val"]
    assert bundle.split_manifest["patients"]["val"] == sorted(patients["val"])


@pytest.mark.parametrize("value, policy", [
    ("u-ones", dict.fromkeys(PAPER, "u-ones")),
    ("u-zeros", dict.fromkeys(PAPER, "u-zeros")),
    ("Edema=u-ones,Atelectasis=u-zeros",
     {**dict.fromkeys(PAPER, "u-ignore"), "Edema": "u-ones", "Atelectasis": "u-zeros"}),
    ("u-zeros, pleural_effusion=u-ones",
     {**dict.fromkeys(PAPER, "u-zeros"), "Pleural Effusion": "u-ones"}),
    ({"Edema": "u-ones", "default": "u-zeros"},
     {**dict.fromkeys(PAPER, "u-zeros"), "Edema": "u-ones"}),
])
def test_uncertainty_policies(chexpert, value, policy):
    bundle = build(chexpert, uncertainty=value)
    assert bundle.info.options["uncertainty"] == policy
    np.testing.assert_array_equal(bundle.train.labels, expected(bundle.train.ids, PAPER, policy))


def test_blank_ignore_frontal_only_and_label_choice(chexpert):
    bundle = build(chexpert, blank="ignore", labels="edema, Pleural_Effusion,Fracture",
                   frontal_only="true")
    labels = ["Edema", "Pleural Effusion", "Fracture"]
    assert list(bundle.info.class_names) == labels
    assert all("frontal" in i for i in bundle.train.ids + bundle.val.ids)
    policy = dict.fromkeys(labels, "u-ignore")
    np.testing.assert_array_equal(bundle.train.labels,
                                  expected(bundle.train.ids, labels, policy, blank="ignore"))
    assert len(build(chexpert, labels="all").info.class_names) == 14


def test_the_csv_folder_itself_works_as_data_dir(chexpert):
    bundle = build_dataset("chexpert", data_dir=chexpert / "CheXpert-v1.0-small", image_size=32)
    assert len(bundle.test) == 8


def test_option_errors(chexpert):
    with pytest.raises(ConfigError, match="unknown label 'Edemaa'.*Did you mean 'Edema'"):
        build(chexpert, labels="Edemaa")
    with pytest.raises(ConfigError, match="unknown policy 'u-maybe'.*u-ignore, u-ones, u-zeros"):
        build(chexpert, uncertainty="u-maybe")
    with pytest.raises(ConfigError, match="'Fracture', which is not among the chosen labels"):
        build(chexpert, uncertainty="Fracture=u-ones")
    with pytest.raises(ConfigError, match="blank='zero'.*negative, ignore"):
        build(chexpert, blank="zero")


def test_missing_data_says_what_and_where(tmp_path):
    with pytest.raises(DataError, match=r"CheXpert-v1\.0-small/train\.csv.*stanfordmlgroup"):
        build_dataset("chexpert")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match=r"x has no CheXpert-v1\.0-small/train\.csv"):
        build_dataset("chexpert", data_dir=tmp_path / "x")


def rewrite_value(csv_path: Path, line: int, column: str, value: str) -> None:
    lines = csv_path.read_text().splitlines()
    fields = lines[line - 1].split(",")
    fields[CHEXPERT_COLUMNS.index(column)] = value
    lines[line - 1] = ",".join(fields)
    csv_path.write_text("\n".join(lines) + "\n")


def test_bad_value_names_line_and_column(tmp_path):
    root = write_chexpert(tmp_path / "c", patients=6)
    rewrite_value(root / "CheXpert-v1.0-small" / "train.csv", 4, "Edema", "2.0")
    with pytest.raises(DataError, match=r"train\.csv line 4, column 'Edema': value '2\.0' is not "
                                        r"1\.0, 0\.0, -1\.0 or blank"):
        build_dataset("chexpert", data_dir=root, image_size=32)


def test_label_never_positive_in_train_is_an_error(tmp_path):
    root = write_chexpert(tmp_path / "c", patients=8)
    csv_path = root / "CheXpert-v1.0-small" / "train.csv"
    for line in range(2, len(csv_path.read_text().splitlines()) + 1):
        rewrite_value(csv_path, line, "Edema", "0.0")
    with pytest.raises(DataError, match="Label 'Edema' has no positive images in the train "
                                        "split of 'chexpert'.*--option labels="):
        build_dataset("chexpert", data_dir=root, image_size=32)


def test_missing_column_in_valid_csv(tmp_path):
    root = write_chexpert(tmp_path / "c", patients=6)
    valid = root / "CheXpert-v1.0-small" / "valid.csv"
    valid.write_text(valid.read_text().replace("Pleural Effusion", "Pleural Efusion", 1))
    with pytest.raises(DataError, match=r"valid\.csv has no observation column 'Pleural "
                                        r"Effusion'.*Did you mean 'Pleural Efusion'"):
        build_dataset("chexpert", data_dir=root, image_size=32)
