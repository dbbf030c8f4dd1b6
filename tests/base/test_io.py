"""Writing files (transfusion_cli/io.py): temp names within the file-name limit, a folder
given for a file output refused, and the clean-up of temp files that killed processes left."""

from __future__ import annotations

import os
from pathlib import Path

from input_files import dead_pid
from tree_snapshot import assert_tree_unchanged, snapshot_tree


def test_a_folder_given_for_a_file_output_is_refused(tfx, tiny_run, tmp_path):
    folder = tmp_path / "grid.png"
    folder.mkdir()
    before = snapshot_tree(tmp_path)
    result = tfx("filters", tiny_run / "checkpoints" / "best.pt", "--out", folder)
    assert result.exit_code == 1 and "is a folder" in result.error_line()
    assert str(folder) in result.stderr
    result = tfx("export", tiny_run / "checkpoints" / "best.pt", "--out", tmp_path)
    assert result.exit_code == 1 and "is a folder" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_temp_names_fit_the_file_name_limit(tmp_path):
    from transfusion_cli.io import name_max, write_text

    name = "r" * (name_max(tmp_path) - 5) + ".json"  # as long as the file system allows
    write_text(tmp_path / name, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_stale_temp_files_of_dead_processes_are_cleaned(tfx, tiny_run, tmp_path):
    pid = dead_pid()
    out = tmp_path / "figures"
    out.mkdir()
    stale_file = out / f".tfx-{pid}-0123abcd.f.png.tmp"
    stale_dir = out / f".tfx-export-{pid}-89abcdef"
    live_file = out / f".tfx-{os.getpid()}-0123abcd.f.png.tmp"  # a running process: kept
    foreign = [out / ".f.png.tmp", out / ".tfx-notes.tmp", out / "mine.tmp"]  # not tfx's: kept
    stale_file.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "model.fp32.onnx").write_bytes(b"half")
    for path in [live_file, *foreign]:
        path.write_text("keep")
    result = tfx("filters", tiny_run / "checkpoints" / "best.pt", "--out", out / "f.png")
    assert result.exit_code == 0, result.stderr
    assert not stale_file.exists() and not stale_dir.exists()
    assert live_file.exists() and all(p.exists() for p in foreign)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [live_file.name, "f.png", *(p.name for p in foreign)])


def test_temp_pattern_matches_only_tfx_names():
    """The clean-up removes only names tfx itself makes."""
    from transfusion_cli.io import TEMP_PATTERN, temp_name

    assert TEMP_PATTERN.match(temp_name("model.onnx", Path(".")))
    assert TEMP_PATTERN.match(temp_name("", Path("."), "export"))
    for name in (".model.onnx.tmp", ".tfx-abc-0123abcd.x.tmp", ".tfx-12-0123abcd.x", "x.tmp"):
        assert not TEMP_PATTERN.match(name), name
