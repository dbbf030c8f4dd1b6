"""Similarity moments on the device: `tfx similarity`'s pass (ResNet50 init vs trained, every
block) on the CPU and on CUDA, their agreement, and the float32-products error.

Models: ResNet50 (tfx's ``resnet50``, 5 classes) at its initialisation and the same network
after ``--train-steps`` Adam steps on random images ("trained": enough to move every block
away from the init; no weights are downloaded). Inputs: ``--images`` random uint8 images at
``--image-size`` px. The pass is ``similarity.analysis.compare_representations`` (what
`tfx similarity` runs) over every block pair (stem, layer1-4, head) with CCA, SVCCA, PWCCA and
CKA; moments are accumulated on the device the models run on (float64) and the small
decompositions run on the CPU.

Figures (one run):
- ``pass_s``: wall time of the whole pass per device (CPU, and CUDA when present);
- ``moments_agreement``: the same captured activations streamed through ``PairStats`` on the
  CPU and on CUDA, max |metric difference| (target <= 1e-8: the moments, not the convolutions);
- ``end_to_end_agreement``: max |metric difference| of the full CPU and CUDA passes (cuDNN and
  the CPU's convolutions round differently, so this is bounded by float32 activations, ~1e-6);
- ``float32_products``: max |metric difference| of float32 products (summed in float64) vs
  float64, and the relative error of the scatter matrices, on the fastest device.
Without CUDA it runs the CPU paths and says CUDA is absent.

    python benchmarks/similarity_device.py                 # JSON on stdout
    python benchmarks/similarity_device.py --quick         # smoke run (16 images, 32 px)
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from transfusion_cli.models.blocks import block_names
from transfusion_cli.plugins import get
from transfusion_cli.similarity.activations import (
    BlockCapture,
    PositionSampler,
    as_map,
    full_precision,
    plan_points,
    to_points,
)
from transfusion_cli.similarity.analysis import compare_representations
from transfusion_cli.similarity.cca import cca_from_moments, pwcca_from_moments, svcca_from_moments
from transfusion_cli.similarity.cka import linear_cka_from_moments
from transfusion_cli.similarity.compare_checkpoints import metric_specs
from transfusion_cli.similarity.result import SimilarityError
from transfusion_cli.similarity.streaming import PairStats

METRICS = "cca,svcca,pwcca,cka"
QUICK_METRICS = "cka"  # CCA needs more points than ResNet50's 2048 neurons: many images
FROM_MOMENTS = {"cca": cca_from_moments, "svcca": svcca_from_moments,
                "pwcca": pwcca_from_moments, "cka": linear_cka_from_moments}


def models(train_steps: int, image_size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """ResNet50 at init and after a few Adam steps on random images (both on the CPU)."""
    torch.manual_seed(0)
    init = get("architectures", "resnet50").build(num_classes=5, in_chans=3).eval()
    trained = copy.deepcopy(init).train()
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(train_steps):
        x = torch.randn(8, 3, image_size, image_size, generator=generator)
        y = torch.randint(0, 5, (8,), generator=generator)
        loss = torch.nn.functional.cross_entropy(trained(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return init, trained.eval()


def prepare(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - 0.5) / 0.25


def full_pass(model_a, model_b, images: torch.Tensor, device: torch.device, batch: int,
              max_points: int, metrics: str) -> tuple[float, dict]:
    """(seconds, {layer: {metric: value}}) of compare_representations on ``device``."""
    model_a, model_b = model_a.to(device), model_b.to(device)
    layers = block_names(model_a)
    batches = (images[i: i + batch].to(device) for i in range(0, len(images), batch))
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    results = compare_representations(model_a, model_b, batches, prepare_a=prepare,
                                      prepare_b=prepare, pairs=[(name, name) for name in layers],
                                      metrics=metric_specs(metrics), inputs=len(images),
                                      max_points=max_points)
    seconds = time.perf_counter() - started
    model_a.cpu(), model_b.cpu()
    return seconds, {r.layer_a: {k: float(v.value) for k, v in r.metrics.items()}
                     for r in results}


def captured_points(model_a, model_b, images: torch.Tensor, batch: int, max_points: int
                    ) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per block, the (x, y) point batches the pass streams, captured once on the CPU."""
    layers = block_names(model_a)
    points: dict[str, list] = {name: [] for name in layers}
    samplers: dict[str, tuple] = {}
    with BlockCapture(model_a, layers) as cap_a, BlockCapture(model_b, layers) as cap_b, \
            torch.inference_mode(), full_precision():
        for start in range(0, len(images), batch):
            x = prepare(images[start: start + batch])
            out_a = cap_a.run(lambda x=x: model_a(x))
            out_b = cap_b.run(lambda x=x: model_b(x))
            for name in layers:
                map_a, map_b = as_map(out_a[name], name), as_map(out_b[name], name)
                if name not in samplers:
                    plan = plan_points(map_a, map_b, len(images), None, max_points)
                    samplers[name] = (plan, PositionSampler(plan, 0))
                plan, sampler = samplers[name]
                index = sampler.indices(map_a.shape[0], map_a.device)
                points[name].append((to_points(map_a, plan.grid, index),
                                     to_points(map_b, plan.grid, index)))
    return points


def metric_value(fn, moments) -> float:
    """A metric from moments; NaN where it is undefined (CCA with fewer points than neurons)."""
    try:
        return float(fn(moments).value)
    except SimilarityError:
        return float("nan")


def stream_metrics(points, device: torch.device, products: str) -> tuple[dict, dict]:
    """({layer: {metric: value}}, {layer: scatter matrices}) of the captured points."""
    values, scatter = {}, {}
    for name, batches in points.items():
        stats = PairStats(debiased=False, products=products)
        for x, y in batches:
            stats.update(x.to(device), y.to(device))
        moments = stats.finalize()
        values[name] = {k: metric_value(fn, moments) for k, fn in FROM_MOMENTS.items()}
        scatter[name] = moments
    return values, scatter


def max_difference(a: dict, b: dict) -> float:
    diffs = [abs(a[layer][m] - b[layer][m]) for layer in a for m in a[layer]
             if np.isfinite(a[layer][m]) and np.isfinite(b[layer][m])]
    return float(max(diffs)) if diffs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-points", type=int, default=50_000)
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="16 images at 32 px, CKA only in "
                        "the full pass (the moment comparisons still compute every metric "
                        "where it is defined)")
    args = parser.parse_args()
    metrics = METRICS
    if args.quick:
        args.images, args.image_size, args.batch_size, args.max_points = 16, 32, 8, 2_000
        metrics = QUICK_METRICS
    torch.set_num_threads(torch.get_num_threads())
    init, trained = models(args.train_steps, min(args.image_size, 64))
    images = torch.randint(0, 256, (args.images, 3, args.image_size, args.image_size),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    cuda = torch.cuda.is_available()
    report: dict = {"settings": {k: v for k, v in vars(args).items() if k != "quick"},
                    "metrics": metrics, "cuda": torch.cuda.get_device_name(0) if cuda
                    else "absent: CPU paths only", "torch": torch.__version__}
    seconds_cpu, cpu_values = full_pass(init, trained, images, torch.device("cpu"),
                                        args.batch_size, args.max_points, metrics)
    report["pass_s"] = {"cpu": round(seconds_cpu, 2)}
    report["values_cpu"] = cpu_values
    if cuda:
        seconds_cuda, cuda_values = full_pass(init, trained, images, torch.device("cuda"),
                                              args.batch_size, args.max_points, metrics)
        report["pass_s"]["cuda"] = round(seconds_cuda, 2)
        report["pass_s"]["cpu_vs_cuda"] = round(seconds_cpu / seconds_cuda, 2)
        report["end_to_end_agreement"] = max_difference(cpu_values, cuda_values)
    points = captured_points(init, trained, images, args.batch_size, args.max_points)
    fastest = torch.device("cuda" if cuda else "cpu")
    reference, exact = stream_metrics(points, torch.device("cpu"), "float64")
    if cuda:
        on_device, _ = stream_metrics(points, fastest, "float64")
        agreement = max_difference(reference, on_device)
        report["moments_agreement"] = {"max_abs_metric_difference": agreement,
                                       "target": 1e-8, "met": agreement <= 1e-8}
    timings = {}
    for products in ("float64", "float32"):
        if fastest.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        values, moments = stream_metrics(points, fastest, products)
        timings[products] = round(time.perf_counter() - started, 3)
        if products == "float32":
            relative = max(float(np.abs(moments[k].sxx - exact[k].sxx).max()
                                 / np.abs(exact[k].sxx).max()) for k in exact)
            report["float32_products"] = {
                "device": fastest.type, "max_abs_metric_difference_vs_float64":
                max_difference(values, reference), "max_relative_scatter_error": relative,
                "stream_s": timings}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
