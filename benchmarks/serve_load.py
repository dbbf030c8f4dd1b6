"""`tfx serve` under load: p50/p99 latency and images/s at 1, 8 and 32 concurrent clients,
beside in-process `tfx predict` throughput (``OnnxClassifier.predict_files``, batch 32) on the
same machine in the same run (measured right before and after each load level).

The server runs as its own process (`tfx serve`, default settings except ``--max-concurrency``
so that 32 clients are queued, not refused); the clients are threads of this process, each
with one keep-alive HTTP connection, posting one image per request (the hardest case for a
server: every image pays a whole request) for ``--seconds`` per level. Both share this
machine's CPUs, as a client on the same host would. Images: the test split of the model's
dataset written by `tfx data save` (``--images`` of them), the same files for both.

Without ``--model`` it makes the quick start's model (`tfx fit` on synthetic-retina, 2 steps,
``--arch``/``--image-size``; weights do not change speed) and exports it with ``--quantize
int8``; ``--precision fp32`` serves the fp32 file instead.

Aims (issue 21): 8 clients >= 80 % of in-process throughput; p99 <= 3 x p50.

    python benchmarks/serve_load.py                               # quick-start cbr-tiny, 64 px
    python benchmarks/serve_load.py --arch resnet50 --image-size 224 --precision fp32
    python benchmarks/serve_load.py --model model.int8.onnx --data synthetic-retina
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from transfusion_cli.deploy.ort_session import cpu_threads
from transfusion_cli.deploy.predict import OnnxClassifier
from transfusion_cli.deploy.serve.client import encode_multipart

LEVELS = (1, 8, 32)
AIM_THROUGHPUT = 0.8
AIM_TAIL = 3.0


def tfx(*args: object, cwd: Path) -> None:
    """Run `tfx ARGS` (this interpreter's), failing loudly."""
    run = subprocess.run([sys.executable, "-m", "transfusion_cli", *map(str, args)], cwd=cwd,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"tfx {' '.join(map(str, args))} failed:\n{run.stderr[-2000:]}")


def make_model(work: Path, arch: str, image_size: int, precision: str) -> Path:
    """The quick start's fit + export, shortened to 2 steps."""
    tfx("fit", "--arch", arch, "--image-size", image_size, "--steps", 2, "--batch-size", 8,
        "--option", "train_size=64", "--option", "val_size=32", "--option", "test_size=64",
        "--out", "run", cwd=work)
    quantize = ["--quantize", "int8"] if precision == "int8" else []
    tfx("export", "run/checkpoints/best.pt", "--out", "model.onnx", *quantize, cwd=work)
    return work / ("model.int8.onnx" if precision == "int8" else "model.onnx")


def save_images(work: Path, data: str, image_size: int, count: int) -> list[Path]:
    """``count`` test images of ``data`` as PNG files."""
    tfx("data", "save", "--data", data, "--image-size", image_size, "--option",
        f"test_size={max(count, 8)}", "--n", count, "--out", "images", cwd=work)
    return sorted((work / "images").glob("*.png"))


def in_process_throughput(classifier: OnnxClassifier, paths: list[Path], seconds: float
                          ) -> float:
    """Images/s of `tfx predict`'s library call (batch 32) on ``paths``, repeated for about
    ``seconds``."""
    files = (paths * (1 + 32 // len(paths)))[:32]
    classifier.predict_files(files)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        results = classifier.predict_files(files, batch_size=32)
        assert all(r.error is None for r in results)
        done += len(results)
    return done / (time.perf_counter() - start)


class Server:
    """`tfx serve MODEL` in its own process on a free loopback port."""

    def __init__(self, model: Path, max_concurrency: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transfusion_cli", "serve", str(model), "--port", "0",
             "--max-concurrency", str(max_concurrency), "--provider", "cpu"],
            stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                break
        else:
            raise SystemExit("tfx serve did not start")
        # Keep draining its log (one access line per request) so that it never blocks.
        threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()
        deadline = time.monotonic() + 60
        while not self.ready():
            if time.monotonic() > deadline:
                raise SystemExit("tfx serve did not become ready")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def client(port: int, bodies: list[tuple[bytes, str]], until: float, offset: int,
           latencies: list[float], refused: list[int]) -> None:
    """Post one image per request on one keep-alive connection until ``until``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    index = offset
    while time.perf_counter() < until:
        payload, kind = bodies[index % len(bodies)]
        index += 1
        start = time.perf_counter()
        connection.request("POST", "/v1/predict", body=payload,
                           headers={"Content-Type": kind})
        response = connection.getresponse()
        body = response.read()
        if response.status == 503:
            refused.append(1)
            time.sleep(float(response.getheader("Retry-After", "1")))
            continue
        if response.status != 200 or b'"error"' in body:
            raise SystemExit(f"request failed ({response.status}): {body[:300]!r}")
        latencies.append(time.perf_counter() - start)
    connection.close()


def load_level(port: int, bodies: list[tuple[bytes, str]], clients: int, seconds: float
               ) -> dict[str, float]:
    """Latency percentiles and images/s with ``clients`` concurrent clients."""
    latencies: list[float] = []
    refused: list[int] = []
    warm_until = time.perf_counter() + 1.0  # connections open, server threads started
    warm = [threading.Thread(target=client, args=(port, bodies, warm_until, i, [], []))
            for i in range(clients)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    start = time.perf_counter()
    until = start + seconds
    threads = [threading.Thread(target=client, args=(port, bodies, until, i, latencies,
                                                     refused)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {"clients": clients, "requests": len(latencies), "refused_503": len(refused),
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "images_per_s": len(latencies) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an exported model (default: make one)")
    parser.add_argument("--data", default="synthetic-retina", help="dataset of the images")
    parser.add_argument("--arch", default="cbr-tiny")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--images", type=int, default=16, help="distinct image files")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per level")
    parser.add_argument("--max-concurrency", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tfx-serve-load-") as tmp:
        work = Path(tmp)
        env_cache = os.environ.setdefault("TFX_CACHE_DIR", str(work / "cache"))
        model = args.model.resolve() if args.model else make_model(
            work, args.arch, args.image_size, args.precision)
        size = OnnxClassifier(model, "cpu").metadata.image_size
        paths = save_images(work, args.data, size, args.images)
        bodies = [encode_multipart([(p.name, p.read_bytes())]) for p in paths]
        classifier = OnnxClassifier(model, "cpu")
        server = Server(model, args.max_concurrency)
        rows = []
        try:
            # In-process runs right before and after each level (the server idle): load from
            # other processes on the machine hits both sides of each ratio alike.
            for level in LEVELS:
                before = in_process_throughput(classifier, paths, args.seconds / 2)
                row = load_level(server.port, bodies, level, args.seconds)
                after = in_process_throughput(classifier, paths, args.seconds / 2)
                row["in_process_images_per_s"] = (before + after) / 2
                rows.append(row)
        finally:
            server.stop()

    for row in rows:
        row["vs_in_process"] = row["images_per_s"] / row["in_process_images_per_s"]
        row["p99_over_p50"] = row["p99_ms"] / row["p50_ms"]
    baseline = float(np.mean([row["in_process_images_per_s"] for row in rows]))
    eight = next(r for r in rows if r["clients"] == 8)
    report = {"model": model.name, "image_size": size, "cpus": cpu_threads(),
              "machine": platform.processor() or platform.machine(),
              "load_average_at_end": os.getloadavg(),
              "in_process_images_per_s": baseline, "levels": rows,
              "aims": {"8_clients_vs_in_process": {"value": eight["vs_in_process"],
                                                   "aim": f">= {AIM_THROUGHPUT}",
                                                   "met": eight["vs_in_process"] >= AIM_THROUGHPUT},
                       "8_clients_p99_over_p50": {"value": eight["p99_over_p50"],
                                                  "aim": f"<= {AIM_TAIL}",
                                                  "met": eight["p99_over_p50"] <= AIM_TAIL}},
              "cache": env_cache}
    print(json.dumps(report, indent=2))
    print(f"\n{model.name} ({size} px), {cpu_threads()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; in-process = `tfx predict`'s library call, batch 32, "
          "measured around each level", file=sys.stderr)
    print(f"{'clients':>7} {'requests':>8} {'503s':>5} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'p99/p50':>7} {'images/s':>9} {'in-process':>10} {'ratio':>6}", file=sys.stderr)
    for r in rows:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['refused_503']:>5} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['p99_over_p50']:>7.2f} {r['images_per_s']:>9.1f} "
              f"{r['in_process_images_per_s']:>10.1f} {r['vs_in_process']:>6.0%}",
              file=sys.stderr)
    for name, aim in report["aims"].items():
        print(f"aim {name}: {aim['value']:.2f} ({aim['aim']}): "
              f"{'met' if aim['met'] else 'NOT met'}", file=sys.stderr)


if __name__ == "__main__":
    main()
