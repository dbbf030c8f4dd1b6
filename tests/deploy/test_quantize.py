"""int8 recipes: the shipped default (QDQ, U8S8, per-channel) and the alternatives the export
benchmark measures produce the graphs they claim, and stay close to fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from transfusion_cli.deploy.export import torch_to_onnx
from transfusion_cli.deploy.ort_session import NHWC_TRANSFORMER, create_session
from transfusion_cli.deploy.quantize import DEFAULT_INT8, Int8Recipe, quantize_int8
from transfusion_cli.errors import ConfigError
from transfusion_cli.plugins import get

SIZE = 32


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    torch.manual_seed(0)
    model = get("architectures", "cbr-tiny").build(num_classes=5, in_chans=3).eval()
    path = tmp_path_factory.mktemp("export") / "fp32.onnx"
    torch_to_onnx(model, torch.randn(2, 3, SIZE, SIZE), path, opset=17)
    return path


def quantized(fp32_path, tmp_path, recipe: Int8Recipe):
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(8, 3, SIZE, SIZE)).astype(np.float32) for _ in range(2)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "int8.onnx"
    settings = quantize_int8(fp32_path, out, iter(batches), "image", tmp_path, recipe)
    return out, settings


def zero_point_types(model: onnx.ModelProto, op: str) -> set[int]:
    """Element types of the zero points feeding ``op`` nodes (QuantizeLinear: activations)."""
    inits = {i.name: i for i in model.graph.initializer}
    return {inits[n.input[2]].data_type for n in model.graph.node
            if n.op_type == op and len(n.input) > 2 and n.input[2] in inits}


def test_default_recipe_is_qdq_u8s8_per_channel(fp32_model, tmp_path):
    path, settings = quantized(fp32_model, tmp_path, DEFAULT_INT8)
    assert settings["recipe"] == "qdq-u8s8-per-channel"
    assert settings["activations"] == "uint8" and settings["activation_range"] == "asymmetric"
    model = onnx.load(str(path))
    assert zero_point_types(model, "QuantizeLinear") == {onnx.TensorProto.UINT8}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_scales = [inits[n.input[1]] for n in model.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] in inits
                     and inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 4]
    assert weight_scales and all(s.ndim == 1 and s.size > 1 for s in weight_scales)  # per channel
    # MaxPool runs on int8 too (every operator onnxruntime quantises, not only Conv).
    assert any(n.op_type == "MaxPool" for n in model.graph.node)
    x = np.random.default_rng(1).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32)
    reference = create_session(fp32_model, "cpu").run(x)
    got = create_session(path, "cpu").run(x)
    assert np.abs(got - reference).max() <= 0.1 * np.abs(reference).max() + 1e-3


def test_alternative_recipes_build_the_graphs_they_name(fp32_model, tmp_path):
    path, _ = quantized(fp32_model, tmp_path, Int8Recipe(format="qoperator"))
    assert "QLinearConv" in {n.op_type for n in onnx.load(str(path)).graph.node}
    path, settings = quantized(fp32_model, tmp_path, Int8Recipe(activations="int8",
                                                                symmetric_activations=True))
    model = onnx.load(str(path))
    assert zero_point_types(model, "QuantizeLinear") == {onnx.TensorProto.INT8}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert all(int(inits[n.input[2]]) == 0 for n in model.graph.node
               if n.op_type == "QuantizeLinear" and n.input[2] in inits)
    assert settings["recipe"].endswith("-sym-act")
    def quantize_nodes(path) -> int:
        return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)

    conv_only, _ = quantized(fp32_model, tmp_path / "conv", Int8Recipe(op_types=("Conv", "Gemm")))
    everything, _ = quantized(fp32_model, tmp_path / "all", DEFAULT_INT8)
    assert 0 < quantize_nodes(conv_only) < quantize_nodes(everything)


def test_session_tuning_options(fp32_model, tmp_path):
    x = np.random.default_rng(2).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32)
    reference = create_session(fp32_model, "cpu").run(x)
    saved = tmp_path / "optimised.onnx"
    create_session(fp32_model, "cpu", 1, {"level": "extended", "optimized_path": saved,
                                          "disabled_optimizers": [NHWC_TRANSFORMER]})
    assert saved.is_file()
    np.testing.assert_allclose(create_session(saved, "cpu").run(x), reference, atol=1e-4)
    with pytest.raises(ConfigError, match="optimisation level"):
        create_session(fp32_model, "cpu", 1, {"level": "fastest"})
