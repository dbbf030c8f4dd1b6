"""Issue 12, section 6: the representation figures from a compare-inits sweep folder."""

from __future__ import annotations

import json
from pathlib import Path

import fit_helpers
import pytest
from fit_helpers import one_thread
from registry_helpers import registry_with
from typer.testing import CliRunner

from transfusion_cli.cli import app
from transfusion_cli.errors import ConfigError
from transfusion_cli.similarity.figures import (
    SweepRun,
    run_pairs,
    short_label,
    top_blocks,
    transfer_init,
)


def run(init: str, seed: int, arch: str = "cbr-tiny") -> SweepRun:
    return SweepRun(arch, init, seed, Path(f"{init}{seed}/init.pt"), Path(f"{init}{seed}/b.pt"))


def test_pairs_are_transfer_with_random_and_random_with_random_of_other_seeds():
    runs = [run("random", 0), run("random", 1), run("random", 2), run("imagenet", 0),
            run("imagenet", 1), run("gabor", 0), run("random", 0, arch="resnet50")]
    pairs = run_pairs(runs, transfer_init(runs, None))
    kinds = [(kind, a.init, a.seed, b.init, b.seed) for kind, a, b in pairs]
    assert sum(k[0] == "transfer vs random" for k in kinds) == 6  # 2 imagenet x 3 random
    assert sum(k[0] == "random vs random" for k in kinds) == 3  # pairs of seeds 0, 1, 2
    assert all(a.arch == b.arch for _, a, b in pairs)
    assert not any("gabor" in (k[1], k[3]) for k in kinds)


def test_transfer_init_is_imagenet_else_the_one_checkpoint_else_asked_for():
    assert transfer_init([run("random", 0), run("checkpoint:/x/pre.pt", 0)], None) \
        == "checkpoint:/x/pre.pt"
    with pytest.raises(ConfigError, match="--transfer"):
        transfer_init([run("random", 0), run("mean-var", 0)], None)
    with pytest.raises(ConfigError, match="not an init of this sweep"):
        transfer_init([run("random", 0)], "imagenet")
    assert short_label("checkpoint:runs/pre/checkpoints/best.pt") == "checkpoint:pre"


def test_top_blocks_are_below_the_head():
    assert top_blocks("cbr-tiny") == ["block3", "block4"]
    assert top_blocks("resnet50") == ["block3", "block4"]


@pytest.mark.slow
def test_every_figure_from_a_tiny_synthetic_sweep(tmp_path, monkeypatch):
    """cbr-tiny, 32 px, 2 seeds of random and of a pretrained checkpoint, 2 steps each."""
    monkeypatch.chdir(tmp_path)
    data = ["--data", "fake-retina", "--image-size", "32", "--batch-size", "8",
            "--option", "n_train=48", "--option", "n_val=120"]
    runner = CliRunner()
    with registry_with(fit_helpers), one_thread():
        result = runner.invoke(app, ["fit", *data, "--steps", "3", "--out", "pre"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, [
            "compare-inits", *data, "--arch", "cbr-tiny", "--inits",
            "random,checkpoint:pre/checkpoints/best.pt", "--seeds", "2", "--steps", "2",
            "--scheduler", "constant", "--out", "sweep"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["figures", "all", "sweep", "--out", "figs", "--samples",
                                     "120", "--json"])
        assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert set(written) == {"fig2", "layers", "scatter", "filters"}
    for entry in written.values():
        assert Path(entry["image"]).stat().st_size > 10_000  # a real PNG, not an empty canvas
    fig2 = json.loads(Path(written["fig2"]["numbers"]).read_text())["archs"]["cbr-tiny"]
    assert len(fig2["transfer vs random"]) == 4 and len(fig2["random vs random"]) == 1
    assert all(0 < p["value"] <= 1 for p in fig2["transfer vs random"])
    layers = json.loads(Path(written["layers"]["numbers"]).read_text())["archs"]["cbr-tiny"]
    assert layers["layers"] == ["block1", "block2", "block3", "block4"]
    assert {len(v) for v in layers["inits"].values()} == {2}  # two seeds per init
    scatter = json.loads(Path(written["scatter"]["numbers"]).read_text())["points"]
    assert len(scatter) == 5 * 4  # five pairs of runs x four blocks
    filters = json.loads(Path(written["filters"]["numbers"]).read_text())["filters"]
    assert [f["init"] for f in filters][0] == "random" and len(filters) == 2
