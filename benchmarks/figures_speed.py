"""`tfx figures` numbers: the old pairwise path against the activation cache, same sweep.

Makes a tiny compare-inits sweep shaped like the smoke study's representations part (cbr-small
and cbr-tiny, random and a pretrained stand-in, 2 seeds, 32 px synthetic retina, 96 validation
images), then computes every number of the fig2, layers and scatter figures twice:

- old: what `tfx figures` did before (and `tfx reproduce` separately): one
  ``compare_checkpoints`` call per pair of checkpoints, each building the probe set, loading
  both checkpoints and running both networks over every probe image;
- new: ``compare.figures.representation_numbers``: every checkpoint runs once over one fixed
  probe set (``similarity.ActivationCache``) and every pair is computed from the cache.

Both use the same blocks and seeds, so the numbers must be identical (max |difference| is
printed; the run fails if it is not 0). The old code asked Figure 2 for the top two blocks
only, but its forward passes ran the whole network either way, so its time is the same.
Prints old and new seconds side by side and their ratio, measured in the same run.

The saving grows with the number of pairs per checkpoint: the pairwise path runs networks
2 x (pairs) times, the cache once per checkpoint (2 seeds here: 76 passes against 16; with 3
seeds 168 against 24); it also builds the probe set once per sweep instead of once per pair.

    python benchmarks/figures_speed.py [--seeds 2] [--samples 128] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ARCHS = ("cbr-small", "cbr-tiny")
DATA = ["--data", "synthetic-retina", "--image-size", "32", "--batch-size", "16",
        "--option", "train_size=64", "--option", "val_size=96", "--option", "test_size=32"]


def tfx(*args: str) -> None:
    """Run a tfx command in this process (its progress output silenced)."""
    from transfusion_cli.cli import main

    with contextlib.redirect_stderr(io.StringIO()) as err, \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            main(list(args))
        except SystemExit as exc:
            if exc.code:
                sys.exit(f"tfx {' '.join(args)} failed:\n{err.getvalue()[-2000:]}")


def make_sweep(root: Path, seeds: int) -> Path:
    """Stand-in sources, then the sweep: ARCHS x (random, imagenet from the source) x seeds."""
    weights = []
    for arch in ARCHS:
        tfx("fit", *DATA, "--arch", arch, "--steps", "3", "--out", str(root / f"pre-{arch}"))
        weights += ["--weights", f"{arch}={root / f'pre-{arch}' / 'checkpoints' / 'best.pt'}"]
    tfx("compare-inits", *DATA, "--arch", ",".join(ARCHS), "--inits", "random,imagenet",
        *weights, "--seeds", str(seeds), "--steps", "3", "--scheduler", "constant",
        "--out", str(root / "sweep"))
    return root / "sweep"


def old_numbers(sweep: Path, samples: int) -> tuple[dict, int]:
    """{(a, b): {block: value}} the old way, and how many pairwise passes it made."""
    from transfusion_cli.compare.figures import (
        body_blocks,
        finished_runs,
        run_pairs,
        transfer_init,
    )
    from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints

    runs = finished_runs(sweep).runs
    transfer = transfer_init(runs, None)
    values: dict = {}
    calls = 0

    def similarity(a: Path, b: Path, blocks: list[str]) -> None:
        nonlocal calls
        result = compare_checkpoints(a, b, metrics="cca", layers=blocks, samples=samples,
                                     seed=0, device="cpu")
        values[(a, b)] = {r.layer_a: r.metrics["cca"].value
                          for r in result.comparisons[0].results}
        calls += 1

    for group in dict.fromkeys(r.group for r in runs):
        members = [r for r in runs if r.group == group]
        blocks = body_blocks(members[0].arch)
        pairs = run_pairs(members, transfer)
        for _, a, b in pairs:  # fig2
            similarity(a.final_ckpt, b.final_ckpt, blocks)
        for run in members:  # layers
            similarity(run.init_ckpt, run.final_ckpt, blocks)
        for _, a, b in pairs:  # scatter: at init, then trained (recomputed, as it was)
            similarity(a.init_ckpt, b.init_ckpt, blocks)
            similarity(a.final_ckpt, b.final_ckpt, blocks)
    return values, calls


def differences(numbers: dict, old: dict, sweep: Path) -> list[float]:
    """|new - old| for every per-seed and per-pair value the new numbers hold."""
    import numpy as np

    from transfusion_cli.compare.figures import finished_runs, run_pairs

    runs = finished_runs(sweep).runs
    found = []
    for group, arms in numbers["to_init"].items():
        for init, arm in arms.items():
            for index, seed in enumerate(arm["seeds"]):
                run = next(r for r in runs if (r.group, r.init, r.seed) == (group, init, seed))
                found += [abs(b["values"][index] - old[(run.init_ckpt, run.final_ckpt)]
                              [b["block"]]) for b in arm["blocks"]]
    for group, entry in numbers["fig2"].items():
        members = [r for r in runs if r.group == group]
        by_name = {(a.name, b.name): (a, b) for _, a, b in run_pairs(members,
                                                                     numbers["transfer"])}
        for kind in ("transfer vs random", "random vs random"):
            for pair in entry.get(kind, {}).get("pairs", []):
                a, b = by_name[(pair["a"], pair["b"])]
                values = old[(a.final_ckpt, b.final_ckpt)]
                found.append(abs(pair["value"] - float(np.mean([values[t]
                                                               for t in entry["blocks"]]))))
    for point in numbers["scatter"]:
        members = [r for r in runs if r.group == point["group"]]
        a = next(r for r in members if r.name == point["a"])
        b = next(r for r in members if r.name == point["b"])
        found.append(abs(point["at_init"] - old[(a.init_ckpt, b.init_ckpt)][point["block"]]))
        found.append(abs(point["trained"] - old[(a.final_ckpt, b.final_ckpt)][point["block"]]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per path (best kept)")
    args = parser.parse_args()

    import torch

    from transfusion_cli.compare.figures import (
        FigureSettings,
        body_blocks,
        finished_runs,
        representation_numbers,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tfx-figures-speed-") as tmp:
        sweep = make_sweep(Path(tmp), args.seeds)
        for arch in ARCHS:  # imports and the registry, outside both timings
            body_blocks(arch)
        old_times, new_times = [], []
        with contextlib.redirect_stderr(io.StringIO()):
            for _ in range(args.repeats):  # alternated, best of each: less noise from load
                started = time.perf_counter()
                old, calls = old_numbers(sweep, args.samples)
                old_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                found = finished_runs(sweep)
                numbers = representation_numbers(found, FigureSettings(samples=args.samples,
                                                                       device="cpu"),
                                                 ("fig2", "layers", "scatter"))
                new_times.append(time.perf_counter() - started)
        diffs = differences(numbers, old, sweep)
    old_s, new_s = min(old_times), min(new_times)
    checkpoints = 2 * len(found.runs)
    passes = sum(g["network_passes"] for g in numbers["groups"].values())
    print(f"{'':28}{'old (pairwise)':>16}{'new (cached)':>16}")
    print(f"{'seconds':28}{old_s:16.2f}{new_s:16.2f}")
    print(f"{'network passes over probe':28}{2 * calls:16d}{passes:16d}")
    print(f"speed-up {old_s / new_s:.1f}x; {len(diffs)} values compared, max |new - old| = "
          f"{max(diffs):.3g}")
    print(json.dumps({"old_s": round(old_s, 3), "new_s": round(new_s, 3),
                      "ratio": round(old_s / new_s, 2), "pairwise_calls": calls,
                      "checkpoints": checkpoints, "network_passes_new": passes,
                      "network_passes_old": 2 * calls, "values": len(diffs),
                      "max_abs_diff": max(diffs), "torch_threads": torch.get_num_threads(),
                      "seeds": args.seeds, "samples": args.samples, "repeats": args.repeats,
                      "old_all_s": [round(t, 3) for t in old_times],
                      "new_all_s": [round(t, 3) for t in new_times]}))
    if max(diffs) != 0.0:
        sys.exit("the cached numbers differ from the pairwise ones")


if __name__ == "__main__":
    main()
