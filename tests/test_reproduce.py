"""`tfx reproduce` without training: profiles, plan expansion, claim verdicts, the report."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce import claims
from transfusion_cli.reproduce.claims import Evidence, all_verdicts
from transfusion_cli.reproduce.evidence import ArmResult, Comparison, PartEvidence
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
    for name in ("smoke", "paper"):
        assert profile_path(name).is_file()
        assert load_study(name).part_names() == list(PARTS)
    setup = (Path(__file__).parents[1] / "setup.py").read_text()
    assert '"transfusion_cli.reproduce": ["profiles/*.yaml"]' in setup  # shipped in the wheel


def test_smoke_profile_expands_to_shared_deduplicated_cells(tmp_path):
    study = load_study("smoke")
    parts = study.part_names()
    sources = source_sweeps(study, parts)
    # The stand-in: each architecture trained once per source dataset.
    assert {n: len(s.cell_ids()) for n, s in sources.items()} == {
        "source-synthetic-chest": 2, "source-synthetic-retina": 1}
    targets = target_sweeps(study, parts, tmp_path, {})
    retina, chest = targets["retina"], targets["chexpert"]
    assert {p: len(retina.part_cells(p)) for p in parts} == {
        "table1": 8, "table2": 0, "table3": 4, "convergence": 5, "representations": 8}
    # convergence's random / pretrained seed-0 runs and all representation runs are table1's.
    assert len(retina.cell_ids()) == 8 + 4 + 3
    assert set(retina.part_cells("representations")) == set(retina.part_cells("table1"))
    assert len(chest.cell_ids()) == 2
    pretrained = [r for r in retina.requests if r.label == "pretrained"]
    assert pretrained and all(r.init.startswith("checkpoint:") and "source-synthetic-chest" in
                              r.init for r in pretrained)
    assert {r.weights for r in retina.requests if r.label == "mean-var"} == {
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


def comparison(arch_a, init_a, arch_b, init_b, difference, low, high, p=0.5, label="referable"):
    return Comparison(what="x", label=label, arch_a=arch_a, init_a=init_a, arch_b=arch_b,
                      init_b=init_b, auc_a=0.9, auc_b=0.9 + difference, difference=difference,
                      ci_low=low, ci_high=high, p_value=p)


def arm(arch, init, steps=None, reached=1, test=0.9, params=None):
    return ArmResult(arch=arch, init=init, train_size=None, seeds=1, test_mean=test,
                     test_std=None, params=params, steps_to_target=steps,
                     reached=reached if steps is not None else 0, last_step=100)


ROLES = {"standard": ["resnet50"], "small": ["cbr-tiny"]}


def evidence(**parts) -> Evidence:
    return Evidence(parts={name: PartEvidence(part=name, sweep="s", metric="auc", **value)
                           for name, value in parts.items()}, roles=ROLES)


def test_claims_not_run_without_runs():
    verdicts = all_verdicts(Evidence(roles=ROLES))
    assert [v.claim for v in verdicts] == [f"C{i}" for i in range(1, 9)]
    assert all(v.verdict == claims.NOT_RUN for v in verdicts)
    assert "not run" in verdicts[0].line()


def test_c1_transfer_gain_consistent_and_inconsistent():
    small_gain = comparison("resnet50", "random", "resnet50", "pretrained", 0.003, -0.004, 0.010,
                            p=0.41)
    verdict = claims.c1(evidence(table1={"comparisons": [small_gain]}))
    assert verdict.verdict == claims.CONSISTENT
    assert "+0.003 [-0.004, +0.010], p = 0.41" in verdict.line()
    big_gain = comparison("resnet50", "random", "resnet50", "pretrained", 0.03, 0.02, 0.04)
    assert claims.c1(evidence(table1={"comparisons": [big_gain]})).verdict == \
        claims.INCONSISTENT
    # Significant but inside the margin still counts as "no real gain".
    tiny = comparison("resnet50", "random", "resnet50", "pretrained", 0.004, 0.001, 0.007)
    assert claims.c1(evidence(table1={"comparisons": [tiny]})).verdict == claims.CONSISTENT


def test_c2_small_models_comparable_or_worse():
    same = comparison("resnet50", "random", "cbr-tiny", "random", -0.002, -0.01, 0.006)
    ev = evidence(table1={"comparisons": [same], "arms": [arm("resnet50", "random",
                                                             params=100),
                                                         arm("cbr-tiny", "random", params=5)]})
    verdict = claims.c2(ev)
    assert verdict.verdict == claims.CONSISTENT and "5% of resnet50" in verdict.evidence
    worse = comparison("resnet50", "random", "cbr-tiny", "random", -0.05, -0.07, -0.03)
    assert claims.c2(evidence(table1={"comparisons": [worse]})).verdict == claims.INCONSISTENT


def test_c4_needs_larger_gain_with_little_data_for_the_large_model():
    full = [comparison("resnet50", "random", "resnet50", "pretrained", 0.003, -0.01, 0.01)]
    small_data = [comparison("resnet50", "random", "resnet50", "pretrained", 0.024, 0.01, 0.04),
                  comparison("cbr-tiny", "random", "cbr-tiny", "pretrained", 0.003, -0.01, 0.02)]
    ev = evidence(table1={"comparisons": full}, table3={"comparisons": small_data})
    assert claims.c4(ev).verdict == claims.CONSISTENT
    flipped = [comparison(c.arch_a, "random", c.arch_b, "pretrained", -c.difference, -0.05, 0.0)
               for c in small_data]
    ev = evidence(table1={"comparisons": full}, table3={"comparisons": flipped})
    assert claims.c4(ev).verdict == claims.INCONSISTENT


def test_c5_c6_from_representations():
    reps = {"metric": "svcca",
            "to_init": {"resnet50": {"random": [("stem", .9), ("b1", .8), ("b2", .5), ("b3", .3)],
                                     "pretrained": [("stem", .95), ("b1", .9), ("b2", .5),
                                                    ("b3", .3)]},
                        "cbr-tiny": {"random": [("b1", .4), ("b2", .3), ("b3", .2),
                                                ("b4", .1)]}},
            "fig2": {"resnet50": {"pretrained_vs_random": 0.24, "random_vs_random": 0.27}}}
    ev = Evidence(roles=ROLES, representations=reps)
    assert claims.c5(ev).verdict == claims.CONSISTENT
    assert claims.c6(ev).verdict == claims.CONSISTENT
    reps["fig2"]["resnet50"] = {"pretrained_vs_random": 0.4, "random_vs_random": 0.27}
    assert claims.c6(ev).verdict == claims.MIXED
    reps["to_init"]["cbr-tiny"]["random"] = [("b1", .99), ("b2", .99), ("b3", .99), ("b4", .99)]
    assert claims.c5(ev).verdict == claims.INCONSISTENT


def test_c7_c8_steps_to_target_with_not_reached():
    arms = [arm("resnet50", "random", 1000), arm("resnet50", "mean-var", 500),
            arm("resnet50", "pretrained", 100), arm("resnet50", "transfusion:block1", 300),
            arm("resnet50", "gabor", 700)]
    ev = evidence(convergence={"arms": arms})
    assert claims.c7(ev).verdict == claims.CONSISTENT
    assert claims.c8(ev).verdict == claims.CONSISTENT
    slow = [arm("resnet50", "random", 500), arm("resnet50", "mean-var", None),
            arm("resnet50", "pretrained", 100), arm("resnet50", "transfusion:block1", None),
            arm("resnet50", "gabor", None)]
    ev = evidence(convergence={"arms": slow})
    assert claims.c7(ev).verdict == claims.INCONSISTENT
    assert "not reached in 100 steps" in claims.c7(ev).evidence
    assert claims.c8(ev).verdict == claims.INCONSISTENT
    never = [arm("resnet50", "random", None), arm("resnet50", "mean-var", None)]
    assert claims.c7(evidence(convergence={"arms": never})).verdict == claims.INCONCLUSIVE


def test_c3_source_gap_against_medical_gap():
    same = comparison("resnet50", "random", "cbr-tiny", "random", -0.001, -0.01, 0.008)
    ev = evidence(table1={"comparisons": [same]})
    ev.source_scores = {"resnet50": 0.76, "cbr-tiny": 0.40}
    assert claims.c3(ev).verdict == claims.CONSISTENT
    ev.source_scores = {"resnet50": 0.76, "cbr-tiny": 0.75}
    assert claims.c3(ev).verdict == claims.INCONCLUSIVE


def test_html_report_is_self_contained(tmp_path):
    from transfusion_cli.reproduce.report import markdown_to_html

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf"
                           "DwAChwGA60e6kgAAAABJRU5ErkJggg==")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f.png").write_bytes(png)
    text = "# T\n\n| a | b |\n|---|---|\n| 1 | `x` |\n\n![fig](figures/f.png)\n"
    page = markdown_to_html(text, tmp_path, "T")
    assert "data:image/png;base64," in page and "figures/f.png" not in page
    assert "<td><code>x</code></td>" in page and "<h1>T</h1>" in page
