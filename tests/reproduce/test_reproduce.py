"""`tfx reproduce` without training: profiles, plan expansion, claim settings, the report (the
claim rules: tests/reproduce/test_claim_*.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce.expand import source_sweeps, target_sweeps
from transfusion_cli.reproduce.study import (
    PARTS,
    load_study,
    parse_data_dirs,
    parse_only,
    parse_study,
    profile_path,
)


def test_builtin_profiles_are_package_files_with_every_part():
    for name in ("smoke", "paper", "medmnist"):
        assert profile_path(name).is_file()
        # the pipeline check leaves out Table 2 (synthetic-chest learns too slowly for it)
        expected = [p for p in PARTS if name != "smoke" or p != "table2"]
        assert load_study(name).part_names() == expected
    setup = (Path(__file__).parents[2] / "setup.py").read_text()
    assert '"transfusion_cli.reproduce": ["profiles/*.yaml",' in setup  # shipped in the wheel
    assert '"paper_evidence.json"]' in setup  # `tfx reproduce --judge paper`


def test_smoke_profile_expands_to_shared_deduplicated_cells(tmp_path):
    study = load_study("smoke")
    parts = study.part_names()
    sources = source_sweeps(study, parts)
    # The stand-in: each architecture trained once on the source dataset.
    assert {n: len(s.cell_ids()) for n, s in sources.items()} == {"source-synthetic-retina": 2}
    # The stand-in's own fit settings (weight decay gives it a scale of its own) reach its runs.
    source = sources["source-synthetic-retina"]
    assert source.fit["weight_decay"] == 0.05 and source.fit["steps"] == 300
    targets = target_sweeps(study, parts, tmp_path, {})
    # Table 3 has its own fit settings (fewer evaluations), hence its own sweep.
    little = next(name for name in targets if name != "retina")
    assert set(targets) == {"retina", little} and little.startswith("retina-")
    retina = targets["retina"]
    assert {p: len(retina.part_cells(p)) for p in parts if p != "table3"} == {
        "table1": 20, "convergence": 20, "representations": 20}
    assert len(targets[little].part_cells("table3")) == 10
    assert targets[little].fit["eval_every"] == 20 and retina.fit["eval_every"] == 4
    # convergence's random / pretrained runs and all representation runs are table1's.
    assert len(retina.cell_ids()) == 20 + 10
    assert set(retina.part_cells("representations")) == set(retina.part_cells("table1"))
    pretrained = [r for r in retina.requests if r.label == "pretrained"]
    assert pretrained and all(r.init.startswith("checkpoint:") and "source-synthetic-retina" in
                              r.init for r in pretrained)
    assert {r.weights for r in retina.requests if r.label == "transfusion:block2"} == {
        pretrained[0].weights}


def test_paper_profile_asks_for_cbr_weights_with_the_recipe(tmp_path):
    study = load_study("paper")
    with pytest.raises(ConfigError, match="pretraining recipe.*reproduce-the-paper"):
        target_sweeps(study, ["table1"], tmp_path, {})
    study.weights.update({a: f"/w/{a}.pt" for a in study.roles["small"]})
    targets = target_sweeps(study, study.part_names(), tmp_path, {})
    retina = targets["retina"]
    assert len(retina.part_cells("table1")) == 6 * 2 * 3
    assert len(retina.part_cells("table3")) == 3 * 2 * 3
    # resnet50: 8 inits, cbr-large-w: 6, resnet50-slim: 1, 3 seeds each
    assert len(retina.part_cells("convergence")) == (8 + 6 + 1) * 3
    assert len(targets["chexpert"].part_cells("table2")) == 5 * 2 * 3
    assert not source_sweeps(study, study.part_names())  # real weights: no stand-in


def test_profile_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'part'"):
        parse_study({"part": {}}, "x.yaml")
    with pytest.raises(ConfigError, match="unknown part 'table9'"):
        parse_study({"datasets": {"r": {"data": "synthetic-retina"}},
                     "parts": {"table9": {"dataset": "r", "archs": ["cbr-tiny"]}}}, "x.yaml")
    with pytest.raises(ConfigError, match="no such profile"):
        load_study(tmp_path / "missing.yaml")
    study = load_study("smoke")
    with pytest.raises(ConfigError, match="unknown part"):
        parse_only("table1,tabel2", study)
    assert parse_only("convergence,table1", study) == ["table1", "convergence"]
    with pytest.raises(ConfigError, match="not one of the study's datasets"):
        parse_data_dirs(f"eyepacs={tmp_path}", study)
    assert parse_data_dirs(f"retina={tmp_path}", study) == {"retina": str(tmp_path.resolve())}


def test_profile_claims_settings_are_checked():
    study = parse_study({"claims": {"margin_comparable": 0.02}}, "x.yaml")
    assert study.claims.margin_comparable == 0.02 and study.claims.margin_transfer == 0.01
    with pytest.raises(ConfigError, match="unknown claims setting 'margin'"):
        parse_study({"claims": {"margin": 0.01}}, "x.yaml")
    with pytest.raises(ConfigError, match="must be a non-negative number"):
        parse_study({"claims": {"alpha": "high"}}, "x.yaml")


def test_html_report_is_self_contained(tmp_path):
    from transfusion_cli.reproduce.report import markdown_to_html

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf"
                           "DwAChwGA60e6kgAAAABJRU5ErkJggg==")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f.png").write_bytes(png)
    text = "# T\n\n| a | b |\n|---|---|\n| 1 | `x` |\n\n![fig](figures/f.png)\n"
    page = markdown_to_html(text, tmp_path, "T", figures=[tmp_path / "figures" / "f.png"])
    assert "data:image/png;base64," in page and "figures/f.png" not in page
    assert "<td><code>x</code></td>" in page and "<h1>T</h1>" in page
