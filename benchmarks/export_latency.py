"""CPU latency and throughput of PyTorch eager vs onnxruntime fp32 vs onnxruntime int8.

For cbr-tiny and cbr-small (and ResNet50, the paper's size argument) at 224 px: batch-1
latency (median ms) and batch-32 throughput (images/s), measured in one run with the three
back-ends interleaved in blocks, round by round (so load from other processes hits all three
alike), and
the ratios to PyTorch eager. Targets: onnxruntime fp32 >= 1.3x eager at batch 1, int8 >= 1.8x.
With ``--checkpoint CKPT`` it also exports that (trained) checkpoint with ``--quantize int8``
through `tfx export` and reports the headline metric of fp32 vs int8 (target: drop <= 0.01).

Settings: onnxruntime ``ORT_ENABLE_ALL``, sequential execution, intra-op threads = the CPUs
this process may use; PyTorch gets the same thread count (``torch.set_num_threads``), eval mode
under ``inference_mode``, default (contiguous NCHW) layout. int8: static QDQ, per-channel
weights, calibrated on 32 images (random ones here: calibration content sets the scales, not the
speed; the accuracy cost is measured on real data with ``--checkpoint``).

    python benchmarks/export_latency.py                    # JSON on stdout
    python benchmarks/export_latency.py --checkpoint runs/X/checkpoints/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from transfusion_cli.deploy.export import ExportSettings, export_checkpoint, torch_to_onnx
from transfusion_cli.deploy.ort_session import cpu_threads, create_session, summarize_times
from transfusion_cli.deploy.quantize import quantize_int8
from transfusion_cli.registry import get

TARGETS = {"ort_fp32_vs_eager_batch1": 1.3, "ort_int8_vs_eager_batch1": 1.8,
           "int8_metric_drop_max": 0.01}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(runners: dict, rounds: int, per_block: int, pause_s: float = 0.2
                ) -> dict[str, list[float]]:
    """Wall times per runner: each round runs every runner (rotating order) for one untimed
    call and ``per_block`` timed ones. Blocks rather than single calls, with a pause between
    them, because both libraries' worker threads spin-wait for a while after a call and would
    otherwise steal the CPUs from whichever back-end runs next."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(pause_s)
            runners[name]()
            times[name].extend(timed(runners[name]) for _ in range(per_block))
    return times


def bench_arch(arch: str, size: int, rounds_b1: int, rounds_b32: int, workdir: Path,
               threads: int) -> dict:
    """One table row: sizes, batch-1 latency, batch-32 throughput, ratios to eager."""
    torch.manual_seed(0)
    model = get("architectures", arch).build(num_classes=5, in_chans=3).eval()
    fp32_path, int8_path = workdir / f"{arch}.fp32.onnx", workdir / f"{arch}.int8.onnx"
    torch_to_onnx(model, torch.randn(2, 3, size, size), fp32_path, opset=17)
    rng = np.random.default_rng(0)
    calibration = (rng.normal(size=(8, 3, size, size)).astype(np.float32) for _ in range(4))
    quantize_int8(fp32_path, int8_path, calibration, "image", workdir)
    sessions = {"ort_fp32": create_session(fp32_path, "cpu", threads),
                "ort_int8": create_session(int8_path, "cpu", threads)}
    row = {"arch": arch, "image_size": size,
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "fp32_mb": round(fp32_path.stat().st_size / 1e6, 2),
           "int8_mb": round(int8_path.stat().st_size / 1e6, 2)}
    for batch, rounds, per_block in ((1, rounds_b1, 5), (32, rounds_b32, 1)):
        x = rng.normal(size=(batch, 3, size, size)).astype(np.float32)
        xt = torch.from_numpy(x)
        runners = {"pytorch_eager": lambda xt=xt: model(xt),
                   **{name: (lambda s=s, x=x: s.run(x)) for name, s in sessions.items()}}
        with torch.inference_mode():
            times = interleaved(runners, rounds, per_block)
        stats = {name: summarize_times(t, batch) for name, t in times.items()}
        eager = stats["pytorch_eager"]["median_ms"]
        row[f"batch{batch}"] = {
            name: {"median_ms": s["median_ms"], "p90_ms": s["p90_ms"],
                   "images_per_s": s["images_per_s"],
                   "speedup_vs_eager": round(eager / s["median_ms"], 2)}
            for name, s in stats.items()}
    return row


def metric_drop(checkpoint: Path, workdir: Path, eval_images: int | None) -> dict:
    """Headline metric fp32 vs int8 of a trained checkpoint, through `tfx export`."""
    report = export_checkpoint(ExportSettings(checkpoint=checkpoint, out=workdir / "ckpt.onnx",
                                              quantize="int8", eval_images=eval_images))
    metric = dict(report["metric"])
    metric.update(checkpoint=str(checkpoint), architecture=report["checkpoint"]["architecture"],
                  image_size=report["settings"]["image_size"],
                  batch1_ms={k: v["median_ms"] for k, v in report["latency"].items()})
    return metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["cbr-tiny", "cbr-small", "resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds-batch1", type=int, default=8, help="rounds of 5 timed calls")
    parser.add_argument("--rounds-batch32", type=int, default=4, help="rounds of 1 timed call")
    parser.add_argument("--checkpoint", type=Path, help="trained checkpoint for the metric drop")
    parser.add_argument("--eval-images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both libraries (default: the CPUs available); 1 gives "
                             "steadier figures on a machine that other processes load")
    args = parser.parse_args()
    threads = args.threads or cpu_threads()
    torch.set_num_threads(threads)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                    "load_average_1min_at_start": round(os.getloadavg()[0], 2),
                    "torch": torch.__version__, "onnxruntime": ort.__version__},
        "settings": {"image_size": args.image_size,
                     "timed_calls_batch1": 5 * args.rounds_batch1,
                     "timed_calls_batch32": args.rounds_batch32,
                     "onnxruntime": "ORT_ENABLE_ALL, sequential, intra-op threads = CPUs",
                     "int8": "static QDQ, per-channel int8 weights, int8 activations"},
        "targets": TARGETS, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            result["rows"].append(bench_arch(arch, args.image_size, args.rounds_batch1,
                                             args.rounds_batch32, Path(tmp), threads))
        if args.checkpoint:
            result["metric"] = metric_drop(args.checkpoint, Path(tmp), args.eval_images)
    result["machine"]["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    checks = {}
    for row in result["rows"]:
        b1 = row["batch1"]
        checks[row["arch"]] = {
            "ort_fp32_batch1_target_met": b1["ort_fp32"]["speedup_vs_eager"]
            >= TARGETS["ort_fp32_vs_eager_batch1"],
            "ort_int8_batch1_target_met": b1["ort_int8"]["speedup_vs_eager"]
            >= TARGETS["ort_int8_vs_eager_batch1"]}
    if "metric" in result:
        checks["int8_metric_drop_target_met"] = result["metric"]["drop"] \
            <= TARGETS["int8_metric_drop_max"]
    result["checks"] = checks
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
