"""Each claim's decision rule C1-C8: consistent, inconsistent, or inconclusive with its reason,
on small hand-made evidence, with the edge cases of issue 19 (censored seeds, block3-only
transfusion, Slim across architectures, intervals wider than the margin, arms that did not
learn, low-data blocks)."""

from __future__ import annotations

from claims_helpers import arm, blocks, conv_arm, evidence

from transfusion_cli.reproduce import claims, claims_convergence, claims_representations
from transfusion_cli.reproduce.verdicts import (
    CONSISTENT,
    INCONCLUSIVE,
    INCONSISTENT,
    NOT_RUN,
    ClaimSettings,
)

SETTINGS = ClaimSettings()
TIGHT = [0.9000, 0.9005, 0.8995]  # three seeds with the paper's Table 1 spread (sd 0.0005)


def shift(values, by):
    return [v + by for v in values]


def table1(*arms):
    return evidence({"table1": {"arms": list(arms)}})


def test_c1_equivalent_gain_and_undecided():
    same = table1(arm("resnet50", "random", TIGHT), arm("resnet50", "pretrained",
                                                         shift(TIGHT, 0.003)))
    verdict = claims.c1(same, SETTINGS)
    assert verdict.verdict == CONSISTENT
    assert "AUC +0.003 [" in verdict.evidence and "margin ±0.01" in verdict.evidence
    gain = table1(arm("resnet50", "random", TIGHT), arm("resnet50", "pretrained",
                                                         shift(TIGHT, 0.05)))
    assert claims.c1(gain, SETTINGS).verdict == INCONSISTENT
    # Seeds far apart: the interval is wider than the margin, so the design cannot tell.
    wide = table1(arm("resnet50", "random", [0.85, 0.90, 0.95]),
                  arm("resnet50", "pretrained", [0.86, 0.91, 0.96]))
    verdict = claims.c1(wide, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "wider than the margin" in verdict.reason
    assert "cannot show equivalence" in verdict.power
    # A large patient-level CI per seed: drawn independently per arm (conservative) the design
    # cannot tell; with the arms' replicates of the same resampled patients (paired), it can.
    unpaired = table1(arm("resnet50", "random", TIGHT, half_width=0.008),
                      arm("resnet50", "pretrained", shift(TIGHT, 0.003), half_width=0.008))
    verdict = claims.c1(unpaired, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "patients unpaired" in verdict.evidence
    paired = table1(arm("resnet50", "random", TIGHT, half_width=0.008, paired=0.95),
                    arm("resnet50", "pretrained", shift(TIGHT, 0.003), half_width=0.008,
                        paired=0.95))
    verdict = claims.c1(paired, SETTINGS)
    assert verdict.verdict == CONSISTENT and "patients paired" in verdict.evidence
    one_seed = table1(arm("resnet50", "random", [0.9]), arm("resnet50", "pretrained", [0.9]))
    verdict = claims.c1(one_seed, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "too few seeds" in verdict.reason
    assert claims.c1(table1(), SETTINGS).verdict == NOT_RUN


def test_learning_gate_makes_claims_inconclusive():
    chance = table1(arm("resnet50", "random", [0.50, 0.47, 0.52], half_width=0.05),
                    arm("resnet50", "pretrained", [0.49, 0.51, 0.48], half_width=0.05))
    verdict = claims.c1(chance, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE
    assert "not learned" in verdict.reason and "floor 0.6" in verdict.reason
    # The floor is a setting.
    low_floor = ClaimSettings(learning_floor=0.3, margin_transfer=0.2)
    assert claims.c1(chance, low_floor).verdict == CONSISTENT


def test_c2_paper_scale_gap_passes_a_real_gap_does_not():
    half_point = table1(arm("resnet50", "pretrained", TIGHT, params=23_500_000),
                        arm("cbr-tiny", "pretrained", shift(TIGHT, -0.005), params=1_079_845))
    verdict = claims.c2(half_point, SETTINGS)
    assert verdict.verdict == CONSISTENT and "cbr-tiny has 5% of resnet50" in verdict.evidence
    worse = table1(arm("resnet50", "random", TIGHT), arm("cbr-tiny", "random",
                                                          shift(TIGHT, -0.04)))
    assert claims.c2(worse, SETTINGS).verdict == INCONSISTENT


def test_c3_source_gap_against_medical_gap():
    def ev(small_shift, small_source=0.40):
        return evidence({"table1": {"arms": [arm("resnet50", "random", TIGHT),
                                             arm("cbr-tiny", "random",
                                                 shift(TIGHT, small_shift))]}},
                        source_scores={"resnet50": {"value": 0.76},
                                       "cbr-tiny": {"value": small_source}})

    assert claims.c3(ev(-0.002), SETTINGS).verdict == CONSISTENT
    # The medical gap follows the source gap, beyond the margin.
    assert claims.c3(ev(-0.04), SETTINGS).verdict == INCONSISTENT
    # The weaker source model being clearly better medically does not follow the source.
    assert claims.c3(ev(+0.04), SETTINGS).verdict == CONSISTENT
    verdict = claims.c3(ev(-0.002, small_source=0.75), SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "gap too small" in verdict.reason


def _table3(big_gain, small_gain, big_full_gain=0.0):
    return evidence({
        "table1": {"arms": [arm("resnet50", "random", TIGHT),
                            arm("resnet50", "pretrained", shift(TIGHT, big_full_gain))]},
        "table3": {"arms": [arm("resnet50", "random", shift(TIGHT, -0.05), 5000),
                            arm("resnet50", "pretrained", shift(TIGHT, -0.05 + big_gain), 5000),
                            arm("cbr-tiny", "random", shift(TIGHT, -0.04), 5000),
                            arm("cbr-tiny", "pretrained", shift(TIGHT, -0.04 + small_gain),
                                5000)]}})


def test_c4_difference_of_differences():
    verdict = claims.c4(_table3(0.024, 0.003), SETTINGS)
    assert verdict.verdict == CONSISTENT and len(verdict.parts) == 2
    assert claims.c4(_table3(-0.02, 0.01), SETTINGS).verdict == INCONSISTENT
    # Gains equal on small data: the point difference alone never decides.
    noisy = evidence({"table3": {"arms": [
        arm("resnet50", "random", [0.80, 0.85, 0.90], 5000),
        arm("resnet50", "pretrained", [0.81, 0.86, 0.91], 5000),
        arm("cbr-tiny", "random", [0.80, 0.85, 0.90], 5000),
        arm("cbr-tiny", "pretrained", [0.80, 0.85, 0.90], 5000)]}})
    verdict = claims.c4(noisy, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "interval covers 0" in verdict.reason


def _reps(big, small, low_data=(), metric="cca"):
    return evidence({"representations": {"metric": metric, "to_init": {
        "resnet50": {"random": blocks({"stem": big, "block1": big, "block2": [.5, .5, .5],
                                       "block3": [.3, .3, .3]}, low_data)},
        "cbr-tiny": {"random": blocks({"block1": small, "block2": small,
                                       "block3": [.2, .2, .2], "block4": [.2, .2, .2]})}}}})


def test_c5_ordering_with_intervals_over_seeds():
    verdict = claims_representations.c5(_reps([.9, .88, .92], [.4, .45, .35]), SETTINGS)
    assert verdict.verdict == CONSISTENT and "cca" in verdict.evidence
    assert claims_representations.c5(_reps([.4, .45, .35], [.9, .88, .92]),
                                     SETTINGS).verdict == INCONSISTENT
    assert claims_representations.c5(_reps([.5, .9, .3], [.4, .8, .5]),
                                     SETTINGS).verdict == INCONCLUSIVE
    verdict = claims_representations.c5(_reps([.9, .88, .92], [.4, .45, .35], ("block1",)),
                                        SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "block1" in verdict.reason
    assert "data points per neuron" in verdict.reason
    svcca = claims_representations.c5(_reps([.9, .88, .92], [.4, .45, .35], metric="svcca"),
                                      SETTINGS)
    assert "not svcca" in svcca.method  # the paper's measure is CCA; the one used is named


def _figure2(big, small):
    return {"resnet50": {"blocks": ["block3", "block4"],
                         "pretrained_vs_random": {"values": big[0]},
                         "random_vs_random": {"values": big[1]}},
            "cbr-tiny": {"blocks": ["block3", "block4"],
                         "pretrained_vs_random": {"values": small[0]},
                         "random_vs_random": {"values": small[1]}}}


def test_c6_reuse_low_and_figure2_equal_for_cbrs():
    to_init = {"resnet50": {
        "random": blocks({"stem": [.80, .81, .79], "block1": [.60, .61, .59],
                          "block2": [.40, .41, .39], "block3": [.30, .31, .29]}),
        "pretrained": blocks({"stem": [.95, .96, .94], "block1": [.80, .81, .79],
                              "block2": [.41, .40, .42], "block3": [.30, .29, .31]})}}
    paper_like = _figure2(([.24, .25, .23], [.27, .28, .26]),
                          ([.360, .363, .357], [.361, .358, .364]))
    ev = evidence({"representations": {"to_init": to_init, "figure2": paper_like}})
    verdict = claims_representations.c6(ev, SETTINGS)
    assert verdict.verdict == CONSISTENT and len(verdict.parts) == 3
    # The paper's CBR numbers ("about equal") pass; a CBR gap beyond the margin does not.
    apart = _figure2(([.24, .25, .23], [.27, .28, .26]), ([.20, .21, .19], [.36, .35, .37]))
    ev = evidence({"representations": {"figure2": apart}})
    assert claims_representations.c6(ev, SETTINGS).verdict == INCONSISTENT
    # Pretrained init raising similarity only at the top contradicts "reuse is low".
    flipped = {"resnet50": {"random": to_init["resnet50"]["pretrained"],
                            "pretrained": to_init["resnet50"]["random"]}}
    ev = evidence({"representations": {"to_init": flipped}})
    assert claims_representations.c6(ev, SETTINGS).verdict == INCONSISTENT


def converge(*arms, eval_every=1000, target=None):
    return evidence({"convergence": {"eval_every": eval_every,
                                     "target": target or {"absolute": 0.9},
                                     "arms": list(arms)}})


def test_c7_mean_var_faster_by_more_than_two_evaluations():
    ev = converge(conv_arm("resnet50", "random", [60_000, 65_000, 70_000]),
                  conv_arm("resnet50", "mean-var", [30_000, 31_000, 33_000]))
    verdict = claims_convergence.c7(ev, SETTINGS)
    assert verdict.verdict == CONSISTENT and "p = 0.05" in verdict.evidence
    # Ahead by one evaluation only: never a win.
    close = converge(conv_arm("resnet50", "random", [10_000, 10_000, 10_000]),
                     conv_arm("resnet50", "mean-var", [9_000, 9_000, 9_000]))
    assert claims_convergence.c7(close, SETTINGS).verdict == INCONCLUSIVE
    slower = converge(conv_arm("resnet50", "random", [20_000, 21_000, 22_000]),
                      conv_arm("resnet50", "mean-var", [60_000, None, None]))
    assert claims_convergence.c7(slower, SETTINGS).verdict == INCONSISTENT
    two = converge(conv_arm("resnet50", "random", [60_000, 65_000]),
                   conv_arm("resnet50", "mean-var", [30_000, 31_000]))
    verdict = claims_convergence.c7(two, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "cannot decide" in verdict.power


def test_censored_seeds_are_not_dropped():
    """1 of 3 seeds reaching the target at 20k does not beat 3 of 3 reaching it at 40k."""
    ev = converge(conv_arm("resnet50", "random", [40_000, 40_000, 40_000], last_step=150_000),
                  conv_arm("resnet50", "mean-var", [20_000, None, None], last_step=150_000))
    verdict = claims_convergence.c7(ev, SETTINGS)
    assert verdict.verdict != CONSISTENT
    assert ">150000" in verdict.evidence and "never" in verdict.evidence


FULL = {"random": [60_000, 64_000, 70_000], "pretrained": [8_000, 9_000, 10_000]}


def test_c8_lowest_blocks_gabor_and_slim():
    arms = [conv_arm("resnet50", init, steps) for init, steps in FULL.items()]
    arms += [conv_arm("resnet50", "transfusion:stem", [30_000, 32_000, 33_000]),
             conv_arm("resnet50", "transfusion:block1", [20_000, 21_000, 22_000]),
             conv_arm("resnet50", "transfusion:block2", [12_000, 13_000, 14_000]),
             conv_arm("resnet50", "gabor", [40_000, 42_000, 45_000]),
             conv_arm("resnet50-slim", "pretrained", [9_000, 10_000, 11_000],
                      base_arch="resnet50")]
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict == CONSISTENT
    names = [p.name for p in verdict.parts]
    assert len(names) == 6 and any("resnet50-slim" in n for n in names)
    assert any("transfusion:block2 recovers at least 50%" in n for n in names)
    # Block2 transfusion that recovers only a fifth of the speed-up: not "most". With 6 parts
    # a contradiction needs p <= 0.05 / 6, so five seeds (three cannot go below 0.05).
    arms[0] = conv_arm("resnet50", "random", [60_000, 62_000, 64_000, 66_000, 70_000])
    arms[4] = conv_arm("resnet50", "transfusion:block2", [50_000, 51_000, 52_000, 52_000,
                                                          53_000])
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict == INCONSISTENT and "block2" in verdict.evidence
    arms[4] = conv_arm("resnet50", "transfusion:block2", [50_000, 51_000, 52_000])
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict == INCONCLUSIVE


def test_c8_block3_only_transfusion_does_not_count():
    arms = [conv_arm("resnet50", init, steps) for init, steps in FULL.items()]
    arms.append(conv_arm("resnet50", "transfusion:block3", [9_000, 9_500, 10_000]))
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict == NOT_RUN
    arms.append(conv_arm("resnet50", "transfusion:block1", [61_000, 63_000, 69_000]))
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict != CONSISTENT
    assert all("block3" not in p.name for p in verdict.parts)


def test_c8_slim_is_judged_only_against_its_own_base():
    arms = [conv_arm("cbr-large-w", init, [s * 2 for s in steps]) for init, steps in
            FULL.items()]
    arms.append(conv_arm("resnet50-slim", "pretrained", [9_000, 10_000, 11_000],
                         base_arch="resnet50"))
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict == NOT_RUN  # no resnet50 arms: Slim is not credited to CBR-LargeW
    # Without base_arch, "-slim" names the base.
    arms[-1] = conv_arm("resnet50-slim", "pretrained", [9_000, 10_000, 11_000])
    arms += [conv_arm("resnet50", init, steps) for init, steps in FULL.items()]
    verdict = claims_convergence.c8(converge(*arms), SETTINGS)
    assert verdict.verdict == CONSISTENT
    assert [p.name.split(":")[0] for p in verdict.parts] == ["resnet50"]


def test_relative_target_from_curves():
    def curve_arm(init, reach):
        seeds = []
        for i, step in enumerate(reach):
            curve = [[s, 0.6 if s < step else 0.95] for s in range(1000, 20_001, 1000)]
            seeds.append({"seed": i, "curve": curve})
        return {"arch": "cbr-tiny", "init": init, "seeds": seeds}

    ev = converge(curve_arm("random", [15_000, 16_000, 18_000]),
                  curve_arm("pretrained", [2_000, 2_000, 3_000]),
                  curve_arm("mean-var", [5_000, 6_000, 6_000]),
                  eval_every=None, target={"relative": 0.94, "of": "pretrained"})
    verdict = claims_convergence.c7(ev, SETTINGS)
    assert verdict.verdict == CONSISTENT
    assert "steps to 0.893" in verdict.evidence  # 0.94 x the plateau 0.95
    assert "relative target" in verdict.method
    no_curves = converge(conv_arm("resnet50", "random", [60_000, 61_000, 62_000]),
                         conv_arm("resnet50", "mean-var", [30_000, 31_000, 32_000]),
                         target={"relative": 0.94})
    verdict = claims_convergence.c7(no_curves, SETTINGS)
    assert verdict.verdict == INCONCLUSIVE and "needs the curves" in verdict.reason



def test_a_contrary_effect_short_of_the_correction_says_so():
    """The shown 90% interval lies below 0 but the Bonferroni interval of 3 tests does not: the
    reason says so (not "interval covers 0"); a larger gap is inconsistent."""
    from transfusion_cli.evaluation.claim_stats import ArmSample
    from transfusion_cli.reproduce.claim_tests import greater_part

    base = ArmSample.from_values([0.50, 0.51, 0.52])

    def part(gap):
        other = ArmSample.from_values([0.50 + gap, 0.51 + gap, 0.524 + gap])
        return greater_part("x", [(1, "a", base), (-1, "b", other)], SETTINGS, tests=3,
                            what="cca", gated=False)

    short = part(0.04)
    assert short.outcome == INCONCLUSIVE and "-0.012]" in short.evidence
    assert short.reason == ("below 0 at the 90% level only, not after the Bonferroni "
                            "correction for 3 tests")
    assert part(0.06).outcome == INCONSISTENT
    assert part(0.0).reason == "interval covers 0"
