"""Wall time of `tfx reproduce --profile smoke`, the pipeline check (the paper's parts at toy
scale on synthetic data, models that learn), on CPU.

Runs the command in a child process into a fresh folder, then once more into the same folder
(the resume path: every cell finished, so only the evidence and report are recomputed), and
reports for each: wall time, the child's CPU time (user + sys) and the load average around it.
CPU time / wall time shows how much of the machine the run had: on a shared machine the wall
time grows with the load while the CPU time does not. Target: the first run <= 600 s on 2
idle CPU cores, with every arm through the learning gate (``not_learned`` empty) and the claims
it covers decided (``decided``: consistent or inconsistent; ``outcomes`` lists all).

    python benchmarks/reproduce_smoke.py                  # JSON on stdout, summary on stderr
    python benchmarks/reproduce_smoke.py --out /tmp/smoke --keep
    python benchmarks/reproduce_smoke.py --executor slurm  # through submitit (local backend)
    python benchmarks/reproduce_smoke.py --compare-jobs 2  # also --jobs 2: wall time 1 vs 2

With ``--compare-jobs N`` the study runs a second time from scratch, with ``--jobs N`` (cells
in N processes, each limited to its share of the cores), and the JSON gains ``jobs_compare``:
both first-run wall and CPU times and the ratio, measured in the same invocation. Run it on
an otherwise idle machine: on a loaded one both times measure the load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(command: list[str]) -> dict:
    """Run ``command``; wall time, children's CPU time and load averages before / after."""
    load_before = os.getloadavg()[0]
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"{' '.join(command)} failed with exit code {result.returncode}")
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "cpu_per_wall": round(cpu / wall, 2) if wall else None,
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "stdout": result.stdout, "stderr": result.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Study folder (default: a "
                        "temporary one, removed unless --keep).")
    parser.add_argument("--keep", action="store_true", help="Keep the study folder.")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--executor", default="local", choices=("local", "slurm"))
    parser.add_argument("--compare-jobs", type=int, default=None, metavar="N",
                        help="Also run the study afresh with --jobs N and report both wall "
                        "times.")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="tfx-smoke-")) / "study"

    def smoke_command(folder: Path, jobs: int) -> list[str]:
        command = [sys.executable, "-m", "transfusion_cli", "reproduce", "--profile", "smoke",
                   "-o", str(folder), "--jobs", str(jobs), "--executor", args.executor]
        return command + (["--slurm-cluster", "local"] if args.executor == "slurm" else [])

    command = smoke_command(out, args.jobs)
    first = timed_run(command)
    again = timed_run(command)
    cells = len(list(out.glob("sweeps/*/done/*.json")))
    report = (out / "report.md").read_text()
    verdicts = [line for line in report.splitlines() if re.match(r"\| C\d \|", line)]
    # The pipeline check's own bar: every arm learned, every claim it covers decided.
    judged = json.loads((out / "verdicts.json").read_text())["verdicts"]
    outcomes = {v["claim"]: v["verdict"] for v in judged}
    not_learned = sorted({r for v in judged for p in v["parts"]
                          for r in [p.get("reason") or ""] if "not learned" in r})
    summary = {
        "command": " ".join(["tfx", *command[3:]]), "cpu_count": os.cpu_count(),
        "cells": cells, "first_run": {k: v for k, v in first.items() if k not in
                                      ("stdout", "stderr")},
        "rerun_no_training": {k: v for k, v in again.items() if k not in ("stdout", "stderr")},
        "target_s": 600, "verdicts": verdicts, "outcomes": outcomes,
        "decided": sorted(c for c, v in outcomes.items() if v in ("consistent", "inconsistent")),
        "not_learned": not_learned, "load_avg_1_5_15_at_end": list(os.getloadavg()),
        "out": str(out),
    }
    if args.compare_jobs:
        other = Path(tempfile.mkdtemp(prefix="tfx-smoke-jobs-")) / "study"
        parallel = timed_run(smoke_command(other, args.compare_jobs))
        shutil.rmtree(other.parent)
        summary["jobs_compare"] = {
            "jobs": [args.jobs, args.compare_jobs],
            "wall_s": [first["wall_s"], parallel["wall_s"]],
            "cpu_s": [first["cpu_s"], parallel["cpu_s"]],
            "load_before": [first["load_before"], parallel["load_before"]],
            "wall_ratio": round(first["wall_s"] / parallel["wall_s"], 2)
            if parallel["wall_s"] else None}
        sys.stderr.write(f"--jobs {args.jobs}: {first['wall_s']:.0f} s wall; --jobs "
                         f"{args.compare_jobs}: {parallel['wall_s']:.0f} s wall "
                         f"({summary['jobs_compare']['wall_ratio']}x)\n")
    print(json.dumps(summary, indent=2))
    sys.stderr.write(f"smoke: {cells} cells, first run {first['wall_s']:.0f} s wall "
                     f"({first['cpu_s']:.0f} s CPU, load {first['load_before']:.1f} -> "
                     f"{first['load_after']:.1f}), re-run {again['wall_s']:.0f} s; "
                     f"report {out / 'report.md'}\n" + "\n".join(verdicts) + "\n")
    if args.out is None and not args.keep:
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
