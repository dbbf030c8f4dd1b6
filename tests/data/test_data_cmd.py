"""`tfx data show` (contact sheets) and `tfx data stats`, for synthetic and other datasets."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from transfusion_cli.commands import data_cmd  # noqa: F401  (registers `tfx data`)
from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import ArrayImageSplit, DatasetBundle, DatasetInfo
from transfusion_cli.data.contact_sheet import GAP, TITLE_WIDTH, tile_size
from transfusion_cli.errors import ConfigError
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.registry import DatasetSpec

HEADER = 34
SMALL = ["--option", "train_size=40", "--option", "val_size=10", "--option", "test_size=10"]


def expected_height(rows: int, tile: int, caption: int = 0) -> int:
    return HEADER + rows * (tile + caption + GAP) + GAP


def test_retina_contact_sheet_rows_and_tiles(tfx, tmp_path):
    out = tmp_path / "sheets" / "retina.png"
    result = tfx("data", "show", "--data", "synthetic-retina", "--out", out, "--per-class", 3,
                 "--image-size", 32, "--data-seed", 2, *SMALL, check=True)
    assert str(out) in result.stdout
    sheet = np.asarray(Image.open(out).convert("RGB"))
    tile = tile_size(32)
    assert tile == 96
    assert sheet.shape == (expected_height(5, tile), TITLE_WIDTH + 3 * (tile + GAP) + GAP, 3)
    # The first tile of the "grade 0" row is the first grade-0 image, enlarged 3x.
    bundle = build_dataset("synthetic-retina", image_size=32, seed=2,
                           options={"train_size": 40, "val_size": 10, "test_size": 10})
    first = int(np.flatnonzero(bundle.train.labels == 0)[0])
    image = bundle.train[first][0].numpy().transpose(1, 2, 0)
    shown = sheet[HEADER:HEADER + tile, TITLE_WIDTH:TITLE_WIDTH + tile]
    np.testing.assert_array_equal(shown, image.repeat(3, axis=0).repeat(3, axis=1))
    assert not [p for p in out.parent.iterdir() if p.name != "retina.png"]  # no temp files


def test_empty_rows_say_no_examples(tfx, tmp_path):
    out = tmp_path / "grid.png"
    tfx("data", "show", "--data", "synthetic-retina", "--out", out, "--image-size", 32, "--option",
        "grade_frequencies=1,0,0,0,1", *SMALL, "--per-class", 2, check=True)
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    tile = tile_size(32)
    for row in range(5):
        top = HEADER + row * (tile + GAP)
        cell = sheet[top:top + tile, TITLE_WIDTH + tile + GAP:TITLE_WIDTH + 2 * tile + GAP]
        is_empty = row in (1, 2, 3)
        assert (cell.std() < 30) == is_empty, row  # empty rows hold text, not an image


def test_chest_contact_sheet_has_a_row_per_label_and_no_finding(tfx, tmp_path):
    out = tmp_path / "chest.png"
    tfx("data", "show", "--data", "synthetic-chest", "--out", out, "--split", "val", "--per-class",
        2, "--image-size", 48, *SMALL, check=True)
    sheet = Image.open(out)
    assert sheet.height == expected_height(6, tile_size(48), caption=14)


def test_show_rejects_a_missing_test_split(tfx, tmp_path):
    result = tfx("data", "show", "--data", "synthetic-retina", "--split", "test",
                 "--out", tmp_path / "x.png", "--option", "test_size=0")
    assert result.exit_code == ConfigError.exit_code
    assert "no 'test' split" in result.error_line()
    assert not (tmp_path / "x.png").exists()


def test_stats_json_counts_add_up(tfx):
    result = tfx("data", "stats", "--data", "synthetic-chest", "--json", *SMALL, "--option",
                 "uncertain_fraction=0.3", "--option", "uncertainty=u-ignore", check=True)
    stats = json.loads(result.stdout)
    assert stats["task"] == "multilabel" and stats["channels"] == 1 and stats["image_size"] == 64
    assert stats["options"]["uncertainty"] == "u-ignore"
    assert set(stats["splits"]) == {"train", "val", "test"}
    bundle = build_dataset("synthetic-chest", options={
        "train_size": 40, "val_size": 10, "test_size": 10, "uncertain_fraction": 0.3})
    for split, entry in stats["splits"].items():
        labels = bundle.split(split).labels
        assert entry["images"] == len(labels)
        masked = 0
        for k, name in enumerate(stats["classes"]):
            counts = entry["labels"][name]
            assert counts["positive"] + counts["negative"] + counts["masked"] == len(labels)
            assert counts["positive"] == int((labels[:, k] == 1).sum())
            masked += counts["masked"]
        assert masked == int(np.isnan(labels).sum()) > 0


def test_stats_json_for_retina_and_table_output(tfx):
    stats = json.loads(tfx("data", "stats", "--data", "synthetic-retina", "--json", *SMALL,
                           check=True).stdout)
    for entry in stats["splits"].values():
        assert sum(entry["classes"].values()) == entry["images"]
        assert entry["referable"] == sum(list(entry["classes"].values())[2:])
    assert stats["splits"]["train"]["images"] == 40 and stats["referable_threshold"] == 2
    table = tfx("data", "stats", "--data", "synthetic-retina", *SMALL, check=True).stdout
    assert "2-moderate" in table and "referable (>= 2)" in table and "train_size=40" in table


def test_bad_option_is_a_config_error(tfx):
    result = tfx("data", "stats", "--data", "synthetic-chest", "--option", "uncertainty=maybe")
    assert result.exit_code == ConfigError.exit_code
    assert "uncertainty" in result.error_line()


class FakeDatasets:
    """A binary and a multi-class dataset that are not synthetic-*: the commands are generic."""

    @staticmethod
    def build_binary(options):
        rng = np.random.default_rng(options.seed)
        images = rng.integers(0, 255, (12, 16, 16, 1), dtype=np.uint8)
        labels = np.array([0.0] * 9 + [1.0] * 3, np.float32)
        info = DatasetInfo(name="fake-binary", task="binary", class_names=("pneumonia",),
                           channels=1, image_size=16, mean=(0.5,), std=(0.25,))
        return DatasetBundle(info, ArrayImageSplit(images, labels, "binary"),
                             ArrayImageSplit(images[:4], labels[:4], "binary"))

    @hookimpl
    def tfx_register_datasets(self, register):
        register(DatasetSpec("fake-binary", self.build_binary, default_image_size=16))


def test_commands_work_for_other_datasets(tfx, fake_registry, tmp_path):
    fake_registry(FakeDatasets())
    out = tmp_path / "binary.png"
    tfx("data", "show", "--data", "fake-binary", "--out", out, "--per-class", 4, check=True)
    sheet = Image.open(out)
    tile = tile_size(16)
    assert sheet.height == expected_height(2, tile)
    stats = json.loads(tfx("data", "stats", "--data", "fake-binary", "--json", check=True).stdout)
    assert stats["splits"]["train"]["classes"] == {"not pneumonia": 9, "pneumonia": 3}
    assert stats["splits"]["val"]["classes"] == {"not pneumonia": 4, "pneumonia": 0}
    assert "test" not in stats["splits"]
    # The empty "pneumonia" row of the val split still renders.
    tfx("data", "show", "--data", "fake-binary", "--split", "val", "--out", out, check=True)


def test_unknown_dataset_is_one_line_with_a_suggestion(tfx, tmp_path):
    result = tfx.subprocess("data", "show", "--data", "synthetic-retna", "--out",
                            str(tmp_path / "x.png"), env={"TFX_DEBUG": "0"})
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: Unknown dataset 'synthetic-retna'. Did you mean "
                                     "'synthetic-retina'? See `tfx list datasets`.")
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


def test_bad_option_on_the_command_line_is_one_line(tfx):
    result = tfx("data", "stats", "--data", "synthetic-retina", "--option", "val_size=none")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "val_size='none' must be an integer >= 1" in lines[0]
