"""`tfx export --triton-repo DIR` writes a Triton model repository whose config
parses with Triton's own ModelConfig protobuf and matches the ONNX graph exactly, and never
touches a model folder tfx did not write."""

from __future__ import annotations

import json

import onnx
import pytest
from export_helpers import FakeDatasets, chest_info, make_ckpt, retina_info
from registry_helpers import registry_with

from transfusion_cli.deploy.export import ExportSettings, export_checkpoint
from transfusion_cli.deploy.triton import MARKER, model_name
from transfusion_cli.errors import ConfigError

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def graph_dims(value) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("info", [retina_info(32), chest_info(40)], ids=["retina", "chest"])
def test_triton_repository_matches_the_onnx_graph(tmp_path, info):
    repo = tmp_path / "triton"
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", info, in_chans=3, seed=1)
        report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "m.onnx",
                                                  quantize="int8", calibration_images=16,
                                                  latency_runs=1, triton_repo=repo))
    assert report["files"]["triton"] == [str(repo / "m"), str(repo / "m_int8")]
    for name, source in (("m", tmp_path / "m.onnx"), ("m_int8", tmp_path / "m.int8.onnx")):
        folder = repo / name
        assert (folder / "1" / "model.onnx").read_bytes() == source.read_bytes()
        config = parse(folder / "config.pbtxt")
        assert config.name == name and config.backend == "onnxruntime"
        assert config.max_batch_size == 32 and list(config.dynamic_batching.preferred_batch_size)
        graph = onnx.load(str(source)).graph
        for declared, value in zip([*config.input, *config.output],
                                   [*graph.input, *graph.output], strict=True):
            dims = graph_dims(value)
            assert declared.name == value.name
            assert isinstance(dims[0], str)  # the dynamic batch axis Triton batches over
            assert list(declared.dims) == dims[1:]
            assert model_config_pb2.DataType.Name(declared.data_type) == "TYPE_FP32"
        assert [o.name for o in config.output] == ["logits", "class_activation_map"]
        parameters = {k: json.loads(v.string_value) for k, v in config.parameters.items()}
        assert parameters["tfx.mean"] == list(info.mean)
        assert parameters["tfx.image_size"] == info.image_size
        assert parameters["tfx.preprocess"] == info.preprocess
        assert parameters["tfx.precision"] == ("int8" if name.endswith("int8") else "fp32")


def test_quoting_survives_any_class_name(tmp_path):
    from transfusion_cli.deploy.metadata import ModelMetadata
    from transfusion_cli.deploy.triton import render_config

    names = ('a "quoted" name', "back\\slash", "ünïcode", "new\nline")
    meta = ModelMetadata(task="multilabel", class_names=names, image_size=32, channels=1,
                         mean=(0.5,), std=(0.25,), architecture="cbr-tiny", tfx_version="0",
                         checkpoint_sha256="x", dataset="d", selection_metric="mean_auc")
    tensor = [{"name": "image", "data_type": "TYPE_FP32", "shape": ["batch", 1, 32, 32]}]
    out = [{"name": "logits", "data_type": "TYPE_FP32", "shape": ["batch", 4]}]
    config = text_format.Parse(render_config("m", meta, tensor, out),
                               model_config_pb2.ModelConfig())
    assert json.loads(config.parameters["tfx.class_names"].string_value) == list(names)


def test_a_folder_tfx_did_not_write_is_left_alone(tfx, tmp_path):
    repo = tmp_path / "triton"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\n# my own model\n')
    (repo / "m" / "1" / "model.onnx").write_bytes(b"mine")
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32), seed=1)
        with pytest.raises(ConfigError, match="was not written by tfx export; left it alone"):
            export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "m.onnx",
                                             latency_runs=1, triton_repo=repo))
        assert not (tmp_path / "m.onnx").exists()  # refused before any work
        assert (repo / "m" / "1" / "model.onnx").read_bytes() == b"mine"
        # Another name is fine, and a second export replaces only tfx's own folder.
        result = tfx("export", str(ckpt), "--out", str(tmp_path / "n.onnx"), "--triton-repo",
                     str(repo))
        assert result.exit_code == 0, result.stderr
        assert (repo / "n" / "config.pbtxt").read_text().startswith(MARKER)
        (repo / "n" / "notes.txt").write_text("mine too")
        result = tfx("export", str(ckpt), "--out", str(tmp_path / "n.onnx"), "--triton-repo",
                     str(repo))
        assert result.exit_code == 0, result.stderr
    assert (repo / "m" / "config.pbtxt").read_text().startswith('name: "m"')
    # Only tfx's two files were rewritten; what a user put beside them stays.
    assert sorted(p.name for p in (repo / "n").iterdir()) == ["1", "config.pbtxt", "notes.txt"]
    assert model_name(tmp_path / "model.int8.onnx") == "model_int8"
