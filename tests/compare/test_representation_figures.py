"""The representation figures (`tfx figures` and reproduce's representations part, one
implementation in compare.figures): pairs, transfer arm, the paper's CCA by default, spread
over seeds and pairs, low-data flags, killed cells skipped and named, study folders, and the
activation cache giving the pairwise pass's numbers exactly."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from fit_helpers import one_thread

from transfusion_cli.compare.figures import (
    RANDOM_VS_RANDOM,
    TRANSFER_VS_RANDOM,
    SweepRun,
    body_blocks,
    run_pairs,
    short_label,
    summarize,
    transfer_init,
)
from transfusion_cli.errors import ConfigError
from transfusion_cli.plugins import get
from transfusion_cli.runfolder import StudyFolder, SweepFolder
from transfusion_cli.similarity import SimilarityError
from transfusion_cli.similarity.activation_cache import ActivationCache
from transfusion_cli.similarity.analysis import compare_representations

SAMPLES = 96  # the whole validation split below; block4 of cbr-tiny: 96 x 4 points, 256 neurons


def run(init: str, seed: int, arch: str = "cbr-tiny", transfer: bool = False) -> SweepRun:
    return SweepRun(arch, arch, init, transfer, seed, f"{arch}-{init}-{seed}",
                    Path(f"{init}{seed}/init.pt"), Path(f"{init}{seed}/b.pt"),
                    baseline=init == "random")


def test_pairs_are_transfer_with_random_and_random_with_random_of_other_seeds():
    runs = [run("random", 0), run("random", 1), run("random", 2),
            run("imagenet", 0, transfer=True), run("imagenet", 1, transfer=True),
            run("gabor", 0), run("random", 0, arch="resnet50")]
    pairs = run_pairs(runs, transfer_init(runs, None))
    kinds = [(kind, a.init, a.seed, b.init, b.seed) for kind, a, b in pairs]
    assert sum(k[0] == TRANSFER_VS_RANDOM for k in kinds) == 6  # 2 imagenet x 3 random
    assert sum(k[0] == RANDOM_VS_RANDOM for k in kinds) == 3  # pairs of seeds 0, 1, 2
    assert all(a.group == b.group for _, a, b in pairs)
    assert not any("gabor" in (k[1], k[3]) for k in kinds)


def test_transfer_init_is_the_one_full_transfer_init_else_asked_for():
    runs = [run("random", 0), run("pretrained", 0, transfer=True), run("mean-var", 0)]
    assert transfer_init(runs, None) == "pretrained"
    assert transfer_init([run("random", 0), run("mean-var", 0)], None) is None
    with pytest.raises(ConfigError, match="--transfer"):
        transfer_init([run("imagenet", 0, transfer=True),
                       run("checkpoint:/x.pt", 0, transfer=True)], None)
    with pytest.raises(ConfigError, match="not an init of the finished cells"):
        transfer_init([run("random", 0)], "imagenet")
    assert short_label("checkpoint:runs/pre/checkpoints/best.pt") == "checkpoint:pre"


def test_top_two_blocks_are_below_the_head():
    assert body_blocks("cbr-tiny")[-2:] == ["block3", "block4"]
    assert body_blocks("resnet50")[-2:] == ["block3", "block4"]


def test_summary_is_mean_sample_std_and_count_of_finite_values():
    assert summarize([0.2, 0.4, math.nan, None]) == pytest.approx((0.3, 0.1414213562, 2))
    assert summarize([0.5]) == (0.5, None, 1)
    assert summarize([math.nan]) == (None, None, 0)


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get("architectures", "cbr-tiny").build(num_classes=5, in_chans=3).eval()


def _prepare(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255.0 - 0.5


def test_activation_cache_gives_the_pairwise_pass_values_exactly():
    """Sampled positions (max_points far below the maps' size), uneven batches, three models."""
    generator = torch.Generator().manual_seed(3)
    data = torch.randint(0, 256, (40, 3, 32, 32), generator=generator, dtype=torch.uint8)
    batches = [data[i:i + 16] for i in range(0, 40, 16)]
    blocks = ["block1", "block2", "block3"]
    metrics = [get("metrics", name) for name in ("cca", "svcca", "cka")]
    models = {seed: _tiny(seed) for seed in (0, 1, 2)}
    cache = ActivationCache(batches, blocks, max_points=3000, seed=5)
    with one_thread():
        for seed, model in models.items():
            cache.capture(seed, model, _prepare)
        for a, b in ((0, 1), (2, 0), (1, 2)):
            cached = cache.compare(a, b, metrics)
            direct = compare_representations(
                models[a], models[b], batches, prepare_a=_prepare, prepare_b=_prepare,
                pairs=[(n, n) for n in blocks], metrics=metrics, inputs=40, max_points=3000,
                seed=5)
            assert cached[0].plan.per_input < cached[0].plan.positions  # positions sampled
            for got, want in zip(cached, direct, strict=True):
                assert got.layer_a == want.layer_a and got.plan == want.plan
                for name in ("cca", "svcca", "cka"):
                    assert got.metrics[name].value == want.metrics[name].value  # bit for bit
    with pytest.raises(SimilarityError, match="per-input feature maps"):
        cache.compare(0, 1, [get("metrics", "cka_minibatch")])
    other = get("architectures", "cbr-large-w").build(num_classes=5, in_chans=3).eval()
    with pytest.raises(SimilarityError, match="one architecture"):
        cache.capture("wide", other, _prepare)


@pytest.fixture(scope="module")
def sweep(tfx, tmp_path_factory) -> Path:
    """cbr-tiny, 32 px, random and a pretrained checkpoint, 3 seeds, 2 steps each; random s2
    then 'killed': only init.pt and last.pt left, no done record."""
    root = tmp_path_factory.mktemp("figures")
    data = ["--data", "synthetic-retina", "--image-size", "32", "--batch-size", "8",
            "--option", "train_size=32", "--option", f"val_size={SAMPLES}",
            "--option", "test_size=16"]
    pre = root / "pre"
    with one_thread():
        tfx("fit", *data, "--steps", "2", "--out", pre, check=True)
        tfx("compare-inits", *data, "--arch", "cbr-tiny", "--inits",
            f"random,checkpoint:{pre}/checkpoints/best.pt", "--seeds", "3", "--steps", "2",
            "--eval-every", "1", "--scheduler", "constant", "--out", root / "sweep", check=True)
    folder = SweepFolder(root / "sweep")
    killed = folder.run("cbr-tiny__random__nall__s2")
    assert killed.last.is_file()
    killed.best.unlink()
    folder.done_marker("cbr-tiny__random__nall__s2").unlink()
    return folder.root


def _figures(tfx, *args: object):
    """`tfx figures ARGS` on one torch thread."""
    with one_thread():
        return tfx("figures", *args)


@pytest.fixture(scope="module")
def figures_all(tfx, sweep, tmp_path_factory) -> tuple[dict, str]:
    """`tfx figures all SWEEP --json`: (its JSON, its stderr)."""
    out = tmp_path_factory.mktemp("figs")
    with one_thread():
        result = tfx("figures", "all", sweep, "--out", out, "--samples", SAMPLES, "--json",
                     check=True)
    return json.loads(result.stdout), result.stderr


def test_figures_all_name_the_measure_spread_low_data_and_skipped_cell(figures_all):
    written, stderr = figures_all
    assert written["measure"] == "cca"  # the paper's measure by default
    assert set(written["figures"]) == {"fig2", "layers", "scatter", "filters"}
    assert [s["cell"] for s in written["skipped"]] == ["cbr-tiny__random__nall__s2"]
    assert "last.pt" in written["skipped"][0]["reason"]
    assert "skipped cell cbr-tiny__random__nall__s2" in stderr
    assert "cbr-tiny: 8 distinct checkpoints" in stderr  # transfer init.pt: one body, one pass
    assert {(e["group"], e["block"]) for e in written["low_data"]} == {("cbr-tiny", "block4")}
    for entry in written["figures"].values():
        assert Path(entry["image"]).stat().st_size > 10_000  # a real PNG, not an empty canvas
    fig2 = json.loads(Path(written["figures"]["fig2"]["numbers"]).read_text())
    assert fig2["measure"] == "cca" and "standard deviation" in fig2["spread"]
    assert fig2["skipped"] == written["skipped"]
    entry = fig2["fig2"]["cbr-tiny"]
    assert entry["blocks"] == ["block3", "block4"]
    across, within = entry[TRANSFER_VS_RANDOM], entry[RANDOM_VS_RANDOM]
    assert across["n"] == 6 and len(across["pairs"]) == 6  # 3 transfer x 2 finished random
    assert within["n"] == 1 and within["std"] is None  # seeds 0 and 1: one pair
    assert not any("s2" in p["b"] for p in across["pairs"] if p["b"].startswith("random"))
    assert all(0 < p["value"] <= 1 for p in across["pairs"])
    assert across["mean"] == pytest.approx(sum(p["value"] for p in across["pairs"]) / 6)
    assert across["std"] > 0 and across["low_data"] is True  # block4 is flagged
    assert [b["low_data"] for b in across["blocks"]] == [False, True]
    layers = json.loads(Path(written["figures"]["layers"]["numbers"]).read_text())
    arms = layers["to_init"]["cbr-tiny"]
    assert arms["random"]["seeds"] == [0, 1]  # the killed seed is not used
    assert [b["block"] for b in arms["random"]["blocks"]] == ["block1", "block2", "block3",
                                                              "block4"]
    assert all(b["n"] == 3 and b["std"] is not None for b in arms[fig2["transfer"]]["blocks"])
    scatter = json.loads(Path(written["figures"]["scatter"]["numbers"]).read_text())["scatter"]
    assert len(scatter) == 7 * 4  # seven pairs of runs x four blocks
    filters = json.loads(Path(written["figures"]["filters"]["numbers"]).read_text())["filters"]
    assert [f["init"] for f in filters][0] == "random" and len(filters) == 2


def test_cached_figures_equal_the_pairwise_similarity_exactly(sweep, figures_all):
    from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints

    fig2 = json.loads(Path(figures_all[0]["figures"]["fig2"]["numbers"]).read_text())
    pair = fig2["fig2"]["cbr-tiny"][RANDOM_VS_RANDOM]["pairs"][0]
    folder = SweepFolder(sweep)
    a, b = (folder.run(f"cbr-tiny__random__nall__s{s}").best for s in (0, 1))
    assert (pair["a"], pair["b"]) == ("random s0", "random s1")
    with one_thread():
        direct = compare_checkpoints(a, b, metrics="cca", layers=body_blocks("cbr-tiny"),
                                     samples=SAMPLES, seed=0, device="cpu")
    values = {r.layer_a: r.metrics["cca"].value for r in direct.comparisons[0].results}
    assert pair["value"] == (values["block3"] + values["block4"]) / 2


def test_study_folder_without_flags_and_deprecated_metric_alias(tfx, sweep, tmp_path):
    study = StudyFolder(tmp_path / "study")
    study.root.mkdir()
    study.study.write_text("{}")
    shutil.copytree(sweep, study.sweep("retina").root)
    shutil.copytree(sweep, study.sweep("source-synthetic-chest").root)  # stand-in: ignored
    result = _figures(tfx, "layers", str(study.root), "--out", str(tmp_path / "f"), "--samples",
                      str(SAMPLES), "--metric", "cka", "--json")
    assert result.exit_code == 0, result.stderr
    assert "--metric` is deprecated" in result.stderr
    written = json.loads(result.stdout)
    assert written["measure"] == "cka" and written["low_data"] == []  # CKA needs no 10x
    layers = json.loads(Path(written["figures"]["layers"]["numbers"]).read_text())
    assert list(layers["to_init"]) == ["cbr-tiny"]  # one target sweep: not prefixed
    assert layers["sources"] == [str(study.sweep("retina").root)]


def test_reproduce_representations_are_the_figures_numbers(sweep, figures_all, tmp_path):
    from transfusion_cli.reproduce.representations import (
        evidence_part,
        representation_evidence,
        save_figures,
    )

    cells = [c.name for c in SweepFolder(sweep).runs.iterdir()]
    with one_thread():
        reps = representation_evidence(sweep, cells, ["cbr-tiny"], samples=SAMPLES)
    shown = {name: json.loads(Path(entry["numbers"]).read_text())
             for name, entry in figures_all[0]["figures"].items()}
    assert json.loads(json.dumps(reps["to_init"])) == shown["layers"]["to_init"]
    assert json.loads(json.dumps(reps["fig2"])) == shown["fig2"]["fig2"]
    assert set(save_figures(reps, tmp_path / "figures")) == {"fig2", "layers", "scatter",
                                                              "filters"}
    assert reps["measure"] == "cca"
    part = evidence_part(reps)
    assert part["metric"] == "cca" and part["split"] == "validation"
    assert [b["block"] for b in part["to_init"]["cbr-tiny"]["random"]] == [
        "block1", "block2", "block3", "block4"]
    assert part["to_init"]["cbr-tiny"]["random"][3]["low_data"] is True
    assert len(part["figure2"]["cbr-tiny"]["pretrained_vs_random"]["values"]) == 6


def test_no_sweep_and_a_sweep_without_pairs_are_one_line_errors(tfx, sweep, tmp_path):
    result = _figures(tfx, "fig2", str(tmp_path), "--out", str(tmp_path / "f"))
    assert result.exit_code != 0 and "Error:" in result.stderr
    assert "neither a compare-inits sweep" in result.stderr
    only_random = tmp_path / "random-only"
    shutil.copytree(sweep, only_random)
    for cell in [c for c in (only_random / "runs").iterdir() if "checkpoint" in c.name]:
        SweepFolder(only_random).done_marker(cell.name).unlink()
    result = _figures(tfx, "fig2", str(only_random), "--out", str(tmp_path / "f"), "--samples",
                      str(SAMPLES))
    assert result.exit_code != 0 and "Figure 2 needs" in result.stderr
    assert "Traceback" not in result.stderr
    for flags, message in ((["--measure", "cka_minibatch"], "per-input feature maps"),
                           (["--samples", "0"], "--samples 0 must be at least 1"),
                           (["--transfer", "gabor"], "not an init of the finished cells")):
        result = _figures(tfx, "layers", str(sweep), "--out", str(tmp_path / "f"), *flags)
        assert result.exit_code != 0 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_figures_never_replace_files_tfx_did_not_write(tfx, sweep, figures_all, tmp_path):
    from transfusion_cli.outputs import png_made_by_tfx

    written, _ = figures_all
    ours = written["figures"]["layers"]
    assert png_made_by_tfx(Path(ours["image"]))
    assert json.loads(Path(ours["numbers"]).read_text())["format"] == "tfx-figure/1"
    out = tmp_path / "figs"
    out.mkdir()
    mine = out / "layers.png"
    mine.write_bytes(b"the user's own")
    result = _figures(tfx, "layers", sweep, "--out", out, "--samples", SAMPLES)
    assert result.exit_code == 1
    assert f"--out {mine} exists and was not written by tfx" in result.error_line()
    assert list(out.iterdir()) == [mine] and mine.read_bytes() == b"the user's own"
