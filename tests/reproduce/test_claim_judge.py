"""Judging whole evidence files: the paper's own numbers (shipped) pass every claim they cover;
chance-level and seed-noise-only evidence is inconclusive on every claim; a clear contrary
effect is inconsistent; the file format's errors and `tfx reproduce --judge`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from claims_helpers import (
    NULL_SIMILARITY,
    PAPER_LIKE_SIMILARITY,
    document,
    full_document,
)

from transfusion_cli.errors import DataError
from transfusion_cli.reproduce import paper_numbers
from transfusion_cli.reproduce.claims import judge, judge_file
from transfusion_cli.reproduce.evidence_format import (
    load_evidence,
    paper_evidence_path,
    parse_evidence,
)
from transfusion_cli.reproduce.verdicts import (
    CALIBRATED,
    CONSISTENT,
    INCONCLUSIVE,
    INCONSISTENT,
    NOT_RUN,
    PUBLISHED,
)

CLAIMS = [f"C{i}" for i in range(1, 9)]


def verdicts_of(doc) -> dict[str, object]:
    return {v.claim: v for v in judge(parse_evidence(doc, "test.json"))}


def test_paper_evidence_is_consistent_on_every_claim_it_covers():
    evidence, _, verdicts = judge_file("paper")
    assert evidence.source == "published"
    by_claim = {v.claim: v for v in verdicts}
    assert list(by_claim) == CLAIMS
    assert {c: v.verdict for c, v in by_claim.items()} == {
        "C1": CONSISTENT, "C2": CONSISTENT, "C3": NOT_RUN, "C4": CONSISTENT, "C5": NOT_RUN,
        "C6": CONSISTENT, "C7": NOT_RUN, "C8": CONSISTENT}
    # Table 1 (mean ± std over three runs) by the calibrated test; what has no spread by the
    # published-summary rule, and the reason says which rule decided and with what numbers.
    rules = {p.name.split(" ")[0]: p.rule for p in by_claim["C1"].parts}
    assert rules == {"table1": CALIBRATED, "table2": PUBLISHED}
    assert all(p.rule == CALIBRATED for p in by_claim["C2"].parts)
    assert "5 of 7 parts decided by the published-summary rule" in by_claim["C1"].reason
    assert "2 by the calibrated test" in by_claim["C1"].reason
    assert "+0.021 >= 1.5 x margin 0.01" in by_claim["C4"].reason  # Table 3: 2.4 - 0.3 points
    assert "+0.030 >= 1.5 x margin 0.015" in by_claim["C6"].reason  # ResNet50 0.27 vs 0.24
    assert "69,069 / 25,425 = 2.72 >= 1.2" in by_claim["C8"].reason
    # C8 is over the parts the paper's notes give numbers for, and says which it lacks.
    assert "not run: transfusion up to conv1/block1/block2" in by_claim["C8"].reason
    consolidation = next(p for p in by_claim["C1"].parts if "Consolidation" in p.name)
    assert "a deficit is no gain" in consolidation.reason
    for claim in ("C1", "C4", "C6", "C8"):
        assert "published-summary rule" in by_claim[claim].method


def test_paper_evidence_holds_exactly_the_published_numbers():
    evidence = load_evidence(paper_evidence_path())
    table1 = evidence.performance["table1"]
    for (arch, init), text in paper_numbers.TABLE1.items():
        mean, std = (float(x) / 100 for x in text.split(" ± "))
        sample = table1.arm(arch, init).labels["referable"]
        assert (sample.mean, sample.sd, sample.n_seeds) == pytest.approx((mean, std, 3))
        assert sample.patient_se is None  # no test-set size in the paper: none invented
    for finding, (random, transfer) in paper_numbers.TABLE2.items():
        table2 = evidence.performance["table2"]
        assert table2.arm("resnet50", "random").labels[finding].mean == pytest.approx(random / 100)
        assert table2.arm("resnet50", "pretrained").labels[finding].mean == \
            pytest.approx(transfer / 100)
        assert table2.arm("resnet50", "random").labels[finding].sd is None
    for arch, (random, transfer) in paper_numbers.TABLE3.items():
        table3 = evidence.performance["table3"]
        assert table3.arm(arch, "random").labels["referable"].mean == pytest.approx(random / 100)
        assert table3.arm(arch, "pretrained").labels["referable"].mean == \
            pytest.approx(transfer / 100)
    steps = {(a.arch, a.init): a.seeds[0].steps_to_target for a in evidence.convergence.arms}
    assert steps == {k: float(v) for k, v in paper_numbers.CONVERGENCE.items()}
    figure2 = evidence.representations.figure2
    assert {a: (v["pretrained_vs_random"].sample.mean, v["random_vs_random"].sample.mean)
            for a, v in figure2.items()} == paper_numbers.FIGURE2


def test_paper_like_study_evidence_decides_every_claim_consistent():
    rng = np.random.default_rng(0)
    doc = full_document(auc=0.90, gain=0.002, big_minus_small=0.003, little_gain=(0.03, 0.004),
                        steps={"random": [60_000, 64_000, 70_000],
                               "pretrained": [8_000, 9_000, 10_000],
                               "mean-var": [30_000, 32_000, 35_000],
                               "transfusion:block1": [12_000, 13_000, 14_000],
                               "gabor": [40_000, 41_000, 45_000]},
                        similarity=PAPER_LIKE_SIMILARITY, rng=rng, block_sd=0.003)
    verdicts = verdicts_of(doc)
    assert {c: v.verdict for c, v in verdicts.items()} == dict.fromkeys(CLAIMS, CONSISTENT)


def test_chance_level_evidence_is_inconclusive_on_every_claim():
    """Every model at chance (the smoke study before it learned): nothing is confirmed."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        doc = full_document(auc=0.5, gain=0.0, big_minus_small=0.0, little_gain=(0.0, 0.0),
                            steps={init: [None, None, None] for init in
                                   ("random", "pretrained", "mean-var", "transfusion:block1",
                                    "gabor")},
                            similarity=NULL_SIMILARITY, rng=rng, sd=0.02, half_width=0.08,
                            block_sd=0.05)
        verdicts = verdicts_of(doc)
        assert {v.verdict for v in verdicts.values()} == {INCONCLUSIVE}, seed
        assert "not learned" in verdicts["C1"].reason


class Spread:
    """A stand-in for the generator ``full_document`` draws seeds from: every arm gets the same
    seeds, centre - d, centre, centre + d (noise only, the same in every arm)."""

    def normal(self, centre, sd, n):
        return np.asarray([centre - sd, centre, centre + sd][:n])


def test_seed_noise_only_evidence_is_inconclusive_on_every_claim():
    """Learned models, no effect anywhere, seed-to-seed noise as large as the effects the paper
    reports: no claim is decided either way."""
    steps = {init: [20_000, 35_000, 50_000] for init in
             ("random", "pretrained", "mean-var", "transfusion:block1", "gabor")}
    doc = full_document(auc=0.85, gain=0.0, big_minus_small=0.0, little_gain=(0.0, 0.0),
                        steps=steps, similarity=NULL_SIMILARITY, rng=Spread(), sd=0.02,
                        half_width=0.01, block_sd=0.05)
    verdicts = verdicts_of(doc)
    assert {v.verdict for v in verdicts.values()} == {INCONCLUSIVE}
    assert "wider than the margin" in verdicts["C1"].reason
    assert "cannot show equivalence" in verdicts["C2"].power


def test_null_evidence_is_rarely_decided():
    """Calibration: on 60 random evidence files with no true effect, each claim is decided
    (either way) about as often as its 5 % one-sided level allows, never much more."""
    decided = dict.fromkeys(CLAIMS, 0)
    for seed in range(60):
        rng = np.random.default_rng(1000 + seed)
        same = [int(s) for s in rng.integers(20, 60, 3) * 1000]
        steps = {init: [int(s) for s in rng.permutation(same)] for init in
                 ("random", "pretrained", "mean-var", "transfusion:block1", "gabor")}
        doc = full_document(auc=0.85, gain=0.0, big_minus_small=0.0, little_gain=(0.0, 0.0),
                            steps=steps, similarity=NULL_SIMILARITY, rng=rng, sd=0.02,
                            half_width=0.01, block_sd=0.05)
        for claim, verdict in verdicts_of(doc).items():
            decided[claim] += verdict.verdict != INCONCLUSIVE
    assert max(decided.values()) <= 6, decided


def test_clear_contrary_evidence_is_inconsistent():
    rng = np.random.default_rng(1)
    five = 5
    doc = full_document(auc=0.85, gain=0.06, big_minus_small=0.08, little_gain=(0.0, 0.05),
                        steps={"random": [10_000, 11_000, 12_000, 12_000, 13_000],
                               "pretrained": [5_000, 5_000, 6_000, 6_000, 7_000],
                               "mean-var": [60_000, 61_000, 62_000, None, None],
                               "transfusion:block1": [60_000, 62_000, None, None, None],
                               "gabor": [70_000, None, None, None, None]},
                        similarity={"big_low": 0.3, "big_high": 0.3, "small_low": 0.9,
                                    "small_high": 0.9, "raise_low": 0.0, "raise_high": 0.2,
                                    "big_across": 0.40, "big_within": 0.30,
                                    "small_across": 0.20, "small_within": 0.40},
                        rng=rng, sd=0.002, block_sd=0.005, seeds_n=five)
    doc["source_scores"] = {"resnet50": {"value": 0.76}, "cbr-tiny": {"value": 0.40}}
    verdicts = verdicts_of(doc)
    assert {c: v.verdict for c, v in verdicts.items()} == dict.fromkeys(CLAIMS, INCONSISTENT)


def test_evidence_format_errors_name_the_field(tmp_path):
    with pytest.raises(DataError, match="not a tfx evidence file"):
        parse_evidence({"format": "other"}, "x.json")
    bad = document({"table1": {"arms": [{"arch": "resnet50", "init": "random",
                                         "labels": {"referable": {"seeds": [{"value": 1.7}]}}}]}})
    with pytest.raises(DataError, match=r"parts\.table1\.arms\[0\]\.labels\.referable\.seeds"
                                        r"\[0\]\.value must be a number in \[0, 1\]"):
        parse_evidence(bad, "x.json")
    with pytest.raises(DataError, match="parts.table9 must be one of"):
        parse_evidence(document({"table9": {}}), "x.json")
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_evidence(path)


def test_judge_command_table_json_and_errors(tfx, tmp_path):
    result = tfx("reproduce", "--judge", "paper")
    assert result.exit_code == 0, result.stderr
    # Piped: one line per claim, as `tfx reproduce` prints them, not a table thousands wide.
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines[1:len(CLAIMS) + 1]] == CLAIMS
    assert "┃" not in result.stdout
    assert "consistent" in result.stdout and "not run" in result.stdout
    assert "Evidence source: published" in result.stdout
    assert "published-summary rule" in result.stdout
    result = tfx("reproduce", "--judge", "paper", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [v["claim"] for v in data["verdicts"]] == CLAIMS
    assert data["settings"]["margin_comparable"] == 0.01
    assert data["source"] == "published"
    result = tfx("reproduce", "--judge", str(tmp_path / "none.json"))
    assert result.exit_code == 1 and result.stderr.startswith("Error:")
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_judge_command_shows_file_strings_as_text(tfx, tmp_path):
    hostile = "[bold red]x[/bold red]\x1b[31mEVIL\x1b[0m\u202e"
    doc = document({"table1": {"arms": [
        {"arch": hostile, "init": "random", "labels": {"referable": {
            "seeds": [{"value": 0.9}, {"value": 0.91}]}}}]}},
        roles={"standard": [hostile], "small": []}, title=hostile)
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(doc))
    result = tfx("reproduce", "--judge", str(path))
    assert result.exit_code == 0, result.stderr
    assert "\x1b[31m" not in result.stdout and "\u202e" not in result.stdout
    assert "[bold red]x[/bold red]" in result.stdout  # shown literally, never interpreted


def test_judge_draws_a_table_on_a_terminal(tfx, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    result = tfx("reproduce", "--judge", "paper")
    assert result.exit_code == 0, result.stderr
    assert "┃ claim" in result.stdout and all(f"│ {claim}" in result.stdout for claim in CLAIMS)
