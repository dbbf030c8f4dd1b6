"""No command writes over one of its inputs or into the data it reads: the output guard
(transfusion_cli/outputs.py) through each command."""

from __future__ import annotations

from fit_helpers import copy_run
from input_files import image_folder
from tree_snapshot import assert_tree_unchanged, snapshot_tree


def test_filters_never_writes_over_its_checkpoint(fit_fakes, tfx, fake_retina_run, tmp_path):
    run = copy_run(fake_retina_run, tmp_path)
    best = run / "checkpoints" / "best.pt"
    (tmp_path / "alias.png").symlink_to(best)  # a symlink to the input is the input
    before = snapshot_tree(tmp_path)
    result = tfx("filters", best, "--out", best)
    # (its suffix is refused too)
    assert result.exit_code == 1 and f"--out {best}" in result.error_line()
    alias = tmp_path / "alias.png"
    for args in (["filters", best], ["filters", run / "checkpoints" / "init.pt", "--compare",
                                     best]):
        result = tfx(*args, "--out", alias)
        assert result.exit_code == 1
        assert f"--out {alias} is also an input ({best})" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_similarity_never_plots_over_a_checkpoint(fit_fakes, tfx, fake_retina_run, tmp_path):
    run = copy_run(fake_retina_run, tmp_path)
    a, b = run / "checkpoints" / "init.pt", run / "checkpoints" / "best.pt"
    plot = tmp_path / "plot.png"
    plot.symlink_to(b)
    before = snapshot_tree(tmp_path)
    result = tfx("similarity", a, b, "--plot", b)
    # (its suffix is refused too)
    assert result.exit_code == 1 and f"--plot {b}" in result.error_line()
    result = tfx("similarity", a, b, "--plot", plot)
    assert result.exit_code == 1 and f"--plot {plot} is also an input ({b})" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_predict_never_writes_its_csv_over_an_input(tfx, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not checked: the guard runs before the model is opened")
    images = image_folder(tmp_path / "images", per_class=1, size=24)
    image = images / "normal" / "0.png"
    before = snapshot_tree(tmp_path)
    for csv_path, says in ((image, "is also an input"), (model, "is also an input"),
                           (images / "out.csv", "is inside the dataset folder")):
        folder_or_file = images if csv_path.parent == images else image
        result = tfx("predict", model, folder_or_file, "--csv", csv_path)
        assert result.exit_code == 1
        line = result.error_line()
        assert f"--csv {csv_path}" in line and says in line
    assert_tree_unchanged(tmp_path, before)


def test_data_show_never_writes_into_the_dataset(tfx, tmp_path):
    data = image_folder(tmp_path / "D", per_class=6, size=24)
    before = snapshot_tree(tmp_path)
    for out in (data / "normal" / "x.png", data / "normal" / "0.png"):
        result = tfx("data", "show", "--data", "image-folder", "--data-dir", data, "--out", out)
        assert result.exit_code == 1
        assert f"is inside the dataset folder {data}" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_export_never_writes_over_its_checkpoint_or_into_the_data(fit_fakes, tfx, fake_retina_run,
                                                                  tmp_path):
    run = copy_run(fake_retina_run, tmp_path)
    best = run / "checkpoints" / "best.pt"
    (tmp_path / "model.onnx").symlink_to(best)
    data = image_folder(tmp_path / "D", per_class=1, size=24)
    before = snapshot_tree(tmp_path)
    result = tfx("export", best, "--out", tmp_path / "model.onnx")
    assert result.exit_code == 1
    assert f"--out {tmp_path / 'model.onnx'} is also an input ({best})" in result.error_line()
    result = tfx("export", best, "--out", data / "model.onnx", "--data-dir", data)
    assert result.exit_code == 1 and "is inside the dataset folder" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_fit_never_puts_its_run_inside_or_around_its_data(tfx, tmp_path):
    data = image_folder(tmp_path / "D", per_class=6, size=24)
    before = snapshot_tree(tmp_path)
    for out, says in ((data / "run", "is inside the dataset folder"),
                      (tmp_path, "contains the dataset folder")):
        result = tfx("fit", "--data", "image-folder", "--data-dir", data, "--image-size", "16",
                     "--batch-size", "4", "--steps", "1", "--out", out, "--overwrite")
        assert result.exit_code == 1
        assert says in result.error_line()
    assert_tree_unchanged(tmp_path, before)
