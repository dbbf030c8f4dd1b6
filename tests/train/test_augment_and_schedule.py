"""Seeded augmentation after the cache, per-dataset defaults, a schedule that does not depend
on the run length, and test-split convergence."""

from __future__ import annotations

import json

import fit_helpers
import numpy as np
import pytest
import torch
from fit_helpers import one_thread
from registry_helpers import registry_with

from transfusion_cli.io import read_jsonl
from transfusion_cli.models.checkpoint import load_checkpoint
from transfusion_cli.plugins import get
from transfusion_cli.train import fit, resolve_config
from transfusion_cli.train.augment import AUGMENTATIONS, AugmentedSplit, make_augmentation
from transfusion_cli.train.optim import LearningRateFactor
from transfusion_cli.train.state import EpochBatchSampler


@pytest.fixture
def fakes():
    with registry_with(fit_helpers):
        yield


TINY = {"data": "fake-retina", "arch": "cbr-tiny", "image_size": 32, "batch_size": 8,
        "options": {"n_train": "48", "n_val": "24"}, "workers": 0}


def test_augmentation_is_a_function_of_its_draw_seed_and_leaves_the_source_alone():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    source = [(image, torch.tensor(2))]
    split = AugmentedSplit(source, make_augmentation("fundus", 32))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, again, other = split[(0, 7)][0], split[(0, 7)][0], split[(0, 8)][0]
    assert torch.equal(torch.get_rng_state(), before)  # the training RNG is untouched
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.dtype == torch.uint8 and first.shape == image.shape
    assert torch.equal(source[0][0], image)  # the cached image itself is never changed


@pytest.mark.parametrize("name", ["light"])
def test_light_augmentation_keeps_left_and_right(name):
    """A chest X-ray's laterality survives: the bright left half stays on the left."""
    image = torch.full((1, 32, 32), 40, dtype=torch.uint8)
    image[:, :, :16] = 220
    split = AugmentedSplit([(image, torch.tensor(0))], make_augmentation(name, 32))
    for seed in range(40):
        out = split[(0, seed)][0].float()
        assert out[:, :, :12].mean() > out[:, :, 20:].mean() + 50, seed


def test_flip_pipelines_do_flip_sometimes():
    image = torch.full((1, 32, 32), 40, dtype=torch.uint8)
    image[:, :, :16] = 220
    split = AugmentedSplit([(image, torch.tensor(0))], make_augmentation("flip", 32))
    flipped = [split[(0, s)][0][:, :, :12].float().mean() < 100 for s in range(40)]
    assert 5 < sum(flipped) < 35


def test_sampler_draw_seeds_depend_only_on_seed_epoch_and_position():
    full = EpochBatchSampler(40, 8, seed=3, augment=True)
    full.set_position(2, 0)
    batches = list(full)
    tail = EpochBatchSampler(40, 8, seed=3, augment=True)
    tail.set_position(2, 3)
    assert list(tail) == batches[3:]
    seeds = [s for batch in batches for _, s in batch]
    assert len(set(seeds)) == len(seeds)
    plain = EpochBatchSampler(40, 8, seed=3)
    plain.set_position(2, 0)
    assert [[i for i, _ in b] for b in batches] == list(plain)


def test_dataset_defaults():
    assert get("datasets", "retina").default_augment == "fundus"
    for name in ("chexpert", "nih-cxr14"):
        assert get("datasets", name).default_augment == "light"  # no flips on chest X-rays
    for name in ("synthetic-retina", "synthetic-chest"):
        assert get("datasets", name).default_augment == "none"  # the ~45 s quick start
    from transfusion_cli.plugins import get_registry

    assert {s.default_augment for s in get_registry().specs("datasets")} <= set(AUGMENTATIONS)


def test_constant_schedule_does_not_depend_on_run_length():
    short, long = LearningRateFactor(100, cosine=False, warmup_steps=10), \
        LearningRateFactor(10_000, cosine=False, warmup_steps=10)
    assert [short(s) for s in range(100)] == [long(s) for s in range(100)]
    assert short(0) == pytest.approx(0.1) and short(9) == 1.0 and short(50) == 1.0
    cosine_short, cosine_long = LearningRateFactor(100), LearningRateFactor(10_000)
    assert cosine_short(50) != pytest.approx(cosine_long(50))


def final_state(run):
    return load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]


def test_augmented_resume_is_bit_exact_and_test_is_scored_along_training(tmp_path, fakes):
    settings = {**TINY, "augment": "fundus", "scheduler": "constant", "eval_every": 5,
                "eval_test": True}
    with one_thread():
        reference = fit(resolve_config(None, {**settings, "steps": 14,
                                              "out": str(tmp_path / "ref")}),
                        show_progress=False).run_dir
        plain = fit(resolve_config(None, {**settings, "augment": "none", "steps": 14,
                                          "out": str(tmp_path / "plain")}),
                    show_progress=False).run_dir
        part = fit(resolve_config(None, {**settings, "steps": 8, "out": str(tmp_path / "run")}),
                   show_progress=False).run_dir
        fit(resolve_config(None, {"resume": str(part), "steps": 14}), show_progress=False)
    ref, resumed, unaugmented = final_state(reference), final_state(part), final_state(plain)
    for key, value in ref.items():
        assert torch.equal(value, resumed[key]), key
    assert any(not torch.equal(value, unaugmented[key]) for key, value in ref.items()
               if value.is_floating_point())
    records = read_jsonl(reference / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 14]
    assert all(0 <= r["test/referable_auc"] <= 1 for r in records)
    env = json.loads((reference / "env.json").read_text())
    assert env["choices"]["augment"]["name"] == "fundus"
    assert env["choices"]["lr_schedule"] == "constant"
    assert "augment: fundus" in (reference / "config.yaml").read_text()


def test_default_augment_is_resolved_and_recorded(tmp_path, fakes):
    with one_thread():
        run = fit(resolve_config(None, {**TINY, "steps": 2, "out": str(tmp_path / "r")}),
                  show_progress=False).run_dir
    assert "augment: none" in (run / "config.yaml").read_text()  # fake datasets: the default
    env = json.loads((run / "env.json").read_text())
    assert env["choices"]["architecture_init"]
    assert np.isfinite(read_jsonl(run / "metrics.jsonl")[-1]["referable_auc"])
