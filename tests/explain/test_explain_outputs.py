"""`tfx explain` writes one overlay per image and method, never one over another, and an image
it cannot read is listed while the others are still explained (issue 20, items 13 and 22)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from explain_helpers import noise_png
from fit_helpers import one_thread
from tree_snapshot import snapshot_tree, tree_changes

METHODS = ("gradcam", "gradcam++")


@pytest.fixture
def explain(tfx):
    """`tfx explain ARGS` in this process, torch on one thread: a CliResult."""
    def run(*args):
        with one_thread():
            return tfx("explain", *args)
    return run


def test_images_with_the_same_name_get_their_own_overlays(explain, explain_checkpoint, tmp_path):
    """Item 13: left/eye.png and right/eye.png wrote one eye.gradcam.png and reported two."""
    left = noise_png(tmp_path / "left" / "eye.png", seed=1)
    right = noise_png(tmp_path / "right" / "eye.png", seed=2)
    upper = noise_png(tmp_path / "upper" / "EYE.png", seed=3)  # case-insensitive file systems
    out = tmp_path / "h"
    before = snapshot_tree(tmp_path)
    result = explain(explain_checkpoint, left, right, upper, "--out", out, "--json")
    result.check()
    results = json.loads(result.stdout)
    assert [r["image"] for r in results] == [str(left), str(right), str(upper)]
    reported = [r["files"][m] for r in results for m in METHODS]
    expected = [str(out / f"{stem}.{m}.png") for stem in ("eye", "eye-2", "EYE-3")
                for m in METHODS]
    assert reported == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(p.rsplit("/", 1)[1] for p in expected)
    # Every reported overlay is that image's own: the three inputs differ, so do the PNGs.
    contents = {(out / name).read_bytes() for name in (f"{s}.gradcam.png"
                                                        for s in ("eye", "eye-2", "EYE-3"))}
    assert len(contents) == 3
    changes = tree_changes(before, snapshot_tree(tmp_path))
    assert sorted(changes) == sorted(["added h", *(f"added h/{p.rsplit('/', 1)[1]}"
                                                   for p in expected)])


def test_an_unreadable_image_is_listed_and_the_others_are_explained(explain, explain_checkpoint,
                                                                    tmp_path):
    """Item 22: explain stopped at the first unreadable image and listed nothing it wrote."""
    first = noise_png(tmp_path / "first.png", seed=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    last = noise_png(tmp_path / "last.png", seed=2)
    out = tmp_path / "h"
    before = snapshot_tree(tmp_path)
    result = explain(explain_checkpoint, first, broken, missing, last, "--out", out)
    assert result.exit_code == 1
    line = result.error_line()
    assert "2 of 4 images could not be explained" in line and "the other 2 were" in line
    failed = [row for row in result.stderr.splitlines() if row.startswith("failed: ")]
    assert len(failed) == 2 and str(broken) in failed[0] and str(missing) in failed[1]
    written = [out / f"{stem}.{m}.png" for stem in ("first", "last") for m in METHODS]
    assert "wrote 4 heatmap(s)" in result.stderr
    for path in written:  # the summary names every file written
        assert str(path) in result.stdout
    changes = tree_changes(before, snapshot_tree(tmp_path))
    assert sorted(changes) == sorted(["added h", *(f"added h/{p.name}" for p in written)])


def test_failures_are_in_the_json_too(explain, explain_checkpoint, tmp_path):
    good = noise_png(tmp_path / "good.png", seed=4)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = explain(explain_checkpoint, broken, good, "--out", tmp_path / "h",
                                "--json")
    assert result.exit_code == 1
    assert "1 of 2 images could not be explained" in result.error_line()
    failed, explained = json.loads(result.stdout)
    assert set(failed) == {"image", "error"} and str(broken) in failed["error"]
    assert explained["image"] == str(good) and sorted(explained["files"]) == sorted(METHODS)


def test_nothing_readable_writes_nothing(explain, explain_checkpoint, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    before = snapshot_tree(tmp_path)
    result = explain(explain_checkpoint, broken, "--out", tmp_path / "h")
    assert result.exit_code == 1
    assert "1 of 1 images could not be explained" in result.error_line()
    assert tree_changes(before, snapshot_tree(tmp_path)) == []


def test_an_out_that_is_a_file_is_refused_before_the_work(explain, explain_checkpoint, tmp_path,
                                                          monkeypatch):
    from transfusion_cli.evaluation import explain as library

    def no_work(*_args, **_kwargs):
        raise AssertionError("explained before checking --out")

    monkeypatch.setattr(library, "explain_images", no_work)
    image = noise_png(tmp_path / "eye.png", seed=1)
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    before = snapshot_tree(tmp_path)
    result = explain(explain_checkpoint, image, "--out", out)
    assert result.exit_code == 1 and f"--out {out} is a file" in result.error_line()
    assert tree_changes(before, snapshot_tree(tmp_path)) == []


def test_explain_checks_inputs_exactly_as_predict_does(explain, explain_checkpoint, tmp_path):
    """Item 14: explain refuses what predict refuses (a grayscale photo for a colour model) and
    gives predict's warnings (far-off aspect, tiny input, the synthetic-data model)."""
    import numpy as np
    from PIL import Image

    from transfusion_cli.deploy.input_checks import image_warnings
    from transfusion_cli.models.checkpoint import checkpoint_dataset_info, load_checkpoint

    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(gray)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (1, 2000, 3), np.uint8)).save(wide)
    result = explain(explain_checkpoint, gray, wide, "--out", tmp_path / "h", "--json")
    assert result.exit_code == 1
    assert result.error_line().startswith("Error: 1 of 2 images could not be explained")
    records = {r["image"]: r for r in json.loads(result.stdout)}
    assert "grayscale (1-channel)" in records[str(gray)]["error"]
    info = checkpoint_dataset_info(load_checkpoint(explain_checkpoint))
    with Image.open(wide) as image:
        expected = image_warnings(image, info.image_size, info.channels, info.name)
    warnings = records[str(wide)]["warnings"]
    assert expected and all(w in warnings for w in expected)
    assert any("synthetic data" in w for w in warnings)


def test_overlays_never_replace_a_png_tfx_did_not_draw(explain, explain_checkpoint, tmp_path):
    """A user's eye.gradcam.png in --out is refused before the work and kept; the overlays tfx
    drew there are replaced when explained again."""
    image = noise_png(tmp_path / "eye.png", seed=1)
    out = tmp_path / "h"
    explain(explain_checkpoint, image, "--out", out).check()
    explain(explain_checkpoint, image, "--out", out).check()  # its own PNGs: replaced
    mine = out / "eye.gradcam.png"
    noise_png(mine, seed=5)  # now a PNG the user made
    before = snapshot_tree(tmp_path)
    result = explain(explain_checkpoint, image, "--out", out)
    assert result.exit_code == 1
    assert f"--out {mine} exists and was not written by tfx" in result.error_line()
    assert tree_changes(before, snapshot_tree(tmp_path)) == []


def test_the_overlay_writer_itself_never_replaces_a_foreign_file(tmp_path):
    from transfusion_cli.deploy.overlays import OverlayText, overlay_png, write_overlay
    from transfusion_cli.outputs import NotMadeByTfxError, png_made_by_tfx

    png = overlay_png(np.zeros((16, 16, 3), np.uint8), np.ones((4, 4)), OverlayText("t", "c"),
                      1.0)
    ours, theirs = tmp_path / "a.heatmap.png", tmp_path / "b.heatmap.png"
    write_overlay(ours, png, "--heatmaps")
    assert png_made_by_tfx(ours) and ours.read_bytes() == png
    write_overlay(ours, png, "--heatmaps")  # tfx's own: replaced
    theirs.write_bytes(b"not tfx's")
    with pytest.raises(NotMadeByTfxError, match="not written by tfx"):
        write_overlay(theirs, png, "--heatmaps")
    assert theirs.read_bytes() == b"not tfx's" and not png_made_by_tfx(theirs)
