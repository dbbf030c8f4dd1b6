"""Wall time of `tfx reproduce --profile smoke` (every part of the paper at toy scale) on CPU.

Runs the command in a child process into a fresh folder, then once more into the same folder
(the resume path: every cell finished, so only the evidence and report are recomputed), and
reports for each: wall time, the child's CPU time (user + sys) and the load average around it.
CPU time / wall time shows how much of the machine the run had: on a shared machine the wall
time grows with the load while the CPU time does not. Target: the first run <= 600 s on 2
idle CPU cores.

    python benchmarks/reproduce_smoke.py                  # JSON on stdout, summary on stderr
    python benchmarks/reproduce_smoke.py --out /tmp/smoke --keep
    python benchmarks/reproduce_smoke.py --executor slurm  # through submitit (local backend)
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
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="tfx-smoke-")) / "study"
    command = [sys.executable, "-m", "transfusion_cli", "reproduce", "--profile", "smoke",
               "-o", str(out), "--jobs", str(args.jobs), "--executor", args.executor]
    if args.executor == "slurm":
        command += ["--slurm-cluster", "local"]
    first = timed_run(command)
    again = timed_run(command)
    cells = len(list(out.glob("sweeps/*/done/*.json")))
    report = (out / "report.md").read_text()
    verdicts = [line for line in report.splitlines() if re.match(r"\| C\d \|", line)]
    summary = {
        "command": " ".join(["tfx", *command[3:]]), "cpu_count": os.cpu_count(),
        "cells": cells, "first_run": {k: v for k, v in first.items() if k not in
                                      ("stdout", "stderr")},
        "rerun_no_training": {k: v for k, v in again.items() if k not in ("stdout", "stderr")},
        "target_s": 600, "verdicts": verdicts, "out": str(out),
    }
    print(json.dumps(summary, indent=2))
    sys.stderr.write(f"smoke: {cells} cells, first run {first['wall_s']:.0f} s wall "
                     f"({first['cpu_s']:.0f} s CPU, load {first['load_before']:.1f} -> "
                     f"{first['load_after']:.1f}), re-run {again['wall_s']:.0f} s; "
                     f"report {out / 'report.md'}\n" + "\n".join(verdicts) + "\n")
    if args.out is None and not args.keep:
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
