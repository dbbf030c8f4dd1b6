"""The deployment snippet in docs/deploy.md runs as printed and agrees with `tfx predict`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from export_helpers import (
    FakeDatasets,
    chest_info,
    fundus_png,
    gray_png,
    make_ckpt,
    retina_info,
)
from registry_helpers import registry_with

from transfusion_cli.deploy.export import ExportSettings, export_checkpoint
from transfusion_cli.deploy.predict import OnnxClassifier

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def snippet() -> str:
    """The documented standalone script (the ```python block that imports onnxruntime)."""
    blocks = re.findall(r"```python\n(.*?)```", DEPLOY_DOC.read_text(), flags=re.S)
    scripts = [b for b in blocks if "import onnxruntime" in b]
    assert len(scripts) == 1, "docs/deploy.md should hold one standalone onnxruntime script"
    return scripts[0]


@pytest.mark.parametrize("kind", ["retina", "chest"])
def test_documented_script_matches_tfx_predict(tmp_path, kind):
    info = retina_info(32) if kind == "retina" else chest_info(32)
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", info, in_chans=3, seed=1)
        model = tmp_path / "model.onnx"
        export_checkpoint(ExportSettings(checkpoint=ckpt, out=model, latency_runs=1))
    if kind == "retina":
        images = [fundus_png(tmp_path / f"f{i}.png", size=70 + 9 * i, seed=i) for i in range(2)]
    else:
        images = [gray_png(tmp_path / f"g{i}.png", size=50 + 5 * i, seed=i) for i in range(2)]
    script = tmp_path / "classify.py"
    script.write_text(snippet())
    run = subprocess.run([sys.executable, str(script), str(model), *map(str, images)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    documented = [json.loads(line) for line in run.stdout.splitlines()]
    expected = OnnxClassifier(model, "cpu").predict_files(images)
    assert len(documented) == len(expected) == 2
    for doc, ref in zip(documented, expected, strict=True):
        assert doc["probabilities"] == pytest.approx(ref.probabilities, abs=1e-6)
        assert doc["predicted"] == ref.predicted
        if kind == "retina":
            assert doc["referable_probability"] == pytest.approx(ref.referable_probability,
                                                                 abs=1e-6)
