"""The smoke profile is a pipeline check (every verdict says so), and the medmnist profile: real
MedMNIST files given as a folder or a file, stand-ins trained on the study's other dataset,
and timm's ImageNet weights where they can be had (never downloaded here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce import expand
from transfusion_cli.reproduce.claims import judge
from transfusion_cli.reproduce.evidence_format import parse_evidence
from transfusion_cli.reproduce.expand import pretrained_source, source_sweeps, target_sweeps
from transfusion_cli.reproduce.study import load_study, parse_data_dirs, parse_study
from transfusion_cli.reproduce.verdict_report import rich_table, verdict_section
from transfusion_cli.reproduce.verdicts import PIPELINE_SCOPE, ClaimSettings

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmnist"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """Nothing here may reach the network: downloads off, an empty weights folder, and the
    per-process memo of which weights exist cleared."""
    monkeypatch.setenv("TFX_OFFLINE", "1")
    monkeypatch.setenv("TFX_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(expand, "_PUBLIC", {})


def test_smoke_is_a_pipeline_check_under_both_names():
    smoke, alias = load_study("smoke"), load_study("pipeline-check")
    assert smoke.pipeline_check and alias.pipeline_check
    assert smoke.parts.keys() == alias.parts.keys()
    assert not load_study("paper").pipeline_check and not load_study("medmnist").pipeline_check
    # The pipeline check learns with enough seeds for the claim tests to decide.
    assert all(part.seeds >= 3 for part in smoke.parts.values())


def test_purpose_is_checked():
    with pytest.raises(ConfigError, match="purpose"):
        parse_study({"name": "x", "purpose": "proof"}, "p.yaml")


def minimal_evidence(purpose: str | None) -> dict:
    arm = {"labels": {"referable": {"seeds": [{"seed": s, "value": v} for s, v in
                                              enumerate([0.95, 0.951, 0.949])]}}}
    document = {"format": "tfx-evidence", "version": 1, "title": "t",
                "roles": {"standard": ["a"], "small": []},
                "parts": {"table1": {"dataset": "d", "metric": "referable_auc",
                                     "split": "test",
                                     "arms": [{"arch": "a", "init": "random", **arm},
                                              {"arch": "a", "init": "pretrained", **arm}]}}}
    if purpose:
        document["purpose"] = purpose
    return document


def test_every_verdict_of_a_pipeline_check_says_so():
    verdicts = judge(parse_evidence(minimal_evidence("pipeline-check"), "e.json"))
    assert len(verdicts) == 8
    assert all(v.line().startswith(f"[{PIPELINE_SCOPE}] ") for v in verdicts)
    table = [line for line in verdict_section(verdicts, ClaimSettings())
             if line.startswith("| C")]
    assert len(table) == 8 and all(PIPELINE_SCOPE in line for line in table)
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(rich_table(verdicts, "v"))
    assert console.export_text().count("pipeline check") >= 8
    # A reproduction's verdicts carry no such note.
    plain = judge(parse_evidence(minimal_evidence(None), "e.json"))
    assert not any(v.scope or "pipeline" in v.line() for v in plain)


def test_medmnist_profile_plans_real_files_and_cross_dataset_stand_ins(tmp_path):
    study = load_study("medmnist")
    assert study.roles == {"standard": ["resnet18"], "small": ["cbr-tiny"]}
    folder = tmp_path / "medmnist"
    folder.mkdir()
    dirs = parse_data_dirs(f"retina={folder},pneumonia={folder}", study)
    parts = study.part_names()
    sources = source_sweeps(study, parts, dirs)
    # Offline and without a weights file, both architectures get a stand-in trained on the
    # other real dataset (its data, options and folder), never on a synthetic one.
    assert set(sources) == {"source-pneumonia", "source-retina"}
    pneumonia = sources["source-pneumonia"]
    assert pneumonia.data == "medmnist"
    assert pneumonia.fit["options"] == {"subset": "pneumoniamnist"}
    assert pneumonia.fit["data_dir"] == str(folder.resolve())
    assert {r.arch for r in pneumonia.requests} == {"resnet18", "cbr-tiny"}
    targets = target_sweeps(study, parts, tmp_path / "out", dirs)
    retina = targets["retina"]
    pretrained = [r for r in retina.requests if r.label == "pretrained"]
    assert pretrained and all("source-pneumonia" in r.init for r in pretrained)
    # The convergence part names the paper's lowest blocks (C8) on ResNet18's stem / blocks.
    assert {r.init for r in retina.requests if r.part == "convergence"} >= {
        "transfusion:stem", "transfusion:block1", "transfusion:block2", "mean-var", "gabor"}


def test_public_imagenet_weights_replace_the_stand_in_when_present(tmp_path, monkeypatch):
    study = load_study("medmnist")
    weights = Path(tmp_path / "weights")
    weights.mkdir()
    (weights / "resnet18.tv_in1k.safetensors").write_bytes(b"")  # found by name, not read here
    init, path = pretrained_source(tmp_path / "out", study, "retina", "resnet18")
    assert (init, path) == ("imagenet", "")
    init, _ = pretrained_source(tmp_path / "out", study, "retina", "cbr-tiny")
    assert init.startswith("checkpoint:")  # no public weights for the CBRs
    sources = source_sweeps(study, study.part_names(), {})
    assert {r.arch for s in sources.values() for r in s.requests} == {"cbr-tiny"}


def test_offline_without_weights_the_stand_in_is_used_and_the_reason_kept(tmp_path):
    study = load_study("medmnist")
    init, _ = pretrained_source(tmp_path / "out", study, "retina", "resnet18")
    assert init.startswith("checkpoint:")
    found, why = expand.public_weights("resnet18")
    assert not found and "downloads are off" in why and "resnet18.tv_in1k" in why


def test_data_dir_may_name_a_file_and_must_exist(tmp_path):
    study = load_study("medmnist")
    npz = tmp_path / "retinamnist_64.npz"
    npz.write_bytes(b"PK")
    assert parse_data_dirs(f"retina={npz}", study) == {"retina": str(npz.resolve())}
    with pytest.raises(ConfigError, match="no such folder or file"):
        parse_data_dirs(f"retina={tmp_path / 'nothing'}", study)


def test_medmnist_finds_the_one_size_variant_in_a_folder(tmp_path):
    from tfx_plugins.datasets.medmnist import locate

    from transfusion_cli.errors import DataError

    (tmp_path / "retinamnist_64.npz").write_bytes(b"")
    (tmp_path / "pneumoniamnist.npz").write_bytes(b"")
    assert locate(tmp_path, "retinamnist").name == "retinamnist_64.npz"
    (tmp_path / "retinamnist_128.npz").write_bytes(b"")
    with pytest.raises(DataError, match="several sizes.*subset=retinamnist_128"):
        locate(tmp_path, "retinamnist")
    (tmp_path / "retinamnist.npz").write_bytes(b"")  # the 28 px file is the plain name
    assert locate(tmp_path, "retinamnist").name == "retinamnist.npz"


TINY_MEDMNIST = """
name: tiny-medmnist
datasets:
  retina: {data: medmnist, options: {subset: retinamnist}}
  pneumonia: {data: medmnist, options: {subset: pneumoniamnist}}
fit: {steps: 2, eval_every: 2, batch_size: 4, scheduler: constant, augment: none}
pretrained:
  stand_in:
    data: {retina: pneumonia, pneumonia: retina}
roles: {standard: [cbr-tiny], small: []}
parts:
  table1: {dataset: retina, archs: [cbr-tiny], inits: [random, pretrained], seeds: 1}
"""


@pytest.mark.skipif(not (SHARED / "retinamnist_fixture.npz").is_file(),
                    reason="../shared/data/medmnist is absent")
def test_a_medmnist_study_runs_on_real_files(tfx, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SHARED / "retinamnist_fixture.npz", data / "retinamnist.npz")
    shutil.copy(SHARED / "pneumoniamnist_fixture.npz", data / "pneumoniamnist.npz")
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY_MEDMNIST)
    out = tmp_path / "study"
    result = tfx("reproduce", "--profile", str(profile), "-o", str(out),
                 "--data-dir", f"retina={data},pneumonia={data}")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert (out / "sweeps" / "source-pneumonia" / "done").is_dir()  # the stand-in's source
    report = (out / "report.md").read_text()
    assert "STAND-IN, not ImageNet" in report and "subset=pneumoniamnist" in report
    assert "pipeline check" not in result.stdout


def test_representations_probe_split_is_a_profile_key():
    base = {"datasets": {"r": {"data": "synthetic-retina"}}}
    study = parse_study({**base, "parts": {"representations": {
        "dataset": "r", "archs": ["cbr-tiny"], "split": "train", "samples": 100}}}, "p.yaml")
    assert study.parts["representations"].split == "train"
    assert load_study("medmnist").parts["representations"].split == "train"
    with pytest.raises(ConfigError, match="split"):
        parse_study({**base, "parts": {"representations": {
            "dataset": "r", "archs": ["cbr-tiny"], "split": "holdout"}}}, "p.yaml")
