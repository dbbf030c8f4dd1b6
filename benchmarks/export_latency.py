"""CPU latency and throughput of onnxruntime fp32 and int8 against the fastest PyTorch eager.

For cbr-tiny and cbr-small (``--archs``) at 224 px: batch-1 latency (median ms) and batch-32
throughput (images/s). The baseline is the *fastest* eager configuration, measured in the same
run: PyTorch eager in the default NCHW layout and in ``channels_last`` (which `tfx fit` trains
in); every ratio is against the faster of the two. All runners are interleaved in blocks,
round by round with a rotating order (so load from other processes hits all alike), and each
figure is a median.

Besides the shipped default (``tfx export --quantize int8``: QDQ, U8S8, per-channel, see
``transfusion_cli.deploy.quantize.Int8Recipe``) it times every setting tried when choosing it
(``--no-sweep`` skips them): the other int8 recipes (QDQ vs QOperator, per-channel vs
per-tensor, signed vs unsigned and symmetric activations, which operators are quantised) and
session settings of the default model (graph optimisation level, onnxruntime's NHWC layout
transformer off, one intra-op thread, a session loaded from an optimised model saved at export
time).

With ``--checkpoint CKPT [CKPT ...]`` it exports each (trained) checkpoint with
``--quantize int8`` through `tfx export` and reports the headline metric of fp32 vs int8 on its
validation split (target: drop <= 0.01).

Settings: intra-op threads = the CPUs this process may use, for both libraries; eval mode
under ``inference_mode``. int8 is calibrated on 16 random images here (calibration content sets
the scales, not the speed; the accuracy cost is measured with ``--checkpoint``).

    python benchmarks/export_latency.py                    # JSON on stdout, table on stderr
    python benchmarks/export_latency.py --quick            # fewer rounds, cbr-tiny only
    python benchmarks/export_latency.py --checkpoint runs/X/checkpoints/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from transfusion_cli.deploy.export import ExportSettings, export_checkpoint, torch_to_onnx
from transfusion_cli.deploy.ort_session import (
    NHWC_TRANSFORMER,
    cpu_threads,
    create_session,
    summarize_times,
)
from transfusion_cli.deploy.quantize import DEFAULT_INT8, Int8Recipe, quantize_int8
from transfusion_cli.plugins import get

TARGETS = {"int8_vs_fastest_eager_batch1": 2.5, "int8_vs_fastest_eager_batch32": 3.5,
           "int8_metric_drop_max": 0.01}
# Int8 recipes tried besides the default (each a separate quantisation of the same model).
RECIPES = {
    "qdq-s8s8-per-channel (tfx <= 0.x default)": Int8Recipe(activations="int8"),
    "qoperator-u8s8-per-channel": Int8Recipe(format="qoperator"),
    "qdq-u8s8-per-tensor": Int8Recipe(per_channel=False),
    "qdq-s8s8-per-channel-symmetric-activations": Int8Recipe(activations="int8",
                                                             symmetric_activations=True),
    "qdq-u8s8-per-channel-conv-gemm-only": Int8Recipe(op_types=("Conv", "Gemm")),
}
# Session settings tried on the default int8 model (tfx's sessions: level all, NHWC on).
SESSION_SETTINGS = {
    "level-extended (no layout transforms)": {"level": "extended"},
    "nhwc-transformer-off": {"disabled_optimizers": [NHWC_TRANSFORMER]},
    "one-intra-op-thread": {"threads": 1},
    "saved-optimised-model (extended, loaded at all)": {"saved": "extended"},
}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(runners: dict[str, Callable[[], object]], rounds: int, per_block: int,
                warm_each_block: bool, pause_s: float = 0.2) -> dict[str, list[float]]:
    """Wall times per runner: each round runs every runner (rotating order) for ``per_block``
    timed calls, after one untimed call when ``warm_each_block``. Blocks rather than single
    calls, with a pause between them, because both libraries' worker threads spin-wait for a
    while after a call and would otherwise steal the CPUs from whichever back-end runs next."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for fn in runners.values():  # one warm-up call each (allocations, kernel selection)
        fn()
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(pause_s)
            if warm_each_block:
                runners[name]()
            times[name].extend(timed(runners[name]) for _ in range(per_block))
    return times


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_sessions(fp32_path: Path, workdir: Path, threads: int, size: int, sweep: bool,
                   rng: np.random.Generator) -> tuple[dict, dict]:
    """(onnxruntime sessions by name, model sizes in MB): fp32, the default int8, the sweep."""
    calibration = [rng.normal(size=(8, 3, size, size)).astype(np.float32) for _ in range(2)]
    recipes = {f"int8 {DEFAULT_INT8.label} (default)": DEFAULT_INT8}
    if sweep:
        recipes.update({f"int8 {name}": recipe for name, recipe in RECIPES.items()})
    sessions = {"ort fp32": create_session(fp32_path, "cpu", threads)}
    sizes = {"fp32": round(fp32_path.stat().st_size / 1e6, 2)}
    default_path = None
    for index, (name, recipe) in enumerate(recipes.items()):
        path = workdir / f"int8-{index}.onnx"
        quantize_int8(fp32_path, path, iter(calibration), "image", workdir, recipe)
        sessions[name] = create_session(path, "cpu", threads)
        sizes[name] = round(path.stat().st_size / 1e6, 2)
        default_path = default_path or path
    if sweep:
        for name, tuning in SESSION_SETTINGS.items():
            tuning = dict(tuning)
            session_threads = tuning.pop("threads", threads)
            if tuning.pop("saved", None):
                saved = workdir / "int8-default.optimised.onnx"
                create_session(default_path, "cpu", threads,
                               {"level": "extended", "optimized_path": saved})
                started = time.perf_counter()
                sessions[f"int8 default, {name}"] = create_session(saved, "cpu", threads)
                sizes["session_load_s_saved_optimised"] = round(time.perf_counter() - started, 3)
                continue
            sessions[f"int8 default, {name}"] = create_session(default_path, "cpu",
                                                               session_threads, tuning)
        started = time.perf_counter()
        create_session(default_path, "cpu", threads)
        sizes["session_load_s_default"] = round(time.perf_counter() - started, 3)
    return sessions, sizes


def bench_arch(arch: str, size: int, rounds: dict[int, int], workdir: Path, threads: int,
               sweep: bool) -> dict:
    """One architecture: every runner at batch 1 and 32, ratios to the fastest eager."""
    log(f"{arch}: exporting and quantising ...")
    torch.manual_seed(0)
    model = get("architectures", arch).build(num_classes=5, in_chans=3).eval()
    model_cl = get("architectures", arch).build(num_classes=5, in_chans=3).eval()
    model_cl.load_state_dict(model.state_dict())
    model_cl = model_cl.to(memory_format=torch.channels_last)
    fp32_path = workdir / f"{arch}.fp32.onnx"
    torch_to_onnx(model, torch.randn(2, 3, size, size), fp32_path, opset=17)
    rng = np.random.default_rng(0)
    sessions, sizes = build_sessions(fp32_path, workdir, threads, size, sweep, rng)
    row = {"arch": arch, "image_size": size,
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "model_mb": sizes}
    for batch, per_block in ((1, 5), (32, 1)):
        x = rng.normal(size=(batch, 3, size, size)).astype(np.float32)
        xt = torch.from_numpy(x)
        xcl = xt.contiguous(memory_format=torch.channels_last)
        runners = {"eager nchw": lambda xt=xt: model(xt),
                   "eager channels_last": lambda xcl=xcl: model_cl(xcl),
                   **{name: (lambda s=s, x=x: s.run(x)) for name, s in sessions.items()}}
        log(f"{arch}: batch {batch}, {rounds[batch]} rounds of {len(runners)} runners ...")
        with torch.inference_mode():
            times = interleaved(runners, rounds[batch], per_block, warm_each_block=batch == 1)
        stats = {name: summarize_times(t, batch) for name, t in times.items()}
        fastest = min(("eager nchw", "eager channels_last"), key=lambda n: stats[n]["median_ms"])
        base = stats[fastest]["median_ms"]
        row[f"batch{batch}"] = {
            "fastest_eager": fastest,
            "runners": {name: {"median_ms": s["median_ms"], "p90_ms": s["p90_ms"],
                               "images_per_s": s["images_per_s"],
                               "vs_fastest_eager": round(base / s["median_ms"], 2)}
                        for name, s in stats.items()}}
    return row


def metric_drop(checkpoint: Path, workdir: Path, eval_images: int | None) -> dict:
    """Headline metric fp32 vs int8 of a trained checkpoint, through `tfx export`."""
    out = workdir / f"{checkpoint.parent.parent.name or 'ckpt'}.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=checkpoint, out=out,
                                              quantize="int8", eval_images=eval_images))
    metric = dict(report["metric"])
    metric.update(checkpoint=str(checkpoint), architecture=report["checkpoint"]["architecture"],
                  dataset=report["checkpoint"]["dataset"],
                  image_size=report["settings"]["image_size"],
                  recipe=report["settings"]["int8"].get("recipe"),
                  batch1_ms={k: v["median_ms"] for k, v in report["latency"].items()})
    return metric


def print_table(rows: list[dict]) -> None:
    """A readable table of every runner on stderr (the JSON goes to stdout)."""
    for row in rows:
        log(f"\n{row['arch']} @ {row['image_size']} px: ratio = fastest eager median / median")
        b1, b32 = row["batch1"], row["batch32"]
        log(f"  {'runner':62s} {'b1 ms':>9s} {'x':>6s} {'b32 img/s':>10s} {'x':>6s}")
        for name, r1 in b1["runners"].items():
            r32 = b32["runners"][name]
            log(f"  {name:62s} {r1['median_ms']:9.1f} {r1['vs_fastest_eager']:6.2f} "
                f"{r32['images_per_s']:10.1f} {r32['vs_fastest_eager']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["cbr-tiny", "cbr-small"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds-batch1", type=int, default=6, help="rounds of 5 timed calls")
    parser.add_argument("--rounds-batch32", type=int, default=3, help="rounds of 1 timed call")
    parser.add_argument("--no-sweep", action="store_true",
                        help="time only eager, fp32 and the default int8")
    parser.add_argument("--quick", action="store_true",
                        help="cbr-tiny only, 2 rounds each (a smoke run)")
    parser.add_argument("--checkpoint", type=Path, nargs="*", default=[],
                        help="trained checkpoints for the int8 metric drop")
    parser.add_argument("--eval-images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both libraries (default: the CPUs available)")
    args = parser.parse_args()
    if args.quick:
        args.archs, args.rounds_batch1, args.rounds_batch32 = ["cbr-tiny"], 2, 2
    threads = args.threads or cpu_threads()
    torch.set_num_threads(threads)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                    "load_average_1min_at_start": round(os.getloadavg()[0], 2),
                    "torch": torch.__version__, "onnxruntime": ort.__version__},
        "settings": {"image_size": args.image_size,
                     "timed_calls_batch1": 5 * args.rounds_batch1,
                     "timed_calls_batch32": args.rounds_batch32,
                     "baseline": "the faster of PyTorch eager NCHW and channels_last",
                     "onnxruntime": "ORT_ENABLE_ALL, sequential, intra-op threads = CPUs",
                     "int8_default": DEFAULT_INT8.label},
        "targets": TARGETS, "rows": [], "metrics": []}
    with tempfile.TemporaryDirectory() as tmp:
        rounds = {1: args.rounds_batch1, 32: args.rounds_batch32}
        for arch in args.archs:
            result["rows"].append(bench_arch(arch, args.image_size, rounds, Path(tmp), threads,
                                             not args.no_sweep))
        for checkpoint in args.checkpoint:
            log(f"metric drop: exporting {checkpoint} with --quantize int8 ...")
            result["metrics"].append(metric_drop(checkpoint, Path(tmp), args.eval_images))
    result["machine"]["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    default = next(name for name in result["rows"][0]["batch1"]["runners"] if "(default)" in name)
    checks = {}
    for row in result["rows"]:
        checks[row["arch"]] = {
            f"int8_batch{b}_target_met": row[f"batch{b}"]["runners"][default]["vs_fastest_eager"]
            >= TARGETS[f"int8_vs_fastest_eager_batch{b}"] for b in (1, 32)}
    for metric in result["metrics"]:
        checks[f"int8_metric_drop_target_met {metric['checkpoint']}"] = \
            metric["drop"] <= TARGETS["int8_metric_drop_max"]
    result["checks"] = checks
    print_table(result["rows"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
