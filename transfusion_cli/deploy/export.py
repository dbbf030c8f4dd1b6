"""`tfx export`: a checkpoint -> one self-contained ONNX file with tfx metadata, checked against
PyTorch on real images of the checkpoint's dataset, optionally quantised (int8) or fp16.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``, chosen deliberately:
it emits exactly the opset asked for (the dynamo exporter in torch 2.14 only implements opset
>= 18 and silently keeps 18 when asked for 17), it exports these conv nets (CBR, ResNet,
Inception, timm CNNs) to plain Conv/Relu/MaxPool/Gemm graphs with BatchNorm folded, and it
takes a fraction of a second instead of seconds. It is deprecated upstream; torch is pinned
(<= 2.14.1) in pyproject.toml, and switching to ``dynamo=True`` means a default opset of 18.

Nothing is written to ``--out`` until every check passed: the files are built in a temporary
folder next to it and moved into place at the end. ``--out model.onnx`` is always the fp32
model; ``--quantize int8`` (or fp16) adds ``model.int8.onnx`` (``model.fp16.onnx``) beside it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfusion_cli import __version__
from transfusion_cli.data.bundles import DatasetInfo, adapt_channels, normalize
from transfusion_cli.deploy.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from transfusion_cli.deploy.model_card import card_path, export_facts, write_card
from transfusion_cli.deploy.ort_session import (
    CPU,
    Session,
    cpu_threads,
    create_session,
    time_session,
)
from transfusion_cli.deploy.quantize import QUANTIZE_CHOICES, convert_fp16, quantize_int8
from transfusion_cli.errors import ConfigError, DataError, ExportError
from transfusion_cli.io import make_temp_dir, write_json
from transfusion_cli.models.checkpoint import (
    build_model,
    checkpoint_dataset_info,
    file_sha256,
    load_checkpoint,
)
from transfusion_cli.outputs import refuse_overwriting_inputs
from transfusion_cli.progress import track, track_iter

EXPORTER = "torchscript (torch.onnx.export, dynamo=False)"
DEFAULT_OPSET = 17
MIN_OPSET = 13  # per-channel QDQ (axis attribute) and the ops these models use
FP32_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 8)
EVAL_BATCH = 32
MAX_PROTO_BYTES = 2**31 - 1  # protobuf limit of a single-file ONNX model


@dataclass
class ExportSettings:
    """What `tfx export` was asked to do."""

    checkpoint: Path
    out: Path = Path("model.onnx")
    opset: int = DEFAULT_OPSET
    image_size: int | None = None  # None: the size the model was trained at
    quantize: str = "none"
    # Dataset name or image folder for int8 calibration; None: the checkpoint's training data.
    calibration_data: str | None = None
    calibration_images: int = 256
    eval_images: int | None = None  # None: the whole validation split
    data_dir: Path | None = None
    latency_runs: int = 20
    tolerance: float = FP32_TOLERANCE
    # `tfx evaluate` record for the model card; None: the one beside the checkpoint, if any.
    evaluation: Path | None = None

    def validate(self) -> None:
        """Reject settings that cannot work, before any work is done."""
        try:  # the newest opset the TorchScript exporter implements (20 in torch 2.14)
            from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset
        except ImportError:
            max_opset = 20
        if not MIN_OPSET <= self.opset <= max_opset:
            raise ConfigError(f"--opset {self.opset} is not supported; use {MIN_OPSET} to "
                              f"{max_opset} (default {DEFAULT_OPSET}).")
        if self.quantize not in QUANTIZE_CHOICES:
            raise ConfigError(f"--quantize {self.quantize!r} is not one of "
                              f"{', '.join(QUANTIZE_CHOICES)}.")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"--image-size {self.image_size} is too small; use 8 or more.")
        if not self.tolerance >= 0:
            raise ConfigError(f"--tolerance {self.tolerance} must be a number >= 0.")
        if self.calibration_images < 1:
            raise ConfigError("--calibration-images must be at least 1.")
        if self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a folder; give a file name such as "
                              f"{self.out / 'model.onnx'}.")
        if self.out.suffix.lower() != ".onnx":
            raise ConfigError(f"--out {self.out} should end in .onnx.")


class ChannelAdapter(nn.Module):
    """Feeds a model built for ``in_chans`` with the dataset's channel count, as training does
    (``data.adapt_channels``), so the exported model takes what preprocessing produces."""

    def __init__(self, model: nn.Module, in_chans: int):
        super().__init__()
        self.model, self.in_chans = model, in_chans

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(adapt_channels(images, self.in_chans))


def report_path(out: Path) -> Path:
    """``model.onnx`` -> ``model.export.json``."""
    return out.with_suffix(".export.json")


def quantized_path(out: Path, precision: str) -> Path:
    """``model.onnx`` -> ``model.int8.onnx`` (or ``model.fp16.onnx``): beside the fp32 model."""
    return out.with_suffix(f".{precision}.onnx")


# ---------------------------------------------------------------------------- data


def checkpoint_dataset(checkpoint: dict[str, Any], info: DatasetInfo, image_size: int,
                       data_dir: Path | None):
    """The checkpoint's dataset rebuilt as training built it (name, data seed, options)."""
    from transfusion_cli.data.build import build_dataset
    from transfusion_cli.registry import get

    config = checkpoint.get("config") or {}
    spec = get("datasets", info.name)
    options = config.get("options") or info.options or {}
    options = {k: v for k, v in options.items() if k in spec.options}
    data_seed = config.get("data_seed")
    return build_dataset(info.name, data_dir=data_dir or config.get("data_dir"),
                         image_size=image_size, seed=int(data_seed) if data_seed is not None else 0,
                         options=options, skip_bad_images=bool(config.get("skip_bad_images")))


def split_batches(split, limit: int | None = None, batch_size: int = EVAL_BATCH,
                  shuffle_seed: int | None = None
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images (B, C, H, W), targets) of a split, in order or in a seeded random order."""
    count = len(split) if limit is None else min(limit, len(split))
    order = (np.random.default_rng(shuffle_seed).permutation(len(split))[:count]
             if shuffle_seed is not None else np.arange(count))
    for start in range(0, count, batch_size):
        items = [split[int(i)] for i in order[start: start + batch_size]]
        yield torch.stack([image for image, _ in items]), torch.stack([t for _, t in items])


def first_images(bundle, count: int) -> torch.Tensor:
    """``count`` uint8 images from the validation split (train when val is too small)."""
    for name in ("val", "test", "train"):
        split = getattr(bundle, name, None)
        if split is not None and len(split) >= count:
            return next(split_batches(split, count, batch_size=count))[0]
    raise DataError(f"Dataset '{bundle.info.name}' has fewer than {count} images in every split; "
                    "the parity check needs real inputs.")


def folder_batches(folder: Path, metadata: ModelMetadata, limit: int,
                   batch_size: int = EVAL_BATCH) -> Iterator[np.ndarray]:
    """Normalised batches from the image files of a folder, prepared as `tfx predict` does."""
    from transfusion_cli.data.preprocess import load_prepared, normalize_array
    from transfusion_cli.deploy.predict import IMAGE_SUFFIXES

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--calibration-data {folder} holds no image files "
                        f"({', '.join(IMAGE_SUFFIXES)}).")
    files = [files[int(i)] for i in np.random.default_rng(0).permutation(len(files))[:limit]]
    with track("export: int8 calibration", len(files), "images") as task:
        for start in range(0, len(files), batch_size):
            arrays = [load_prepared(p, metadata.image_size, metadata.channels,
                                    metadata.fundus_crop)
                      for p in files[start: start + batch_size]]
            yield normalize_array(np.stack(arrays), metadata.mean, metadata.std)
            task.advance(len(arrays))


def calibration_batches(settings: ExportSettings, bundle, info: DatasetInfo,
                        metadata: ModelMetadata) -> tuple[str, Iterator[np.ndarray]]:
    """(description, normalised batches) of the int8 calibration images."""
    source = settings.calibration_data
    limit = settings.calibration_images
    if source and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        return f"folder {folder}", folder_batches(folder, metadata, limit)
    if source and source != info.name:
        from transfusion_cli.data.build import build_dataset

        other = build_dataset(source, image_size=metadata.image_size)
        if other.info.channels != info.channels:
            raise DataError(f"--calibration-data {source} has {other.info.channels}-channel "
                            f"images but the model takes {info.channels}; pick a dataset or "
                            "folder like its training data.")
        split, label = other.train, f"{source}:train"
    else:
        split, label = bundle.train, f"{info.name}:train"
    batches = (normalize(images, info).numpy() for images, _ in track_iter(
        split_batches(split, limit, shuffle_seed=0), "export: int8 calibration",
        total=min(limit, len(split)), unit="images", weight=lambda batch: len(batch[0])))
    return label, batches


# ---------------------------------------------------------------------------- ONNX


def torch_to_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """Export with explicit settings: opset, names, dynamic batch axis, one file."""
    with warnings.catch_warnings():
        # The deprecation notice of the TorchScript exporter (see the module docstring).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        # Python-level branches on shapes (e.g. adapt_channels) are frozen by tracing; that is
        # intended for channels and sizes, and the batch-1 and batch-8 parity checks catch a
        # trace that does not generalise over the batch axis.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True, export_params=True,
                training=torch.onnx.TrainingMode.EVAL)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"The ONNX exporter failed ({type(exc).__name__}: {first[:240]}); "
                              "rerun with --debug for the traceback.") from exc


def finish_onnx(path: Path, metadata: ModelMetadata, opset: int | None = None) -> None:
    """Write the tfx metadata into ``path`` (one file, no external data) and check it fully."""
    import onnx

    model = onnx.load(str(path))
    if opset is not None:
        found = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        if found != opset:
            raise ExportError(f"The exporter wrote opset {found}, not the requested {opset}.")
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"tfx {metadata.architecture} on {metadata.dataset} ({metadata.task}, "
                        f"{metadata.precision}); see the tfx.* metadata.")
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise ExportError(f"The model is {model.ByteSize() / 2**30:.1f} GiB, over the 2 GiB "
                          "limit of a single-file ONNX model.")
    onnx.save(model, str(path))  # initializers stay inside the file (no external data)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the exported model: {str(exc).splitlines()[0]}"
                          ) from exc


def model_metadata(checkpoint: dict[str, Any], info: DatasetInfo, image_size: int,
                   sha256: str, precision: str = "fp32") -> ModelMetadata:
    """The deployment metadata, from the checkpoint alone."""
    return ModelMetadata(
        task=info.task, class_names=tuple(info.class_names), image_size=int(image_size),
        channels=int(info.channels), mean=tuple(float(m) for m in info.mean),
        std=tuple(float(s) for s in info.std), fundus_crop=bool(info.fundus_crop),
        architecture=checkpoint["arch"]["name"], tfx_version=__version__,
        checkpoint_sha256=sha256, dataset=info.name, selection_metric=info.selection_metric,
        referable_threshold=info.referable_threshold, precision=precision)


# ---------------------------------------------------------------------------- checks


def torch_logits(model: nn.Module, images: torch.Tensor, info: DatasetInfo,
                 in_chans: int) -> np.ndarray:
    """PyTorch fp32 logits of uint8 images, normalised exactly as training does."""
    with torch.inference_mode():
        return model(normalize(images, info, in_chans)).float().numpy()


def parity(session: Session, reference: dict[int, np.ndarray], inputs: dict[int, np.ndarray]
           ) -> dict[str, Any]:
    """Max abs difference and top-1 agreement of onnxruntime vs PyTorch per batch size."""
    figures: dict[str, Any] = {}
    for size, expected in reference.items():
        got = session.run(inputs[size])
        if got.shape != expected.shape or not np.isfinite(got).all():
            raise ExportError(f"onnxruntime returned {got.shape} (finite: "
                              f"{bool(np.isfinite(got).all())}) where PyTorch gave "
                              f"{expected.shape}; the export is broken.")
        figures[f"batch_{size}"] = {
            "max_abs_diff": float(np.abs(got - expected).max()),
            "top1_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
        }
    figures["max_abs_diff"] = max(v["max_abs_diff"] for v in figures.values())
    return figures


def rounding_hint(model: nn.Module, images: torch.Tensor, info: DatasetInfo, in_chans: int,
                  logits: np.ndarray, tolerance: float) -> str:
    """When PyTorch's own fp32 logits are off their float64 values by about the tolerance,
    say so: the disagreement is float32 rounding in a deep model, not a broken export."""
    import copy

    with torch.inference_mode():
        exact = copy.deepcopy(model).double()(normalize(images, info, in_chans).double())
    floor = float(np.abs(logits - exact.numpy()).max())
    if floor < tolerance / 2:
        return ""
    return (f" PyTorch fp32 itself is {floor:.2g} off float64 here (logits up to "
            f"{np.abs(logits).max():.3g}): float32 rounding; rerun with --tolerance "
            f"{3 * floor:.1g} to accept it.")


def evaluate(sessions: dict[str, Session], split, info: DatasetInfo,
             limit: int | None) -> dict[str, Any]:
    """The dataset's headline metric of each session on ``split`` (same images for all)."""
    from transfusion_cli.evaluation.scores import compute_metrics

    logits: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    targets = []
    count = len(split) if limit is None else min(limit, len(split))
    for images, target in track_iter(split_batches(split, limit), "export: fp32 vs quantised "
                                     "metric", total=count, unit="images",
                                     weight=lambda batch: len(batch[0])):
        batch = normalize(images, info).numpy()
        for name, session in sessions.items():
            logits[name].append(session.run(batch))
        targets.append(target.numpy())
    if not targets:
        raise DataError(f"Dataset '{info.name}' has an empty validation split; the accuracy of "
                        "the quantised model cannot be measured.")
    y = np.concatenate(targets)
    result: dict[str, Any] = {"name": info.selection_metric, "split": "val", "images": len(y)}
    for name, parts in logits.items():
        metrics = compute_metrics(np.concatenate(parts), y, info)
        result[name] = metrics.get(info.selection_metric, float("nan"))
        if metrics.get("nan_reasons", {}).get(info.selection_metric):
            result[f"{name}_nan_reason"] = metrics["nan_reasons"][info.selection_metric]
    return result


def torch_latency(model: nn.Module, images: torch.Tensor, runs: int) -> dict[str, float]:
    """PyTorch eager CPU latency of one batch (for comparison with onnxruntime)."""
    from transfusion_cli.deploy.ort_session import summarize_times

    with torch.inference_mode():
        model(images)
        times = []
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            model(images)
            times.append(time.perf_counter() - start)
    return summarize_times(times, len(images))


# ---------------------------------------------------------------------------- pipeline


def export_checkpoint(settings: ExportSettings, progress=lambda message: None) -> dict[str, Any]:
    """Export, check, optionally quantise; write ``settings.out`` and its report; return it."""
    import onnx

    settings.validate()
    outputs = {"--out": settings.out, "The report of --out": report_path(settings.out)}
    if settings.quantize != "none":
        outputs["The quantised --out"] = quantized_path(settings.out, settings.quantize)
    calibration = settings.calibration_data
    refuse_overwriting_inputs(outputs, inputs=[settings.checkpoint], data_dirs=[
        settings.data_dir, calibration if calibration and Path(calibration).is_dir() else None])
    started = time.perf_counter()
    checkpoint = load_checkpoint(settings.checkpoint)
    info = checkpoint_dataset_info(checkpoint)
    model = build_model(checkpoint).eval()
    in_chans = int(checkpoint["arch"]["in_chans"])
    image_size = settings.image_size or info.image_size
    sha256 = file_sha256(settings.checkpoint)
    metadata = model_metadata(checkpoint, info, image_size, sha256)

    progress(f"building dataset '{info.name}' at {image_size} px for the checks")
    bundle = checkpoint_dataset(checkpoint, info, image_size, settings.data_dir)
    card_facts = export_facts(settings.checkpoint, checkpoint, info, bundle, sha256, image_size,
                              settings.evaluation)
    metadata = dataclasses.replace(metadata, model_card=card_facts)
    images = first_images(bundle, max(PARITY_BATCHES))
    if images.shape[1] != info.channels or images.shape[-1] != image_size:
        raise DataError(f"Dataset '{info.name}' gave {tuple(images.shape[1:])} images; the "
                        f"checkpoint expects {info.channels}x{image_size}x{image_size}.")
    batches = {size: images[:size] for size in PARITY_BATCHES}
    try:
        reference = {s: torch_logits(model, b, info, in_chans) for s, b in batches.items()}
    except RuntimeError as exc:
        raise ExportError(f"{metadata.architecture} cannot run on {image_size} px inputs "
                          f"({str(exc).splitlines()[0][:160]}); use a larger --image-size."
                          ) from exc
    # Timed now, before any onnxruntime session exists: its idle worker threads spin for a
    # while after each run and would slow PyTorch down.
    torch_b1 = torch_latency(model, normalize(batches[1], info, in_chans), settings.latency_runs)
    onnx_inputs = {s: normalize(b, info).numpy() for s, b in batches.items()}
    module = ChannelAdapter(model, in_chans) if in_chans != info.channels else model

    settings.out.parent.mkdir(parents=True, exist_ok=True)
    workdir = make_temp_dir(settings.out.parent, "export")  # pid in its name: see io.py
    try:
        fp32_path = workdir / "model.fp32.onnx"
        progress(f"exporting {metadata.architecture} with the {EXPORTER} exporter, "
                 f"opset {settings.opset}")
        torch_to_onnx(module, torch.from_numpy(onnx_inputs[8][:2]), fp32_path, settings.opset)
        finish_onnx(fp32_path, metadata, settings.opset)
        fp32 = create_session(fp32_path, "cpu")
        fp32_parity = parity(fp32, reference, onnx_inputs)
        fp32_parity.update(tolerance=settings.tolerance,
                           passed=fp32_parity["max_abs_diff"] <= settings.tolerance)
        if not fp32_parity["passed"]:
            hint = rounding_hint(model, batches[8], info, in_chans, reference[8],
                                 settings.tolerance)
            raise ExportError(f"onnxruntime and PyTorch disagree: max abs difference "
                              f"{fp32_parity['max_abs_diff']:.3g} > {settings.tolerance:g} "
                              f"(fp32); nothing was written.{hint}")
        progress(f"fp32 parity: max abs diff {fp32_parity['max_abs_diff']:.2e} "
                 f"(tolerance {settings.tolerance:g})")
        report = base_report(settings, checkpoint, info, sha256, image_size, in_chans)
        report["parity"] = {"fp32": fp32_parity}
        report["sizes"] = {"fp32_bytes": fp32_path.stat().st_size}
        latency = {"pytorch_fp32": torch_b1,
                   "onnxruntime_fp32": time_session(fp32, onnx_inputs[1], settings.latency_runs)}
        final_path, written = fp32_path, {"fp32": fp32_path}
        if settings.quantize != "none":
            final_path, quant_report = quantized_copy(settings, workdir, fp32_path, fp32, bundle,
                                                      info, metadata, reference, onnx_inputs,
                                                      progress)
            report["settings"][settings.quantize] = quant_report.pop("settings")
            report["parity"][settings.quantize] = quant_report.pop("parity")
            report["sizes"][f"{settings.quantize}_bytes"] = final_path.stat().st_size
            report["sizes"]["ratio"] = round(final_path.stat().st_size
                                             / fp32_path.stat().st_size, 4)
            latency[f"onnxruntime_{settings.quantize}"] = quant_report.pop("latency")
            report["metric"] = quant_report.pop("metric")
            written[settings.quantize] = final_path
        report["latency"] = latency
        props = {p.key: p.value for p in onnx.load(str(final_path)).metadata_props}
        report["metadata"] = asdict(ModelMetadata.from_props(props, str(final_path)))
        targets = {precision: settings.out if precision == "fp32"
                   else quantized_path(settings.out, precision) for precision in written}
        report["files"] = {precision: str(path) for precision, path in targets.items()}
        report["files"]["report"] = str(report_path(settings.out))
        report["files"]["model_card"] = str(card_path(settings.out))
        report["wall_time_s"] = round(time.perf_counter() - started, 2)
        # The report is complete before any model moves, so no .onnx is left without it.
        staged_report = write_json(workdir / "report.json", report)
        for precision, path in written.items():
            os.replace(path, targets[precision])
        os.replace(staged_report, report_path(settings.out))
        if write_card(settings.out, card_facts) is None:
            progress(f"left {card_path(settings.out)} alone: tfx did not write it")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def base_report(settings: ExportSettings, checkpoint: dict[str, Any], info: DatasetInfo,
                sha256: str, image_size: int, in_chans: int) -> dict[str, Any]:
    """The report's source and settings sections."""
    import onnx
    import onnxruntime

    return {
        "model": str(settings.out),
        "checkpoint": {"path": str(settings.checkpoint), "sha256": sha256,
                       "architecture": checkpoint["arch"]["name"], "dataset": info.name,
                       "step": checkpoint.get("step"),
                       "bytes": settings.checkpoint.stat().st_size},
        "settings": {
            "exporter": EXPORTER, "opset": settings.opset, "image_size": image_size,
            "channels": info.channels, "model_in_chans": in_chans,
            "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_shape": ["batch", info.channels, image_size, image_size],
            "dynamic_batch": True, "external_data": False, "quantize": settings.quantize,
            "parity_provider": CPU, "threads": cpu_threads(),
            "graph_optimization": "ORT_ENABLE_ALL",
            "versions": {"tfx": __version__, "torch": torch.__version__,
                         "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        },
    }


def quantized_copy(settings: ExportSettings, workdir: Path, fp32_path: Path, fp32: Session,
                   bundle, info: DatasetInfo, metadata: ModelMetadata,
                   reference: dict[int, np.ndarray], onnx_inputs: dict[int, np.ndarray],
                   progress) -> tuple[Path, dict[str, Any]]:
    """The int8 or fp16 model next to the fp32 one, with its parity, latency and metric."""
    import dataclasses

    precision = settings.quantize
    path = workdir / f"model.{precision}.onnx"
    if precision == "int8":
        label, batches = calibration_batches(settings, bundle, info, metadata)
        progress(f"int8: calibrating on up to {settings.calibration_images} images of {label}")
        quant_settings = quantize_int8(fp32_path, path, batches, INPUT_NAME, workdir)
        quant_settings["calibration_data"] = label
    else:
        progress("fp16: converting weights and compute to float16 (float32 input/output)")
        quant_settings = convert_fp16(fp32_path, path)
    finish_onnx(path, dataclasses.replace(metadata, precision=precision))
    session = create_session(path, "cpu")
    quant_parity = parity(session, reference, onnx_inputs)
    progress(f"{precision}: evaluating fp32 and {precision} on the validation split")
    metric = evaluate({"fp32": fp32, precision: session}, bundle.val, info, settings.eval_images)
    drop = metric["fp32"] - metric[precision]
    metric["drop"] = drop if math.isfinite(drop) else float("nan")
    return path, {"settings": quant_settings, "parity": quant_parity, "metric": metric,
                  "latency": time_session(session, onnx_inputs[1], settings.latency_runs)}
