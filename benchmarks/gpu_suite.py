"""The GPU suite: one command that measures tfx on a CUDA machine and prints one JSON summary.

Sections (each reports its own figures and an ``ok`` flag; a failing section is recorded, not
fatal, so one broken part never hides the others):

a. ``training``: `tfx fit` training images/s (AMP + channels_last, its loader and bookkeeping)
   vs a bare PyTorch loop with the same settings (AMP dtype, channels_last, Adam, batch) on
   the same in-memory images, ResNet50 and cbr-small at 224 and 587 px; target >= 0.9x.
b. ``ddp``: `torchrun -m transfusion_cli fit` on every GPU (1 GPU is a 1-process run) and a
   single-process evaluation of its checkpoint: the logged validation metrics must be equal.
c. ``onnxruntime``: exported cbr-small, onnxruntime CUDA provider vs eager CUDA (fp32
   channels_last, and fp16 autocast), batch 1 latency and batch 32 throughput.
d. ``nvjpeg`` (full-size 4752x3168 fundus JPEGs: Pillow reduced-scale decoding on every core vs
   nvjpeg batches; pixel difference) and ``moments`` (benchmarks/similarity_device.py: CUDA vs
   CPU moments, float32-products error).
e. ``gpu_tests``: ``pytest -m gpu``.

Without CUDA every section runs its CPU fallback (tiny sizes with ``--quick``) and says CUDA
is absent; ``--quick`` is also the smoke run for a GPU machine (about a minute). Budget: under
8 minutes on one data-centre GPU without ``--quick``.

    python benchmarks/gpu_suite.py            # on the GPU machine
    python benchmarks/gpu_suite.py --quick    # smoke run (CPU fallbacks here)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fit_throughput  # noqa: E402  (the in-memory dataset plugin and its constants)
import image_cache  # noqa: E402  (the full-size fundus photo generator)

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def section(name: str, fn: Callable[[], dict], results: dict) -> None:
    """Run one section; record its figures, or the error that stopped it."""
    print(f"gpu_suite: {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        results[name] = fn()
        results[name].setdefault("ok", True)
    except Exception as exc:  # a suite reports every section, whatever broke
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-2000:]}
    results[name]["seconds"] = round(time.perf_counter() - started, 1)


# ----------------------------------------------------------------------------- a. training


def bare_loop(images: torch.Tensor, labels: torch.Tensor, arch: str, batch: int, steps: int,
              amp_dtype: torch.dtype | None) -> float:
    """Images/s of the plainest AMP + channels_last loop on device-resident batches."""
    from transfusion_cli.plugins import get

    torch.manual_seed(0)
    model = get("architectures", arch).build(num_classes=5, in_chans=3)
    model = model.to(DEVICE, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    mean = torch.tensor(fit_throughput.MEAN, device=DEVICE).view(1, 3, 1, 1)
    std = torch.tensor(fit_throughput.STD, device=DEVICE).view(1, 3, 1, 1)

    def step(i: int) -> None:
        chunk = slice((i * batch) % len(images), (i * batch) % len(images) + batch)
        x = images[chunk].to(DEVICE, non_blocking=True).permute(0, 3, 1, 2).float() / 255
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        y = labels[chunk].to(DEVICE, non_blocking=True)
        with torch.autocast(DEVICE.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    for i in range(2):  # warm-up (cuDNN autotuning, allocations)
        step(i)
    synchronize()
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    synchronize()
    return steps * batch / (time.perf_counter() - started)


def tfx_loop(arch: str, size: int, batch: int, steps: int, out: Path) -> float:
    """Images/s of `fit` on the same in-memory data (train time only, as fit reports it)."""
    from transfusion_cli.train import FitConfig, fit

    config = FitConfig(data=fit_throughput.DATASET, arch=arch, image_size=size,
                       batch_size=batch, steps=steps, epochs=None, eval_every=steps, seed=0,
                       device=DEVICE.type, workers=2 if CUDA else 0, out=str(out),
                       overwrite=True)
    return fit(config, show_progress=False).images_per_s


def training(quick: bool) -> dict:
    from transfusion_cli.models.runtime import make_runtime
    from transfusion_cli.plugins import load_registry, reset_registry

    amp_dtype = make_runtime(DEVICE, None, False).amp_dtype
    cases = ([("cbr-tiny", 64, 8, 3)] if quick or not CUDA else
             [("resnet50", 224, 64, 20), ("resnet50", 587, 16, 12),
              ("cbr-small", 224, 64, 20), ("cbr-small", 587, 16, 12)])
    rows = []
    for arch, size, batch, steps in cases:
        n = batch * steps
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        labels = rng.integers(0, 5, n)
        reset_registry(load_registry(extra_plugins=[
            ("bench", fit_throughput.InMemoryPlugin(images, labels))]))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                pinned = torch.from_numpy(images)
                pinned = pinned.pin_memory() if CUDA else pinned
                bare, tfx = [], []
                for _ in range(2):  # alternate, medians
                    bare.append(bare_loop(pinned, torch.from_numpy(labels), arch, batch, steps,
                                          amp_dtype))
                    tfx.append(tfx_loop(arch, size, batch, steps, Path(tmp) / "run"))
        finally:
            reset_registry(None)
        ratio = float(np.median(tfx) / np.median(bare))
        rows.append({"arch": arch, "image_size": size, "batch": batch, "steps": steps,
                     "bare_images_per_s": round(float(np.median(bare)), 1),
                     "tfx_images_per_s": round(float(np.median(tfx)), 1),
                     "tfx_vs_bare": round(ratio, 3), "target_met": ratio >= 0.9})
    return {"device": DEVICE.type, "amp_dtype": str(amp_dtype), "channels_last": True,
            "rows": rows, "ok": all(r["target_met"] for r in rows)}


# ----------------------------------------------------------------------------- b. DDP


def ddp(quick: bool) -> dict:
    from transfusion_cli.io import read_jsonl
    from transfusion_cli.models.checkpoint import build_model, load_checkpoint
    from transfusion_cli.runfolder import RunFolder
    from transfusion_cli.train import resolve_config, score_loader
    from transfusion_cli.train.loaders import load_bundle

    gpus = torch.cuda.device_count() if CUDA else 0
    procs = max(1, gpus)
    size, steps = (32, 4) if quick or not CUDA else (128, 40)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "ddp"
        torchrun = Path(sys.executable).parent / "torchrun"
        launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m",
                                                                "torch.distributed.run"]
        args = ["fit", "--data", "synthetic-retina", "--option", "train_size=64",
                "--option", "val_size=50", "--option", "test_size=0", "--arch", "cbr-tiny",
                "--image-size", str(size), "--batch-size", "8", "--steps", str(steps),
                "--eval-every", str(steps), "--workers", "0", "--device", DEVICE.type,
                "--out", str(run), "--json"]
        command = [*launcher, "--standalone", f"--nproc_per_node={procs}", "-m",
                   "transfusion_cli", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=420, cwd=tmp)
        if done.returncode != 0:
            return {"ok": False, "processes": procs, "stderr": done.stderr[-3000:]}
        logged = read_jsonl(RunFolder(run).metrics)[-1]
        config = resolve_config(RunFolder(run).config)
        bundle = load_bundle(config)
        model = build_model(load_checkpoint(RunFolder(run).last)).to(DEVICE)
        loader = torch.utils.data.DataLoader(bundle.val, batch_size=7)
        metrics, _, _ = score_loader(model, loader, bundle.info, DEVICE.type)
    keys = [k for k in ("auc", "accuracy", "kappa", "referable_auc") if k in logged]
    differences = {k: abs(float(metrics[k]) - float(logged[k])) for k in keys}
    return {"processes": procs, "gpus": gpus, "device": DEVICE.type,
            "logged": {k: logged[k] for k in keys}, "max_abs_difference":
            max(differences.values()), "ok": max(differences.values()) <= 1e-6,
            "note": "" if gpus > 1 else "one process: multi-GPU DDP needs more than one GPU"}


# ----------------------------------------------------------------------------- c. onnxruntime


def onnxruntime_latency(quick: bool) -> dict:
    from transfusion_cli.deploy.export import torch_to_onnx
    from transfusion_cli.deploy.ort_session import create_session, summarize_times
    from transfusion_cli.plugins import get

    size = 64 if quick or not CUDA else 224
    torch.manual_seed(0)
    model = get("architectures", "cbr-small").build(num_classes=5, in_chans=3).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cbr-small.onnx"
        torch_to_onnx(model, torch.randn(2, 3, size, size), path, opset=17)
        session = create_session(path, "auto")
        model = model.to(DEVICE, memory_format=torch.channels_last)
        rows = {}
        for batch, repeats in ((1, 50), (32, 10)):
            x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
            xt = torch.from_numpy(x).to(DEVICE).contiguous(memory_format=torch.channels_last)

            def eager(xt=xt) -> None:
                model(xt)
                synchronize()

            def eager_fp16(xt=xt) -> None:
                with torch.autocast(DEVICE.type, enabled=CUDA):
                    model(xt)
                synchronize()

            runners = {"eager_fp32_channels_last": eager, "eager_autocast": eager_fp16,
                       f"onnxruntime_{session.provider}": lambda x=x: session.run(x)}
            times: dict[str, list[float]] = {name: [] for name in runners}
            with torch.inference_mode():
                for fn in runners.values():
                    fn()
                for _ in range(repeats):
                    for name, fn in runners.items():
                        started = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - started)
            stats = {name: summarize_times(t, batch) for name, t in times.items()}
            fastest = min(v["median_ms"] for k, v in stats.items() if k.startswith("eager"))
            rows[f"batch{batch}"] = {name: {"median_ms": s["median_ms"],
                                            "images_per_s": s["images_per_s"],
                                            "vs_fastest_eager": round(fastest / s["median_ms"],
                                                                      2)}
                                     for name, s in stats.items()}
    return {"image_size": size, "provider": session.provider,
            "fallback_reason": session.fallback_reason, "rows": rows}


# ----------------------------------------------------------------------------- d. nvjpeg, moments


def nvjpeg(quick: bool) -> dict:
    from tfx_plugins.preprocess.fundus import FUNDUS_CROP

    from transfusion_cli.data.cache import fill_workers
    from transfusion_cli.data.nvjpeg import decode_reduced
    from transfusion_cli.data.preprocess import load_prepared, prepare_image

    count, size = (4, 256) if quick else (32, 587)
    photo = (1584, 1056) if quick else image_cache.EYEPACS_SIZE
    with tempfile.TemporaryDirectory() as tmp:
        base = image_cache.fundus_photo(np.random.default_rng(0), *photo)
        paths = []
        for k in range(count):
            paths.append(Path(tmp) / f"{k}.jpeg")
            from PIL import Image

            Image.fromarray(np.roll(base, 40 * k, axis=1)).save(paths[-1], quality=95)
        workers = fill_workers()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            started = time.perf_counter()
            cpu = list(pool.map(lambda p: load_prepared(p, size, 3, FUNDUS_CROP), paths))
            cpu_rate = count / (time.perf_counter() - started)
            result = {"images": count, "photo": f"{photo[0]}x{photo[1]}", "image_size": size,
                      "cpu_threads": workers, "pillow_reduced_images_per_s": round(cpu_rate, 2)}
            if not CUDA:
                result["nvjpeg"] = "skipped: CUDA absent"
                return result
            decode_reduced(paths[:2], size)  # warm-up (nvjpeg handles, CUDA context)
            synchronize()
            started = time.perf_counter()
            gpu = []
            for start in range(0, count, 32):
                decoded = decode_reduced(paths[start: start + 32], size)
                gpu.extend(pool.map(lambda im: prepare_image(im, size, 3, FUNDUS_CROP), decoded))
            gpu_rate = count / (time.perf_counter() - started)
    difference = np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(cpu, gpu,
                                                                                  strict=True)])
    result.update(nvjpeg_images_per_s=round(gpu_rate, 2),
                  nvjpeg_vs_pillow=round(gpu_rate / cpu_rate, 2),
                  mean_abs_levels_vs_pillow=round(float(difference), 3))
    return result


def moments(quick: bool) -> dict:
    command = [sys.executable, str(HERE / "similarity_device.py")]
    if quick or not CUDA:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"ok": False, "stderr": done.stderr[-3000:]}
    report = json.loads(done.stdout)
    report.pop("values_cpu", None)
    agreement = report.get("moments_agreement", {})
    report["ok"] = agreement.get("met", True)
    return report


# ----------------------------------------------------------------------------- e. tests


def gpu_tests(quick: bool) -> dict:
    root = HERE.parent
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                           "no:cacheprovider", str(root / "tests")], capture_output=True,
                          text=True, timeout=600, cwd=root)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return {"returncode": done.returncode, "summary": tail,
            "ok": done.returncode in (0, 5)}  # 5: nothing collected/selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--sections", default="training,ddp,onnxruntime,nvjpeg,moments,gpu_tests",
                        help="comma-separated subset of the sections to run")
    args = parser.parse_args()
    sections = {"training": training, "ddp": ddp, "onnxruntime": onnxruntime_latency,
                "nvjpeg": nvjpeg, "moments": moments, "gpu_tests": gpu_tests}
    results: dict = {
        "cuda": torch.cuda.get_device_name(0) if CUDA else "absent: CPU fallbacks only",
        "gpus": torch.cuda.device_count() if CUDA else 0, "quick": args.quick,
        "torch": torch.__version__, "cpus": os.cpu_count()}
    started = time.perf_counter()
    for name in args.sections.split(","):
        section(name.strip(), lambda fn=sections[name.strip()]: fn(args.quick), results)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["ok"] = all(v.get("ok", True) for v in results.values() if isinstance(v, dict))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
