"""Reduced-precision copies of an exported fp32 ONNX model: int8 (onnxruntime static QDQ
quantisation, U8S8, calibrated on real images) and fp16 (float32 inputs and outputs kept)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.errors import ExportError

QUANTIZE_CHOICES = ("none", "int8", "fp16")


def _calibration_reader(batches: Iterable[np.ndarray], input_name: str):
    """A ``CalibrationDataReader`` feeding float32 NCHW batches, each once."""
    from onnxruntime.quantization import CalibrationDataReader

    class ImageBatchReader(CalibrationDataReader):
        """Feeds the calibration batches to onnxruntime's calibrator, one by one."""

        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(batches)
            self.count = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self.count += len(batch)
            return {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    return ImageBatchReader()


@dataclass(frozen=True)
class Int8Recipe:
    """How onnxruntime quantises a model to int8 (the default is what `tfx export` ships).

    Chosen by measurement (benchmarks/export_latency.py, docs/deploy.md): QDQ format with
    unsigned int8 activations and signed per-channel int8 weights (U8S8) ran fastest on x86
    with AVX512-VNNI, ahead of S8S8 (onnxruntime re-biases signed activations for its x86
    kernels) and QOperator at batch 1; per-channel weights keep accuracy at equal speed.
    Activations are asymmetric (post-ReLU maps are non-negative: a symmetric range wastes half
    the 256 levels). Every operator onnxruntime can quantise is quantised, so MaxPool, Add and
    pooling run on int8 between the convolutions instead of dequantising around each one.
    """

    format: str = "qdq"  # qdq | qoperator
    activations: str = "uint8"  # uint8 | int8
    per_channel: bool = True
    symmetric_activations: bool = False
    op_types: tuple[str, ...] | None = None  # None: every operator onnxruntime quantises

    @property
    def label(self) -> str:
        """A short name, e.g. ``qdq-u8s8-per-channel``."""
        act = "u8" if self.activations == "uint8" else "s8"
        name = (f"{self.format}-{act}s8-{'per-channel' if self.per_channel else 'per-tensor'}"
                + ("-sym-act" if self.symmetric_activations else ""))
        return name + (f"-only-{'+'.join(self.op_types)}" if self.op_types else "")


DEFAULT_INT8 = Int8Recipe()


def quantize_int8(fp32_path: Path, out_path: Path, batches: Iterable[np.ndarray],
                  input_name: str, workdir: Path, recipe: Int8Recipe = DEFAULT_INT8
                  ) -> dict[str, Any]:
    """Static int8 quantisation (``recipe``, default: see ``Int8Recipe``); returns its settings.

    ``quant_pre_process`` runs first (symbolic shape inference and graph optimisation, as
    onnxruntime recommends) so that the calibrator sees the graph it quantises; activations are
    calibrated by min/max over ``batches``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = workdir / "preprocessed.onnx"
    try:
        quant_pre_process(str(fp32_path), str(prepared))
    except Exception as exc:
        raise ExportError(f"int8: onnxruntime's quantisation pre-processing failed ({exc}); "
                          "export without --quantize or try --quantize fp16.") from exc
    reader = _calibration_reader(batches, input_name)
    activation_type = QuantType.QUInt8 if recipe.activations == "uint8" else QuantType.QInt8
    quant_format = QuantFormat.QDQ if recipe.format == "qdq" else QuantFormat.QOperator
    try:
        quantize_static(str(prepared), str(out_path), reader, quant_format=quant_format,
                        per_channel=recipe.per_channel, activation_type=activation_type,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                        extra_options={"ActivationSymmetric": recipe.symmetric_activations})
    except Exception as exc:
        raise ExportError(f"int8: onnxruntime static quantisation failed ({exc}).") from exc
    if reader.count == 0:
        raise ExportError("int8: no calibration images; pass --calibration-data with images.")
    return {"method": "onnxruntime quantize_static", "recipe": recipe.label,
            "format": recipe.format.upper(), "per_channel": recipe.per_channel,
            "activations": recipe.activations,
            "activation_range": "symmetric" if recipe.symmetric_activations else "asymmetric",
            "weights": "int8", "quantized_ops": list(recipe.op_types or ["all supported"]),
            "calibration": "MinMax", "pre_process": "quant_pre_process",
            "calibration_images": reader.count}


def convert_fp16(fp32_path: Path, out_path: Path) -> dict[str, Any]:
    """Float16 weights and compute with float32 input and output (``keep_io_types``).

    Uses onnxruntime's own converter (``onnxruntime.transformers.float16``), which ships with the
    onnxruntime we run and so stays in step with it (onnxconverter-common would be one more
    dependency carrying the same code).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(fp32_path))
    try:
        converted = OnnxModel(convert_float_to_float16(model, keep_io_types=True))
        # The converter appends the input casts at the end of the node list; ONNX requires
        # topological order (onnxruntime tolerates it, onnx.checker does not).
        converted.topological_sort()
    except Exception as exc:
        raise ExportError(f"fp16: float16 conversion failed ({exc}); export without "
                          "--quantize.") from exc
    onnx.save(converted.model, str(out_path))
    return {"method": "onnxruntime.transformers.float16.convert_float_to_float16",
            "keep_io_types": True}
