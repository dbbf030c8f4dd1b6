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
import json
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
from transfusion_cli.data.batches import (
    checkpoint_dataset,
    checkpoint_input_roots,
    checkpoint_source,
    split_batches,
)
from transfusion_cli.data.bundles import DatasetInfo, adapt_channels, normalize
from transfusion_cli.deploy.cam_export import LogitsAndCams, pooled_linear_head
from transfusion_cli.deploy.metadata import FORMAT as METADATA_FORMAT
from transfusion_cli.deploy.metadata import (
    HEATMAP_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelMetadata,
)
from transfusion_cli.deploy.metadata import PREFIX as METADATA_PREFIX
from transfusion_cli.deploy.model_card import (
    card_path,
    card_written_by_tfx,
    export_facts,
    write_card,
)
from transfusion_cli.deploy.ort_session import (
    CPU,
    Session,
    cpu_threads,
    create_session,
    time_session,
)
from transfusion_cli.deploy.quantize import QUANTIZE_CHOICES, convert_fp16, quantize_int8
from transfusion_cli.deploy.triton import model_name, write_triton_repo
from transfusion_cli.errors import ConfigError, DataError, ExportError
from transfusion_cli.io import (
    make_folder,
    make_temp_dir,
    remove_made_folders,
    storage_error,
    storage_failure,
    write_json,
)
from transfusion_cli.limits import MIN_IMAGE_SIZE
from transfusion_cli.models.checkpoint import file_sha256
from transfusion_cli.models.trained import load_trained
from transfusion_cli.outputs import OutputFile, has_json_format, refuse_overwriting_inputs
from transfusion_cli.progress import track, track_iter

EXPORTER = "torchscript (torch.onnx.export, dynamo=False)"
REPORT_FORMAT = "tfx-export-report/1"  # model.export.json's "format" key
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
    # Also write a Triton model repository here (deploy/triton.py).
    triton_repo: Path | None = None

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
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"--image-size {self.image_size} is too small; use "
                              f"{MIN_IMAGE_SIZE} or more.")
        if not self.tolerance >= 0:
            raise ConfigError(f"--tolerance {self.tolerance} must be a number >= 0.")
        if self.calibration_images < 1:
            raise ConfigError("--calibration-images must be at least 1.")
        if self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a folder; give a file name such as "
                              f"{self.out / 'model.onnx'}.")
        if self.out.suffix.lower() != ".onnx":
            raise ConfigError(f"--out {self.out} should end in .onnx.")
        if self.triton_repo is not None:
            from transfusion_cli.deploy.triton import check_target, model_name

            models = [self.out] + ([quantized_path(self.out, self.quantize)]
                                   if self.quantize != "none" else [])
            check_target(self.triton_repo, [model_name(m) for m in models])


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


def onnx_written_by_tfx(path: Path) -> bool:
    """Whether ``path`` is an ONNX model carrying tfx's metadata (a file `tfx export` wrote)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a model onnx can parse: not one tfx wrote
        return False
    props = {p.key: p.value for p in model.metadata_props}
    return props.get(METADATA_PREFIX + "format") == json.dumps(METADATA_FORMAT)


def report_written_by_tfx(path: Path) -> bool:
    """Whether ``path`` is an export report (its ``format``, or the keys tfx 0.2 wrote)."""
    return has_json_format(path, [REPORT_FORMAT],
                           legacy_keys=("model", "checkpoint", "settings", "parity", "files"))


def export_outputs(settings: ExportSettings) -> dict[str, OutputFile]:
    """Every file `tfx export` writes, each with how to recognise one it wrote before (only
    those are replaced)."""
    writer = "`tfx export`"
    outputs = {"--out": OutputFile(settings.out, onnx_written_by_tfx, writer),
               "The report of --out": OutputFile(report_path(settings.out),
                                                 report_written_by_tfx, writer)}
    if settings.quantize != "none":
        outputs["The quantised --out"] = OutputFile(
            quantized_path(settings.out, settings.quantize), onnx_written_by_tfx, writer)
    outputs["The model card of --out"] = OutputFile(card_path(settings.out),
                                                    card_written_by_tfx, writer)
    return outputs


def calibration_roots(calibration: str | None) -> list[Path]:
    """The files and folders ``--calibration-data`` reads (a folder, or a dataset's)."""
    if not calibration:
        return []
    if Path(calibration).expanduser().is_dir():
        return [Path(calibration).expanduser()]
    from transfusion_cli.data.source import DataSource

    return DataSource.named(calibration).input_roots()


def quantized_path(out: Path, precision: str) -> Path:
    """``model.onnx`` -> ``model.int8.onnx`` (or ``model.fp16.onnx``): beside the fp32 model."""
    return out.with_suffix(f".{precision}.onnx")


# ---------------------------------------------------------------------------- data


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
    from transfusion_cli.data.preprocess import (
        IMAGE_SUFFIXES,
        load_prepared,
        normalize_array,
        preprocess_step,
    )

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--calibration-data {folder} holds no image files "
                        f"({', '.join(IMAGE_SUFFIXES)}).")
    files = [files[int(i)] for i in np.random.default_rng(0).permutation(len(files))[:limit]]
    step = preprocess_step(metadata.preprocess, metadata.preprocess_plugin)
    with track("export: int8 calibration", len(files), "images") as task:
        for start in range(0, len(files), batch_size):
            arrays = [load_prepared(p, metadata.image_size, metadata.channels, step)
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


def torch_to_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int,
                  outputs: tuple[str, ...] = (OUTPUT_NAME,)) -> None:
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
                input_names=[INPUT_NAME], output_names=list(outputs),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *outputs)},
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
        std=tuple(float(s) for s in info.std), architecture=checkpoint["arch"]["name"],
        tfx_version=__version__, checkpoint_sha256=sha256, dataset=info.name,
        selection_metric=info.selection_metric, referable_threshold=info.referable_threshold,
        preprocess=info.preprocess, preprocess_plugin=step_plugin(info.preprocess),
        precision=precision)


def step_plugin(name: str | None) -> str | None:
    """The plugin that registers preprocessing step ``name`` (a ConfigError if none does)."""
    if name is None:
        return None
    from transfusion_cli.data.preprocess import preprocess_step
    from transfusion_cli.plugins import get_registry

    preprocess_step(name)  # the error with the fix when no installed plugin registers it
    return get_registry().owner("preprocessing", name)


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


def selection_metric_per_session(sessions: dict[str, Session], split, info: DatasetInfo,
                                 limit: int | None) -> dict[str, Any]:
    """The dataset's headline metric of each session on ``split`` (same images for all)."""
    from transfusion_cli.scores import compute_metrics

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


HEATMAP_SCALE_IMAGES = 128  # validation images whose heatmap maxima set the absolute scale


def heatmap_check(session: Session, module: LogitsAndCams, images: torch.Tensor, bundle,
                  info: DatasetInfo, metadata: ModelMetadata, progress
                  ) -> tuple[ModelMetadata, dict[str, Any]]:
    """Check the exported class activation maps against PyTorch's, and measure the absolute
    heatmap scale on validation images; (metadata with the scale, report entry)."""
    from transfusion_cli.deploy.heatmaps import absolute_scale, explained_score, grad_cam

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = session.session
        logits, cams = raw.run([OUTPUT_NAME, HEATMAP_NAME], {raw.get_inputs()[0].name: batch})
        return logits, cams

    with torch.inference_mode():
        _, expected = module(normalize(images, info))
    _, got = run(normalize(images, info).numpy())
    difference = float(np.abs(got - expected.numpy()).max())
    maxima = []
    split = bundle.val if bundle.val is not None and len(bundle.val) else bundle.train
    for batch, _ in split_batches(split, HEATMAP_SCALE_IMAGES, batch_size=EVAL_BATCH):
        logits, cams = run(normalize(batch, info).numpy())
        for row in range(len(logits)):
            score = explained_score(logits[row], info.task, info.class_names,
                                    info.referable_threshold)
            maxima.append(float(grad_cam(cams[row], score.gradient).max()))
    scale = absolute_scale(maxima)
    progress(f"heatmap output '{HEATMAP_NAME}' {list(got.shape[1:])}: max abs diff vs PyTorch "
             f"{difference:.2e}; absolute scale {scale if scale is None else f'{scale:.3g}'} "
             f"from {len(maxima)} images")
    if difference > FP32_TOLERANCE * max(1.0, float(np.abs(expected.numpy()).max())):
        raise ExportError(f"The exported class activation maps differ from PyTorch's by "
                          f"{difference:.3g}; nothing was written.")
    report = {"output": HEATMAP_NAME, "shape": ["batch", *map(int, got.shape[1:])],
              "max_abs_diff": difference, "max_abs": float(np.abs(expected.numpy()).max()),
              "scale": scale, "scale_images": len(maxima),
              "scale_rule": "99th percentile of the per-image Grad-CAM maxima",
              "method": "Grad-CAM from class activation maps (exact for global average "
                        "pooling + linear head)"}
    return dataclasses.replace(metadata, heatmap_scale=scale), report


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
    started = time.perf_counter()
    trained = load_trained(settings.checkpoint, "cpu")  # ONNX export traces on the CPU
    checkpoint, info, model, in_chans = (trained.checkpoint, trained.info, trained.model,
                                         trained.in_chans)
    source = checkpoint_source(checkpoint, info, settings.data_dir)
    # Every output is checked before the first is written (outputs.py).
    refuse_overwriting_inputs(
        export_outputs(settings), inputs=[settings.checkpoint, settings.evaluation],
        data_dirs=[settings.data_dir, *checkpoint_input_roots(checkpoint, info, settings.data_dir),
                   *calibration_roots(settings.calibration_data)])
    image_size = settings.image_size or info.image_size
    sha256 = file_sha256(settings.checkpoint)
    metadata = model_metadata(checkpoint, info, image_size, sha256)

    progress(f"building dataset '{info.name}' at {image_size} px for the checks")
    bundle = checkpoint_dataset(checkpoint, info, image_size, settings.data_dir)
    card_facts = export_facts(settings.checkpoint, checkpoint, info, bundle, sha256, image_size,
                              settings.evaluation, source.fingerprint)
    # predict and serve decide at the operating points `tfx evaluate` chose (decisions.py).
    metadata = dataclasses.replace(metadata, model_card=card_facts,
                                   operating_points=card_facts.get("operating_points"))
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
    module: nn.Module = ChannelAdapter(model, in_chans) if in_chans != info.channels else model
    # Models ending in global average pooling + a linear head get a second output: the class
    # activation maps that `tfx predict --heatmaps` turns into Grad-CAM without torch.
    head = pooled_linear_head(model, normalize(batches[8], info, in_chans))
    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    if head is not None:
        # eval(): the exporter restores the wrapper's mode afterwards, recursively.
        module = LogitsAndCams(model, head, in_chans if in_chans != info.channels else None
                               ).eval()
        outputs = (OUTPUT_NAME, HEATMAP_NAME)
        metadata = dataclasses.replace(metadata, heatmap_output=HEATMAP_NAME)

    made = make_folder(settings.out.parent)
    workdir = make_temp_dir(settings.out.parent, "export")  # pid in its name: see io.py
    exported = False
    try:
        fp32_path = workdir / "model.fp32.onnx"
        progress(f"exporting {metadata.architecture} with the {EXPORTER} exporter, "
                 f"opset {settings.opset}")
        torch_to_onnx(module, torch.from_numpy(onnx_inputs[8][:2]), fp32_path, settings.opset,
                      outputs)
        finish_onnx(fp32_path, metadata, settings.opset)
        fp32 = create_session(fp32_path, "cpu")
        heatmap_report = None
        if head is not None:
            metadata, heatmap_report = heatmap_check(fp32, module, batches[8], bundle, info,
                                                     metadata, progress)
            finish_onnx(fp32_path, metadata, settings.opset)  # now with the heatmap scale
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
        report["heatmap"] = heatmap_report or {
            "output": None, "note": "no heatmap output: the model does not end in global "
                                    "average pooling and a linear head"}
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
        if settings.triton_repo is not None:
            report["files"]["triton"] = [str(settings.triton_repo / model_name(path))
                                         for path in targets.values()]
        report["wall_time_s"] = round(time.perf_counter() - started, 2)
        # The report is complete before any model moves, so no .onnx is left without it.
        staged_report = write_json(workdir / "report.json", report)
        for precision, path in written.items():
            os.replace(path, targets[precision])
        os.replace(staged_report, report_path(settings.out))
        if write_card(settings.out, card_facts) is None:
            progress(f"left {card_path(settings.out)} alone: tfx did not write it")
        if settings.triton_repo is not None:
            write_triton_repo(settings.triton_repo, [
                (targets[precision], dataclasses.replace(metadata, precision=precision))
                for precision in written])
            progress(f"wrote the Triton model repository {settings.triton_repo}")
        exported = True
    except Exception as exc:  # a full disk or a size limit, however the writer wrapped it
        if (failure := storage_failure(exc)) is None:
            raise
        raise storage_error(settings.out, failure) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not exported:  # a failed export leaves no empty folder of its own behind
            remove_made_folders(made)
    return report


def base_report(settings: ExportSettings, checkpoint: dict[str, Any], info: DatasetInfo,
                sha256: str, image_size: int, in_chans: int) -> dict[str, Any]:
    """The report's source and settings sections."""
    import onnx
    import onnxruntime

    return {
        "format": REPORT_FORMAT,
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
    metric = selection_metric_per_session({"fp32": fp32, precision: session}, bundle.val, info,
                                          settings.eval_images)
    drop = metric["fp32"] - metric[precision]
    metric["drop"] = drop if math.isfinite(drop) else float("nan")
    return path, {"settings": quant_settings, "parity": quant_parity, "metric": metric,
                  "latency": time_session(session, onnx_inputs[1], settings.latency_runs)}
