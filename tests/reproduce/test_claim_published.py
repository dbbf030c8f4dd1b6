"""The published-summary rule: a paper's point estimates without spread decide a part only
beyond the claim's margin by the stated factor; the same numbers as a study's (one seed, or no
spread) are never decided; small published effects are inconclusive and contrary ones
inconsistent."""

from __future__ import annotations

import copy
import json

import pytest
from claims_helpers import document

from transfusion_cli.errors import ConfigError, DataError
from transfusion_cli.evaluation.claim_stats import ArmSample
from transfusion_cli.reproduce import published_rule
from transfusion_cli.reproduce.claims import judge
from transfusion_cli.reproduce.evidence_format import paper_evidence_path, parse_evidence
from transfusion_cli.reproduce.verdicts import (
    CONSISTENT,
    INCONCLUSIVE,
    INCONSISTENT,
    NOT_RUN,
    PUBLISHED,
    ClaimSettings,
)

SETTINGS = ClaimSettings()
COVERED = ("C1", "C2", "C4", "C6", "C8")  # the claims the paper's notes give numbers for
ROLES = {"standard": ["resnet50"], "small": ["cbr-tiny"]}


def paper_document() -> dict:
    return json.loads(paper_evidence_path().read_text(encoding="utf-8"))


def verdicts_of(doc) -> dict:
    return {v.claim: v for v in judge(parse_evidence(doc, "test.json"))}


def _labels(doc):
    parts = doc["parts"]
    for name in ("table1", "table2", "table3"):
        for arm in parts[name]["arms"]:
            yield arm["labels"]
    for entry in parts["representations"]["figure2"].values():
        yield {k: v for k, v in entry.items() if k in ("pretrained_vs_random",
                                                        "random_vs_random")}


def test_the_papers_numbers_as_a_one_seed_study_are_inconclusive():
    """Exactly the paper's point numbers, written by a study with one seed per arm: every
    claim they covered is inconclusive (too few seeds), none decided."""
    doc = paper_document()
    doc["source"] = "study"
    for labels in _labels(doc):
        for key, value in labels.items():
            labels[key] = {"seeds": [{"value": value["mean"]}]}
    verdicts = verdicts_of(doc)
    for claim in COVERED:
        assert verdicts[claim].verdict == INCONCLUSIVE, claim
        assert "too few seeds" in verdicts[claim].reason, claim
    assert {verdicts[c].verdict for c in ("C3", "C5", "C7")} == {NOT_RUN}
    assert not any(p.rule == PUBLISHED for v in verdicts.values() for p in v.parts)


def test_a_study_without_spread_never_uses_the_published_rule():
    """The paper's file relabelled as a study: Table 1 (with its ± over three runs) is still
    tested, but every part without a spread is inconclusive, so nothing it covers beyond
    Table 1 is decided."""
    doc = paper_document()
    doc["source"] = "study"
    verdicts = verdicts_of(doc)
    assert verdicts["C2"].verdict == CONSISTENT  # Table 1 only: calibrated
    for claim in ("C1", "C4", "C6", "C8"):  # C1 has Table 2 parts without spread
        assert verdicts[claim].verdict == INCONCLUSIVE, claim
        assert "too few seeds" in verdicts[claim].reason, claim
    missing = dict(paper_document(), source=None)
    del missing["source"]  # no source: a study, the safe default
    assert verdicts_of(missing)["C4"].verdict == INCONCLUSIVE


def _arm(arch, init, mean, train_size=None):
    arm = {"arch": arch, "init": init, "labels": {"referable": {"mean": mean, "n": 3}}}
    return arm | ({"train_size": train_size} if train_size else {})


def _published(gain, small_minus_big, big_little_gain, small_little_gain, fig2_big_gap,
               fig2_small_gap, gabor_steps, mean_var_steps, small_source_gap=0.0,
               to_init_big=0.9) -> dict:
    """A published file (means only) from a few knobs: transfer's gain on all data, CBR minus
    ResNet50, the gains on little data, Figure 2 gaps (random-vs-random minus
    pretrained-vs-random for ResNet50; pretrained-vs-random minus random-vs-random for the
    CBR), steps of Gabor and Mean Var against random's 60,000."""
    table1 = [_arm("resnet50", "random", 0.90), _arm("resnet50", "pretrained", 0.90 + gain),
              _arm("cbr-tiny", "random", 0.90 + small_minus_big + small_source_gap),
              _arm("cbr-tiny", "pretrained", 0.90 + small_minus_big + gain)]
    table3 = [_arm("resnet50", "random", 0.85, 5000),
              _arm("resnet50", "pretrained", 0.85 + big_little_gain, 5000),
              _arm("cbr-tiny", "random", 0.85, 5000),
              _arm("cbr-tiny", "pretrained", 0.85 + small_little_gain, 5000)]

    def steps(init, value, arch="resnet50"):
        return {"arch": arch, "init": init, "seeds": [{"steps_to_target": value}]}

    convergence = {"target": {"absolute": 0.9},
                   "arms": [steps("random", 60_000), steps("pretrained", 8_000),
                            steps("gabor", gabor_steps), steps("mean-var", mean_var_steps)]}

    def blocks(values):
        return [{"block": f"block{i}", "mean": v} for i, v in enumerate(values)]

    representations = {
        "to_init": {"resnet50": {"random": blocks([to_init_big] * 4)},
                    "cbr-tiny": {"random": blocks([0.5] * 4)}},
        "figure2": {"resnet50": {"pretrained_vs_random": {"mean": 0.30 - fig2_big_gap},
                                 "random_vs_random": {"mean": 0.30}},
                    "cbr-tiny": {"pretrained_vs_random": {"mean": 0.36 + fig2_small_gap},
                                 "random_vs_random": {"mean": 0.36}}}}
    return document({"table1": {"arms": table1}, "table3": {"arms": table3},
                     "convergence": convergence, "representations": representations},
                    roles=ROLES, source="published",
                    source_scores={"resnet50": {"value": 0.76}, "cbr-tiny": {"value": 0.40}})


def test_published_paper_like_summary_is_consistent():
    doc = _published(gain=0.003, small_minus_big=-0.004, big_little_gain=0.03,
                     small_little_gain=0.004, fig2_big_gap=0.04, fig2_small_gap=0.0,
                     gabor_steps=30_000, mean_var_steps=20_000)
    verdicts = verdicts_of(doc)
    assert {v.verdict for v in verdicts.values()} == {CONSISTENT}
    assert all(p.rule == PUBLISHED for v in verdicts.values() for p in v.parts)


def test_published_small_effects_are_inconclusive():
    """Effects between the margin and the factor times it, and step ratios below 1.2, decide
    nothing either way."""
    doc = _published(gain=0.012, small_minus_big=-0.012, big_little_gain=0.015,
                     small_little_gain=0.004, fig2_big_gap=0.015, fig2_small_gap=0.018,
                     gabor_steps=55_000, mean_var_steps=52_000, small_source_gap=0.003,
                     to_init_big=0.51)
    verdicts = verdicts_of(doc)
    assert {c: v.verdict for c, v in verdicts.items()} == dict.fromkeys(
        [f"C{i}" for i in range(1, 9)], INCONCLUSIVE)
    assert "1.5 x margin 0.01" in verdicts["C4"].reason
    assert "not beyond 1.2" in verdicts["C7"].reason


def test_published_contrary_effects_are_inconsistent():
    doc = _published(gain=0.03, small_minus_big=-0.03, big_little_gain=0.0,
                     small_little_gain=0.03, fig2_big_gap=-0.04, fig2_small_gap=-0.05,
                     gabor_steps=90_000, mean_var_steps=120_000, to_init_big=0.3)
    verdicts = verdicts_of(doc)
    assert {c: v.verdict for c, v in verdicts.items()} == dict.fromkeys(
        [f"C{i}" for i in range(1, 9)], INCONSISTENT)
    assert "published-summary rule" in verdicts["C4"].reason
    assert "slower" in verdicts["C8"].reason


def test_published_arms_at_chance_are_not_learned():
    doc = _published(gain=0.0, small_minus_big=0.0, big_little_gain=0.03,
                     small_little_gain=0.0, fig2_big_gap=0.04, fig2_small_gap=0.0,
                     gabor_steps=30_000, mean_var_steps=20_000)
    for part in ("table1", "table3"):
        for arm in doc["parts"][part]["arms"]:
            arm["labels"]["referable"]["mean"] -= 0.4
    verdicts = verdicts_of(doc)
    for claim in ("C1", "C2", "C4", "C6"):
        assert verdicts[claim].verdict == INCONCLUSIVE and "not learned" in \
            verdicts[claim].reason, claim


def _terms(*values):
    return [(c, f"arm{i}", ArmSample(v, None, 3)) for i, (c, v) in enumerate(values)]


@pytest.mark.parametrize(("kind", "estimate", "expected"), [
    (published_rule.EQUIVALENT, 0.010, CONSISTENT), (published_rule.EQUIVALENT, -0.012,
                                                      INCONCLUSIVE),
    (published_rule.EQUIVALENT, -0.015, INCONSISTENT),
    (published_rule.NO_GAIN, -0.05, CONSISTENT), (published_rule.NO_GAIN, 0.012, INCONCLUSIVE),
    (published_rule.NO_GAIN, 0.02, INCONSISTENT),
    (published_rule.NOT_BELOW, -0.01, CONSISTENT), (published_rule.NOT_BELOW, -0.012,
                                                     INCONCLUSIVE),
    (published_rule.NOT_BELOW, -0.02, INCONSISTENT),
    (published_rule.GREATER, 0.015, CONSISTENT), (published_rule.GREATER, 0.014, INCONCLUSIVE),
    (published_rule.GREATER, -0.014, INCONCLUSIVE), (published_rule.GREATER, -0.015,
                                                      INCONSISTENT),
])
def test_point_part_bounds(kind, estimate, expected):
    part = published_rule.point_part("p", _terms((1, 0.9 + estimate), (-1, 0.9)), kind, 0.01,
                                     SETTINGS)
    assert part.outcome == expected and part.rule == PUBLISHED
    assert part.reason.startswith("published point estimates, no spread")


def test_point_part_reads_published_decimals_exactly():
    """0.27 - 0.24 is 0.03 on the page: at 1.5 x 0.02 it is consistent (not lost to floats)."""
    part = published_rule.point_part("p", _terms((1, 0.27), (-1, 0.24)),
                                     published_rule.GREATER, 0.02, SETTINGS)
    assert part.outcome == CONSISTENT


def test_steps_part_ratio_lead_and_censoring():
    def run(fast, slow, interval=None, extra=None):
        return published_rule.steps_part("p", ("fast",) + fast, ("slow",) + slow, SETTINGS,
                                         0.9, interval, extra).outcome

    assert run((50_000, True), (60_000, True)) == CONSISTENT  # ratio 1.2, no interval
    assert run((51_000, True), (60_000, True)) == INCONCLUSIVE  # 1.18
    # With an evaluation interval, the difference must also be two intervals.
    assert run((500, True), (600, True), interval=100) == INCONCLUSIVE
    assert run((500, True), (700, True), interval=100) == CONSISTENT
    # An unreached slower arm's last step is a lower bound: enough to be faster.
    assert run((40_000, True), (60_000, False)) == CONSISTENT
    assert run((60_000, False), (40_000, True)) == INCONSISTENT
    assert run((60_000, False), (60_000, False)) == INCONCLUSIVE
    # "Most of the speed-up": the faster arm delayed first.
    assert run((10_000, True), (60_000, True), extra=("half", 30_000)) == CONSISTENT
    assert run((30_000, True), (60_000, True), extra=("half", 30_000)) == INCONCLUSIVE


def test_source_and_factor_are_checked():
    with pytest.raises(DataError, match='source must be "study"'):
        parse_evidence(document({}, source="tfx reproduce"), "x.json")
    with pytest.raises(ConfigError, match="published_factor must be at least 1"):
        ClaimSettings.from_mapping({"published_factor": 0.5}, "claims")
    doc = copy.deepcopy(paper_document())
    doc["settings"] = {"published_factor": 2.5}  # stricter: Table 3's 0.021 no longer decides
    assert verdicts_of(doc)["C4"].verdict == INCONCLUSIVE
