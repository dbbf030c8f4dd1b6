"""`tfx export` with long output names: the report's name is checked before any work, and a
240-character name writes the model, its report and its card."""

from __future__ import annotations

import pytest
from tree_snapshot import assert_tree_unchanged, snapshot_tree


def test_export_refuses_a_report_name_too_long_before_any_work(tfx, tiny_run, tmp_path):
    from transfusion_cli.io import name_max

    # model.onnx fits the limit but model.export.json does not: refused up front.
    out = tmp_path / ("m" * (name_max(tmp_path) - len(".onnx")) + ".onnx")
    before = snapshot_tree(tmp_path)
    result = tfx("export", tiny_run / "checkpoints" / "best.pt", "--out", out)
    assert result.exit_code == 1
    assert "report" in result.error_line().lower() and "shorter name" in result.stderr
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.slow
def test_export_with_a_240_character_name_writes_model_report_and_card(tfx, tiny_run, tmp_path):
    out = tmp_path / ("m" * 235 + ".onnx")
    result = tfx("export", tiny_run / "checkpoints" / "best.pt", "--out", out)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([out.name, out.with_suffix(".export.json").name,
                           out.with_suffix(".MODEL_CARD.md").name])
