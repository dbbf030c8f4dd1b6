"""`tfx filters` (models/filters.py): the grid's format follows --out's suffix."""

from __future__ import annotations

from tree_snapshot import assert_tree_unchanged, snapshot_tree


def test_filters_out_suffix_names_the_format(tfx, tiny_run, tmp_path):
    best = tiny_run / "checkpoints" / "best.pt"
    result = tfx("filters", best, "--out", tmp_path / "f.jpg")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "f.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes
    before = snapshot_tree(tmp_path)
    result = tfx("filters", best, "--out", tmp_path / "f.bmp")
    assert result.exit_code == 1 and ".bmp" in result.error_line()
    assert_tree_unchanged(tmp_path, before)
