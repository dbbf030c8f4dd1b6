"""What `tfx predict --heatmaps` costs: predict throughput without and with the class-activation
-map output (onnxruntime only), and the time to draw one overlay PNG, measured in one run.

The model is an exported tfx model (``MODEL.onnx``, e.g. the quick start's ``model.onnx``);
the images are its dataset's PNG files (``tfx data save --n 64 --out samples/``). Rounds
alternate the two modes so that load from other processes hits both alike; each figure is a
median over rounds.

    python benchmarks/heatmap_overhead.py model.onnx samples/ [--rounds 5] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--overlays", type=int, default=8, help="overlays drawn per round")
    args = parser.parse_args()

    from transfusion_cli.deploy.predict import OnnxClassifier, collect_images

    classifier = OnnxClassifier(args.model, "cpu")
    classifier.require_heatmaps()
    paths = collect_images([args.images])
    rates: dict[str, list[float]] = {"plain": [], "heatmaps": []}
    overlay_ms: list[float] = []
    classifier.predict_files(paths[:4], args.batch_size, heatmaps=True)  # warm up
    for _ in range(args.rounds):
        for mode in ("plain", "heatmaps"):
            start = time.perf_counter()
            results = classifier.predict_files(paths, args.batch_size,
                                               heatmaps=mode == "heatmaps")
            rates[mode].append(len(paths) / (time.perf_counter() - start))
        scale = classifier.heatmap_scale(results)
        for result in results[: args.overlays]:
            prepared = classifier.prepare(result.image)
            start = time.perf_counter()
            classifier.overlay_png(result, prepared, scale)
            overlay_ms.append((time.perf_counter() - start) * 1e3)
    plain, heat = statistics.median(rates["plain"]), statistics.median(rates["heatmaps"])
    summary = {"model": str(args.model), "images": len(paths), "batch_size": args.batch_size,
               "rounds": args.rounds, "predict_images_per_s": round(plain, 1),
               "predict_with_heatmaps_images_per_s": round(heat, 1),
               "heatmaps_over_plain": round(heat / plain, 3),
               "overlay_png_ms_median": round(statistics.median(overlay_ms), 1)}
    print(f"predict {plain:.1f} img/s, with heatmaps {heat:.1f} img/s "
          f"({heat / plain:.0%} of plain); one overlay PNG {summary['overlay_png_ms_median']} "
          f"ms (median of {len(overlay_ms)})", file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
