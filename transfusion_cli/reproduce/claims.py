"""The claim tests C1-C8 of the paper, on an evidence file (``evidence_format``); no training.

Each claim is a documented decision rule (docs/reproduce-the-paper.md, "How a claim is
judged") with the outcomes of ``verdicts``: consistent, inconsistent, inconclusive (with the
reason) and not run. This module holds the performance claims C1-C4 and ``judge``;
``claims_representations`` holds C5-C6 and ``claims_convergence`` C7-C8.

- C1 "no gain": per standard model and label of table1/table2, pretrained - random within
  +-``margin_transfer`` (TOST).
- C2 "comparable": per small CBR, standard model, init and label of table1/table2, CBR -
  standard within +-``margin_comparable`` (TOST).
- C3 "source accuracy does not predict": per table1 pair of architectures whose source-task
  (ImageNet) scores differ by at least ``source_gap``, the medical AUC of the weaker source
  model minus the stronger's above ``-margin_comparable`` (one-sided); a medical gap beyond
  the margin in the source gap's direction contradicts it.
- C4 "helps more": per standard model, the difference of differences (table3 gain - table1
  gain) above 0; per standard model and small CBR, the table3 gains' difference above 0.

Every arm a part uses must pass the learning gate (``claim_tests.gate``); every difference
carries seeds and patients (``evaluation.claim_stats``). In published evidence a part whose
arms come without spread is decided by the published-summary rule (``published_rule``): C1
"no gain" (transfer's gain at most the margin), C2 "equivalent", C3 "not below", C4 "greater"
against ``published_factor`` x ``margin_transfer``.
"""

from __future__ import annotations

from pathlib import Path

from transfusion_cli.evaluation.claim_stats import DRAWS
from transfusion_cli.reproduce.claim_tests import Term, equivalence_part, greater_part
from transfusion_cli.reproduce.evidence_format import (
    Arm,
    EvidenceFile,
    PerformancePart,
    load_evidence,
    paper_evidence_path,
)
from transfusion_cli.reproduce.published_rule import NO_GAIN
from transfusion_cli.reproduce.verdicts import (
    NOT_RUN,
    PIPELINE_CHECK,
    PIPELINE_SCOPE,
    PRETRAINED,
    RANDOM,
    STATEMENTS,
    ClaimSettings,
    PartResult,
    Verdict,
    combine,
)

# The paper's Table 3 effect, for C4's power line: ResNet50 gains 2.4 points on 5,000 images
# against 0.3 on all data, and against the CBRs' 0.1-0.3 on 5,000: differences of about 0.02.
PAPER_C4_EFFECT = 0.02



def uncertainty_method(settings: ClaimSettings) -> str:
    """How every AUC interval is made (the report and the verdicts quote it)."""
    return (f"two-level uncertainty, {DRAWS} draws: seeds (Student t on the seeds' mean and "
            "sd) and patients (the arms' patient-bootstrap replicates on common resamples: "
            "paired; without them a normal from each seed's CI, arms independent: "
            f"conservative); one-sided level {settings.alpha:g}, {1 - 2 * settings.alpha:.0%} "
            f"intervals shown; learning gate: lower bound above {settings.learning_floor:g}")


def _term(coefficient: float, part: PerformancePart, arm: Arm, label: str) -> Term:
    return coefficient, f"{part.name} {arm.name()}", arm.labels[label]


def _gain_difference(first: tuple[PerformancePart, Arm, Arm],
                     second: tuple[PerformancePart, Arm, Arm], label: str) -> list[Term]:
    """The terms of one transfer gain minus another: each given as (part, pretrained arm,
    random arm)."""
    (part_a, pretrained_a, random_a), (part_b, pretrained_b, random_b) = first, second
    return [_term(1, part_a, pretrained_a, label), _term(-1, part_a, random_a, label),
            _term(-1, part_b, pretrained_b, label), _term(1, part_b, random_b, label)]


def _size(*arms: Arm) -> str:
    """``, 400 test patients`` (or images) of the first arm that says, for the power line."""
    for arm in arms:
        if arm.n_patients or arm.n_images:
            unit = "patients" if arm.n_patients else "images"
            return f", {arm.n_patients or arm.n_images} test {unit}"
    return ""


def _labels(*arms: Arm) -> list[str]:
    return [label for label in arms[0].labels if all(label in a.labels for a in arms[1:])]


def _tables(evidence: EvidenceFile, names: tuple[str, ...]) -> list[PerformancePart]:
    return [evidence.performance[n] for n in names if n in evidence.performance]


def c1(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Transfer vs random, standard models, table1 and table2: equivalent within the margin."""
    pairs = []
    for part in _tables(evidence, ("table1", "table2")):
        for arch in evidence.roles.get("standard", []):
            random, pretrained = part.arm(arch, RANDOM), part.arm(arch, PRETRAINED)
            if random and pretrained:
                pairs += [(part, random, pretrained, label)
                          for label in _labels(random, pretrained)]
    parts = [equivalence_part(f"{part.name} {a.arch} ({label}): pretrained - random",
                              [_term(-1, part, a, label), _term(1, part, b, label)],
                              settings.margin_transfer, settings, len(pairs), size=_size(a, b),
                              published=evidence.published, published_kind=NO_GAIN,
                              cites=(a.cite, b.cite))
             for part, a, b, label in pairs]
    return combine("C1", STATEMENTS["C1"], parts, f"TOST, margin ±{settings.margin_transfer:g}",
                   "needs table1/table2 arms of a standard model, random and pretrained")


def c2(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Each small CBR vs each standard model, same init and label: equivalent."""
    pairs = []
    for part in _tables(evidence, ("table1", "table2")):
        for init in (RANDOM, PRETRAINED):
            for big in evidence.roles.get("standard", []):
                for small in evidence.roles.get("small", []):
                    a, b = part.arm(big, init), part.arm(small, init)
                    if a and b:
                        pairs += [(part, a, b, label) for label in _labels(a, b)]
    parts = [equivalence_part(f"{part.name} {init_of(a)} ({label}): {b.arch} - {a.arch}",
                              [_term(-1, part, a, label), _term(1, part, b, label)],
                              settings.margin_comparable, settings, len(pairs), size=_size(a, b),
                              published=evidence.published, cites=(a.cite, b.cite))
             for part, a, b, label in pairs]
    verdict = combine("C2", STATEMENTS["C2"], parts,
                      f"TOST, margin ±{settings.margin_comparable:g}",
                      "needs table1/table2 arms of a small CBR and a standard model")
    ratio = _param_ratio([a for _, a, _, _ in pairs] + [b for _, _, b, _ in pairs],
                         evidence.roles)
    if ratio:
        verdict.evidence = "; ".join(t for t in (verdict.evidence, ratio) if t)
    return verdict


def init_of(arm: Arm) -> str:
    """The arm's init (its training size too, when it has one)."""
    return arm.init if arm.train_size is None else f"{arm.init} n={arm.train_size}"


def _param_ratio(arms: list[Arm], roles: dict[str, list[str]]) -> str:
    params = {a.arch: a.params for a in arms if a.params}
    pairs = [(s, b) for s in roles.get("small", []) for b in roles.get("standard", [])
             if s in params and b in params]
    if not pairs:
        return ""
    s, b = pairs[0]
    return f"{s} has {params[s] / params[b]:.0%} of {b}'s parameters"


def _clear_gap(evidence: EvidenceFile, a: str, b: str, settings: ClaimSettings) -> float | None:
    """The source-task gap b - a when it is clear (size, and intervals apart when given)."""
    (va, ca), (vb, cb) = evidence.source_scores[a], evidence.source_scores[b]
    gap = vb - va
    if abs(gap) < settings.source_gap:
        return None
    if ca and cb and not (ca[1] < cb[0] or cb[1] < ca[0]):
        return None
    return gap


def c3(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """A clear source-task gap with no medical gap beyond the margin."""
    part = evidence.performance.get("table1")
    scored = [a for a in (part.arms if part else []) if a.arch in evidence.source_scores]
    pairs = [(a, b) for i, a in enumerate(scored) for b in scored[i + 1:]
             if a.arch != b.arch and a.init == b.init and a.train_size == b.train_size]
    label_pairs = [(a, b, label) for a, b in pairs for label in _labels(a, b)]
    parts: list[PartResult] = []
    for a, b, label in label_pairs:
        gap = _clear_gap(evidence, a.arch, b.arch, settings)
        weak, strong = (a, b) if gap is None or gap > 0 else (b, a)
        name = f"table1 {a.init} ({label}): {weak.arch} - {strong.arch}"
        if gap is None:
            parts.append(PartResult(name, NOT_RUN, "", reason=f"{evidence.source_label} gap "
                                    f"too small to test (< {settings.source_gap:g})"))
            continue
        parts.append(greater_part(
            name, [_term(1, part, weak, label), _term(-1, part, strong, label)], settings,
            len(label_pairs), what=f"{evidence.source_label} gap {abs(gap):.3f}; medical AUC of "
            f"{weak.arch} - {strong.arch}", threshold=-settings.margin_comparable,
            size=_size(weak, strong), published=evidence.published,
            cites=(weak.cite, strong.cite)))
    return combine("C3", STATEMENTS["C3"], parts,
                   f"one-sided: the weaker source model stays above -{settings.margin_comparable:g}"
                   " (no medical gap beyond the margin following the source gap)",
                   f"needs {evidence.source_label} scores of two table1 architectures")


def c4(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Little data: transfer's gain larger than on all data, and larger for the large model."""
    small_data = evidence.performance.get("table3")
    full = evidence.performance.get("table1")
    if small_data is None:
        return combine("C4", STATEMENTS["C4"], [], "", "needs table3 arms, random and "
                       "pretrained")
    gains: dict[str, tuple[Arm, Arm]] = {}
    for arch in dict.fromkeys(a.arch for a in small_data.arms):
        random, pretrained = small_data.arm(arch, RANDOM), small_data.arm(arch, PRETRAINED)
        if random and pretrained:
            gains[arch] = (random, pretrained)
    plans = []
    for arch in [a for a in evidence.roles.get("standard", []) if a in gains]:
        random3, pretrained3 = gains[arch]
        if full and full.arm(arch, RANDOM) and full.arm(arch, PRETRAINED):
            random1, pretrained1 = full.arm(arch, RANDOM), full.arm(arch, PRETRAINED)
            for label in _labels(random3, pretrained3, random1, pretrained1):
                plans.append((f"{arch} ({label}): gain on little data - gain on all data",
                              _gain_difference((small_data, pretrained3, random3),
                                               (full, pretrained1, random1), label),
                              (pretrained3.cite, random1.cite)))
        for small in [s for s in evidence.roles.get("small", []) if s in gains]:
            random_s, pretrained_s = gains[small]
            for label in _labels(random3, pretrained3, random_s, pretrained_s):
                plans.append((f"table3 ({label}): {arch} gain - {small} gain",
                              _gain_difference((small_data, pretrained3, random3),
                                               (small_data, pretrained_s, random_s), label),
                              (pretrained3.cite, pretrained_s.cite)))
    size = _size(*small_data.arms)
    parts = [greater_part(name, terms, settings, len(plans), what="AUC gain difference",
                          resolution=PAPER_C4_EFFECT, size=size, published=evidence.published,
                          margin=settings.margin_transfer, cites=cites)
             for name, terms, cites in plans]
    return combine("C4", STATEMENTS["C4"], parts, "difference of differences above 0",
                   "needs table3 (and table1) arms of a standard model, random and pretrained")


def judge(evidence: EvidenceFile, settings: ClaimSettings | None = None) -> list[Verdict]:
    """C1..C8 on ``evidence`` (its own settings unless ``settings`` is given)."""
    from transfusion_cli.reproduce.claims_convergence import c7, c8
    from transfusion_cli.reproduce.claims_representations import c5, c6

    settings = settings or ClaimSettings.from_mapping(evidence.settings, "evidence settings")
    method = uncertainty_method(settings)
    verdicts = [rule(evidence, settings) for rule in (c1, c2, c3, c4, c5, c6, c7, c8)]
    for verdict in verdicts:
        if verdict.claim in ("C1", "C2", "C3", "C4"):
            verdict.method = "; ".join(m for m in (verdict.method, method) if m)
        if evidence.published and verdict.method:
            verdict.method += "; " + published_method(settings)
        if evidence.purpose == PIPELINE_CHECK:
            verdict.scope = PIPELINE_SCOPE
    return verdicts


def published_method(settings: ClaimSettings) -> str:
    """How published evidence without spread is judged (the verdicts of such files quote it)."""
    return (f"published evidence: a part whose numbers come without spread is decided from "
            f"the point estimates (published-summary rule): equivalence within the margin, "
            f"an effect or a contrary one only at {settings.published_factor:g} x the margin, "
            f"\"faster\" only at a step ratio of {settings.published_step_ratio:g}")


PAPER = "paper"  # `--judge paper`: the shipped evidence of the paper's published numbers


def judge_file(spec: str) -> tuple[EvidenceFile, ClaimSettings, list[Verdict]]:
    """Load the evidence file ``spec`` (a path, a study folder holding evidence.json, or
    ``paper``) and judge it with its settings."""
    from transfusion_cli.runfolder import StudyFolder

    path = paper_evidence_path() if spec == PAPER else Path(spec)
    evidence = load_evidence(StudyFolder(path).evidence if path.is_dir() else path)
    settings = ClaimSettings.from_mapping(evidence.settings, f"{spec}: settings")
    return evidence, settings, judge(evidence, settings)
