"""Reduced-precision copies of an exported fp32 ONNX model: int8 (onnxruntime static QDQ
quantisation, calibrated on real images) and fp16 (float32 inputs and outputs kept)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


def quantize_int8(fp32_path: Path, out_path: Path, batches: Iterable[np.ndarray],
                  input_name: str, workdir: Path) -> dict[str, Any]:
    """Static int8 quantisation in QDQ format with per-channel weights; returns its settings.

    ``quant_pre_process`` runs first (symbolic shape inference and graph optimisation, as
    onnxruntime recommends) so that the calibrator sees the graph it quantises; activations are
    calibrated by min/max over ``batches``. Signed int8 activations and weights (S8S8) are
    onnxruntime's QDQ default and run on VNNI/AVX2 CPUs and on TensorRT/CUDA alike.
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
    try:
        quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as exc:
        raise ExportError(f"int8: onnxruntime static quantisation failed ({exc}).") from exc
    if reader.count == 0:
        raise ExportError("int8: no calibration images; pass --calibration-data with images.")
    return {"method": "onnxruntime quantize_static", "format": "QDQ", "per_channel": True,
            "activations": "int8", "weights": "int8", "calibration": "MinMax",
            "pre_process": "quant_pre_process", "calibration_images": reader.count}


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
