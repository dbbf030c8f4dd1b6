"""The output guard knows every file and folder a dataset reads, whichever way the dataset was
named: ``--data-dir``, the folder a checkpoint recorded, ``$TFX_DATA_DIR`` for an exported
model, a CSV manifest's image root, images a CSV lists by absolute path, class folders that
are symlinks (issue 20 item 1). Each refusal comes before any work and changes nothing."""

from __future__ import annotations

import csv
import shutil

import pytest
from fit_helpers import one_thread
from input_files import image_folder
from safety_helpers import assert_refused, image_folder_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, data folder, best.pt) of a run trained on an image folder."""
    root = tmp_path_factory.mktemp("guard")
    data, best = image_folder_run(root)
    shutil.copy(data / "sick" / "0.png", root / "photo.png")
    return root, data, best


@pytest.mark.parametrize("command", ["evaluate", "explain", "export", "similarity"])
def test_commands_never_write_into_the_data_a_checkpoint_recorded(trained, command):
    """Item 1: no --data-dir given; the folder recorded in the checkpoint is protected."""
    root, data, best = trained
    inside = data / "normal"
    args = {"evaluate": ["evaluate", best, "--out", inside],
            "explain": ["explain", best, root / "photo.png", "--out", inside / "maps"],
            "export": ["export", best, "-o", inside / "m.onnx"],
            "similarity": ["similarity", best.parent / "init.pt", best, "--plot",
                           inside / "s.png"]}[command]
    line = assert_refused(root, *args, says=f"is inside the dataset folder {data} being read")
    assert str(inside) in line


def test_an_exported_model_protects_the_data_under_tfx_data_dir(tfx, trained):
    """Item 1: an .onnx records no folder; evaluate reads $TFX_DATA_DIR/<dataset> for it."""
    root, data, best = trained
    model = root / "exported" / "m.onnx"
    with one_thread():
        result = tfx("export", best, "-o", model)
    assert result.exit_code == 0, result.stderr
    assert_refused(root, "evaluate", model, "--out", data / "sick",
                   env={"TFX_DATA_DIR": str(data.parent)},
                   says=f"is inside the dataset folder {data} being read")


def test_a_csv_manifests_image_root_and_absolute_paths_are_protected(tmp_path):
    """Item 1: the CSV's `root` option and images it lists by absolute path elsewhere."""
    pictures = image_folder(tmp_path / "pictures", per_class=4, size=24)
    elsewhere = image_folder(tmp_path / "elsewhere", per_class=4, size=24)
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for name in ("normal", "sick"):
            for k in range(4):
                writer.writerow([f"{name}/{k}.png", name])
                writer.writerow([str(elsewhere / name / f"{k}.png"), name])
    base = ["--data", "csv", "--data-dir", manifest, "--option", f"root={pictures}"]
    assert_refused(tmp_path, "data", "save", *base, "--out", pictures / "samples",
                   says=f"is inside the dataset folder {pictures} being read")
    assert_refused(tmp_path, "data", "show", *base, "--out", elsewhere / "sick" / "sheet.png",
                   says=f"is inside the dataset folder {elsewhere / 'sick'} being read")
    assert_refused(tmp_path, "fit", *base, "--arch", "cbr-tiny", "--steps", "1",
                   "--out", manifest.parent,
                   says=f"--out {manifest.parent} contains the dataset folder {manifest}")
    assert_refused(tmp_path, "fit", *base, "--arch", "cbr-tiny", "--steps", "1",
                   "--out", elsewhere / "normal" / "run",
                   says=f"is inside the dataset folder {elsewhere / 'normal'} being read")


def test_a_class_folder_that_is_a_symlink_is_protected_where_it_leads(tmp_path):
    """Item 1: root/<class> -> elsewhere: writing into elsewhere writes into the dataset."""
    real = image_folder(tmp_path / "real", per_class=4, size=24)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("normal", "sick"):
        (data / name).symlink_to(real / name, target_is_directory=True)
    assert_refused(tmp_path, "data", "save", "--data", "image-folder", "--data-dir", data,
                   "--out", real / "normal" / "samples", says="is inside the dataset folder")


def test_a_folder_output_that_is_a_file_is_refused_before_the_work(tmp_path):
    """`data save --out` writes PNGs into a folder: an existing file there is named at once,
    not when the first PNG is written, and stays as it was."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert_refused(tmp_path, "data", "save", "--data", "synthetic-retina", "--out", notes,
                   says=f"--out {notes} is a file; give a folder for the sample PNGs")
    assert notes.read_text() == "mine"


def test_the_guard_refuses_a_file_given_as_an_output_folder(tmp_path):
    from transfusion_cli.outputs import NotMadeByTfxError, OutputFolder, refuse_overwriting_inputs

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(NotMadeByTfxError, match="--maps .*notes.txt is a file; give a folder "
                                                "for the maps"):
        refuse_overwriting_inputs({"--maps": OutputFolder(notes, "the maps")})
    refuse_overwriting_inputs({"--maps": OutputFolder(tmp_path / "new" / "maps")})  # made later
    assert not (tmp_path / "new").exists()
