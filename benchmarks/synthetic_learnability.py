"""Are the synthetic datasets learnable but not trivial? Train CBR-Tiny for a few minutes on CPU.

Bare PyTorch on purpose (no tfx training code): builds the dataset through the registry,
trains cbr-tiny with Adam for ``--steps`` batches (the default, 700 batches of 32 at 64 px, is
about 2.5 minutes on two idle CPU cores; the budget is in steps so that a busy machine gives
the same numbers, only later) and prints JSON with validation metrics computed
by scikit-learn: referable-DR AUC (grade >= 2, probability = softmax mass of grades 2-4) and
per-grade accuracy for synthetic-retina; per-label AUC for synthetic-chest. Also reports the
time to generate an image. ``--measure-normalisation`` instead prints the per-channel mean and
std of the training images (the constants in plugins/datasets/synthetic.py).

    python benchmarks/synthetic_learnability.py --data synthetic-retina
    python benchmarks/synthetic_learnability.py --data synthetic-chest
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import normalize
from transfusion_cli.plugins import get


def generate(split) -> tuple[torch.Tensor, torch.Tensor, float]:
    """All images and targets of a split, and the seconds per generated image."""
    start = time.perf_counter()
    items = [split[i] for i in range(len(split))]
    per_image = (time.perf_counter() - start) / max(len(split), 1)
    return (torch.stack([image for image, _ in items]),
            torch.stack([target for _, target in items]), per_image)


def split_logits(model, images, info, batch_size=256) -> np.ndarray:
    """Logits of the whole split."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(normalize(images[i:i + batch_size], info))
                          for i in range(0, len(images), batch_size)]).numpy()


def retina_metrics(logits: np.ndarray, labels: np.ndarray, threshold: int) -> dict:
    """Referable AUC and per-grade accuracy (recall) with scikit-learn."""
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    predicted = probs.argmax(1)
    per_grade = {str(g): float((predicted[labels == g] == g).mean()) if (labels == g).any()
                 else None for g in range(logits.shape[1])}
    return {
        "referable_auc": float(roc_auc_score(labels >= threshold, probs[:, threshold:].sum(1))),
        "accuracy": float((predicted == labels).mean()),
        "per_grade_accuracy": per_grade,
        "grade_counts": np.bincount(labels, minlength=logits.shape[1]).tolist(),
    }


def chest_metrics(logits: np.ndarray, labels: np.ndarray, names) -> dict:
    """Per-label AUC on the non-masked labels, and their mean."""
    aucs = {}
    for k, name in enumerate(names):
        known = ~np.isnan(labels[:, k])
        aucs[name] = float(roc_auc_score(labels[known, k], logits[known, k]))
    return {"auc": aucs, "mean_auc": float(np.mean(list(aucs.values())))}


def measure_normalisation(name: str, count: int, image_size: int) -> dict:
    """Per-channel mean and std of ``count`` training images (uint8 / 255)."""
    bundle = build_dataset(name, seed=0, image_size=image_size,
                           options={"train_size": str(count)})
    images, _, per_image = generate(bundle.train)
    pixels = images.float().div(255).transpose(0, 1).reshape(images.shape[1], -1)
    return {"data": name, "images": count, "image_size": image_size,
            "mean": [round(float(v), 4) for v in pixels.mean(1)],
            "std": [round(float(v), 4) for v in pixels.std(1)],
            "ms_per_image": round(per_image * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic-retina")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], help="dataset KEY=VALUE")
    parser.add_argument("--measure-normalisation", action="store_true")
    args = parser.parse_args()
    if args.measure_normalisation:
        print(json.dumps(measure_normalisation(args.data, 2000, args.image_size)))
        return

    torch.manual_seed(args.seed)
    options = dict(pair.split("=", 1) for pair in args.option)
    bundle = build_dataset(args.data, seed=args.seed, image_size=args.image_size, options=options)
    info = bundle.info
    train_x, train_y, per_image = generate(bundle.train)
    val_x, _, _ = generate(bundle.val)
    val_labels = np.asarray(bundle.val.labels)

    model = get("architectures", "cbr-tiny").build(num_classes=info.num_outputs,
                                                   in_chans=info.channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start, steps, epochs, history = time.perf_counter(), 0, 0, []
    while steps < args.steps:
        model.train()
        order = torch.randperm(len(train_x))
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            index = order[i:i + args.batch_size]
            logits = model(normalize(train_x[index], info))
            target = train_y[index]
            if info.task == "multiclass":
                loss = torch.nn.functional.cross_entropy(logits, target)
            else:
                known = ~torch.isnan(target)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits[known], target[known])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if steps >= args.steps:
                break
        epochs += 1
        logits = split_logits(model, val_x, info)
        metrics = (retina_metrics(logits, val_labels, info.referable_threshold)
                   if info.task == "multiclass" else chest_metrics(logits, val_labels,
                                                                   info.class_names))
        key = "referable_auc" if info.task == "multiclass" else "mean_auc"
        history.append({"epoch": epochs, "step": steps,
                        "seconds": round(time.perf_counter() - start, 1),
                        key: round(metrics[key], 4)})
        print(json.dumps({**history[-1], "metrics": metrics}), file=sys.stderr, flush=True)
    print(json.dumps({
        "data": args.data, "image_size": args.image_size, "train_images": len(train_x),
        "val_images": len(val_x), "ms_per_generated_image": round(per_image * 1000, 3),
        "train_seconds": round(time.perf_counter() - start, 1), "steps": steps, "epochs": epochs,
        "torch_threads": torch.get_num_threads(), "final": metrics, "history": history,
    }, indent=1))


if __name__ == "__main__":
    main()
