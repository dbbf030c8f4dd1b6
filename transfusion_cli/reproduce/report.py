"""report.md and a self-contained report.html (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from transfusion_cli.reproduce import paper_numbers as paper
from transfusion_cli.reproduce.claims import Evidence, Verdict
from transfusion_cli.reproduce.evidence import ArmResult, PartEvidence

TITLES = {
    "table1": "Table 1: random init vs transfer, large task (Retina)",
    "table2": "Table 2: random init vs transfer, CheXpert (per finding)",
    "table3": "Table 3: very small data (Retina)",
    "convergence": "Convergence: steps to the target AUC (constant schedule)",
    "representations": "Representations: similarity to initialisation, Figure 2, filters",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _arm_text(arm: ArmResult) -> str:
    if arm.test_mean is None:
        return "-"
    std = f" ± {100 * arm.test_std:.2f}" if arm.test_std is not None else ""
    return f"{_pct(arm.test_mean)}{std}"


def _paper_value(part: str, arm: ArmResult, stands_for: dict[str, str]) -> str:
    arch = stands_for.get(arm.arch, arm.arch)
    if part == "table1":
        return paper.TABLE1.get((arch, arm.init), "-")
    if part == "table3" and arch in paper.TABLE3:
        return str(paper.TABLE3[arch][0 if arm.init == "random" else 1]) \
            if arm.init in ("random", "pretrained") else "-"
    if part == "convergence":
        value = paper.CONVERGENCE.get((arch, arm.init))
        return f"{value:,}" if value else "-"
    if part == "table2" and arch == "resnet50" and arm.init in ("random", "pretrained"):
        index = 0 if arm.init == "random" else 1
        return ", ".join(f"{k} {v[index]}" for k, v in paper.TABLE2.items())
    return "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _arch_name(arch: str, stands_for: dict[str, str]) -> str:
    return f"{arch} (for {stands_for[arch]})" if arch in stands_for else arch


def part_section(ev: PartEvidence, stands_for: dict[str, str]) -> list[str]:
    """Markdown lines of one training part."""
    lines = [f"## {TITLES[ev.part]}", "",
             f"Sweep folder `sweeps/{ev.sweep}`; metric `{ev.metric}` (AUC %) of best.pt on the "
             "test split, mean ± std over seeds."]
    if ev.part == "convergence":
        split = getattr(ev, "target_split", "validation")
        lines[-1] += (f" Steps: first evaluated step with {split} `{ev.metric}` ≥ "
                      f"{ev.target} (mean over the seeds that reached it; the paper reads "
                      "test AUC along training).")
        header = ["arch", "init", "seeds", "test AUC", "steps to target", "paper steps to 0.91"]
        rows = [[_arch_name(a.arch, stands_for), a.init, str(a.seeds), _arm_text(a),
                 (f"{a.steps_to_target:.0f} ({a.reached}/{a.seeds})" if a.reached and
                  a.steps_to_target is not None else f"not reached in {a.last_step}"),
                 _paper_value(ev.part, a, stands_for)] for a in ev.arms]
    else:
        header = ["arch", "init", "train size", "seeds", "test AUC", "params", "paper"]
        rows = [[_arch_name(a.arch, stands_for), a.init,
                 "all" if a.train_size is None else str(a.train_size), str(a.seeds),
                 _arm_text(a), f"{a.params:,}" if a.params else "-",
                 _paper_value(ev.part, a, stands_for)] for a in ev.arms]
    lines += ["", _table(header, rows) if rows else "No finished cells yet."]
    if ev.part == "table1":
        lines += ["", f"Paper: {paper.TABLE1_NOTE}."]
    if ev.comparisons:
        lines += ["", "Paired differences on the test split (b - a; seed-averaged scores, "
                  "95 % paired bootstrap CI over test images, DeLong p):", "",
                  _table(["comparison", "label", "AUC a", "AUC b", "difference [95 % CI]", "p"],
                         [[c.what, c.label, f"{c.auc_a:.3f}", f"{c.auc_b:.3f}",
                           f"{c.difference:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                           f"{c.p_value:.2g}"] for c in ev.comparisons])]
    if ev.missing:
        lines += ["", f"Not finished: {len(ev.missing)} cells ({', '.join(ev.missing[:4])}"
                  f"{', ...' if len(ev.missing) > 4 else ''})."]
    return lines + [""]


def representation_section(reps: dict[str, Any] | None, figures: dict[str, Path],
                           stands_for: dict[str, str]) -> list[str]:
    """Markdown lines of the representations part."""
    lines = [f"## {TITLES['representations']}", ""]
    if not reps or not reps.get("to_init"):
        return lines + ["Not run: needs finished random and pretrained cells.", ""]
    metric = reps["metric"]
    lines.append(f"Metric `{metric}` on the validation split (classifier left out).")
    rows = []
    for arch, arms in reps["to_init"].items():
        for label, values in arms.items():
            rows.append([_arch_name(arch, stands_for), label,
                         ", ".join(f"{b} {v:.2f}" for b, v in values)])
    lines += ["", _table(["arch", "init", "similarity to init per block"], rows)]
    if reps.get("fig2"):
        rows = []
        for arch, v in reps["fig2"].items():
            ref = paper.FIGURE2.get(stands_for.get(arch, arch))
            rows.append([_arch_name(arch, stands_for), f"{v['pretrained_vs_random']:.2f}",
                         f"{v['random_vs_random']:.2f}",
                         f"{ref[0]:.2f} vs {ref[1]:.2f}" if ref else "-"])
        lines += ["", "Figure 2 (top two blocks, trained networks):", "",
                  _table(["arch", "pretrained vs random", "random vs random", "paper"], rows)]
    for name, path in figures.items():
        lines += ["", f"![{name}]({path.parent.name}/{path.name})"]
    return lines + [""]


def verdict_table(verdicts: list[Verdict]) -> str:
    """The claims table."""
    return _table(["claim", "statement", "verdict", "evidence"],
                  [[v.claim, v.statement, v.verdict, v.evidence] for v in verdicts])


def markdown_report(study: Any, evidence: Evidence, verdicts: list[Verdict],
                    figures: dict[str, Path], pretrained_note: str, wall_s: float | None) -> str:
    """report.md."""
    stands_for = study.stands_for
    lines = [f"# tfx reproduce: {study.name}", ""]
    if study.description.strip():
        lines += [study.description.strip(), ""]
    lines += [f"Pretrained arm: {pretrained_note}",
             f"A gain or loss counts only when its 95 % CI excludes 0 and it exceeds "
             f"{evidence.margin} AUC (tfx's margin; the paper's \"comparable\" scale is half a "
             "point).", ""]
    if stands_for:
        lines += ["Architectures standing in for the paper's (smaller, for speed): "
                  + ", ".join(f"{k} for {v}" for k, v in stands_for.items()) + ".", ""]
    if wall_s is not None:
        lines += [f"Wall time of this invocation: {wall_s:.0f} s.", ""]
    lines += ["## Verdicts", "", verdict_table(verdicts), ""]
    for name in ("table1", "table2", "table3", "convergence"):
        if name in evidence.parts:
            lines += part_section(evidence.parts[name], stands_for)
        elif name in study.parts:
            lines += [f"## {TITLES[name]}", "", "Not run (left out with --only).", ""]
    if "representations" in study.parts:
        lines += representation_section(evidence.representations, figures, stands_for)
    return "\n".join(lines) + "\n"


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_to_html(markdown: str, folder: Path, title: str) -> str:
    """The report's markdown subset (headings, tables, images, paragraphs) as one HTML page;
    images are read from ``folder`` and embedded."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        head, *rows = [r for r in table if not all(set(c) <= {"-"} for c in r)]
        body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                              for row in rows) + "</table>")
        table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append([c.strip().replace("\\|", "|") for c in
                          re.split(r"(?<!\\)\|", line.strip())[1:-1]])
            continue
        flush()
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if image:
            path = folder / image.group(2)
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(image.group(1))}" '
                            f'src="data:image/png;base64,{data}"><figcaption>'
                            f"{html.escape(image.group(1))}</figcaption></figure>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
             "padding:3px 8px;text-align:left;vertical-align:top}th{background:#eee}"
             "img{max-width:100%}code{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")
