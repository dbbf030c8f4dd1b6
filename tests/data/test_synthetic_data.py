"""The built-in synthetic datasets: determinism, labels, options, and images that fit labels."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tfx_plugins.datasets.synthetic_chest_xray import ChestScene
from tfx_plugins.datasets.synthetic_fundus import FundusScene, Lesions, add_lesions
from torch.utils.data import DataLoader

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import normalize
from transfusion_cli.errors import ConfigError, UnknownNameError
from transfusion_cli.plugins import get

SMALL = {"train_size": 24, "val_size": 12, "test_size": 12}
FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def build(name: str, seed: int = 0, image_size: int = 32, **options):
    return build_dataset(name, seed=seed, image_size=image_size, options={**SMALL, **options})


@pytest.mark.parametrize("name", ["synthetic-retina", "synthetic-chest"])
def test_same_seed_same_pixels_and_labels(name):
    first, second = build(name, seed=3), build(name, seed=3)
    for split in ("train", "val", "test"):
        a, b = first.split(split), second.split(split)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.ids == b.ids
    # Access order and the memo do not change an image.
    later = [second.train[i][0] for i in (5, 2, 0)]
    for image, i in zip(later, (5, 2, 0), strict=True):
        assert torch.equal(first.train[i][0], image)
        assert torch.equal(first.train[i][0], first.train[i][0])


@pytest.mark.parametrize("name", ["synthetic-retina", "synthetic-chest"])
def test_different_seeds_and_splits_differ(name):
    zero, one = build(name, seed=0), build(name, seed=1)
    assert not torch.equal(zero.train[0][0], one.train[0][0])
    assert not torch.equal(zero.train[0][0], zero.val[0][0])
    assert not np.array_equal(np.nan_to_num(zero.train.labels, nan=-1),
                              np.nan_to_num(one.train.labels, nan=-1))


def test_growing_a_split_keeps_its_first_items():
    small = build("synthetic-retina", train_size=10)
    large = build("synthetic-retina", train_size=30)
    np.testing.assert_array_equal(small.train.labels, large.train.labels[:10])
    assert torch.equal(small.train[9][0], large.train[9][0])


def test_retina_info_labels_and_items():
    bundle = build("synthetic-retina", image_size=48)
    info = bundle.info
    assert info.task == "multiclass" and info.channels == 3 and info.num_outputs == 5
    assert info.referable_threshold == 2 and info.selection_metric == "referable_auc"
    assert info.preprocess is None and info.image_size == 48
    assert len(info.class_names) == 5 and len(info.mean) == len(info.std) == 3
    assert info.options["train_size"] == 24 and len(info.options["grade_frequencies"]) == 5
    labels = bundle.train.labels
    assert labels.dtype == np.int64 and labels.shape == (24,)
    assert labels.min() >= 0 and labels.max() <= 4
    np.testing.assert_array_equal(bundle.train.referable, labels >= 2)
    assert len(bundle.train.ids) == 24 and len(set(bundle.train.ids)) == 24
    image, target = bundle.train[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 48)
    assert target.dtype == torch.long and target.ndim == 0 and int(target) == labels[1]


def test_chest_info_labels_and_items():
    bundle = build("synthetic-chest", image_size=48, uncertain_fraction=0.5)
    info = bundle.info
    assert info.task == "multilabel" and info.channels == 1 and info.class_names == FINDINGS
    assert info.selection_metric == "mean_auc" and len(info.mean) == 1
    assert info.options["uncertainty"] == "u-ignore" and info.options["uncertain_fraction"] == 0.5
    labels = bundle.val.labels
    assert labels.dtype == np.float32 and labels.shape == (12, 5)
    assert set(np.unique(labels[~np.isnan(labels)])) <= {0.0, 1.0} and np.isnan(labels).any()
    index = int(np.flatnonzero(np.isnan(labels).any(axis=1))[0])
    image, target = bundle.val[index]
    assert image.dtype == torch.uint8 and image.shape == (1, 48, 48)
    assert target.dtype == torch.float32 and target.shape == (5,)
    np.testing.assert_array_equal(target.numpy(), labels[index])  # NaN == NaN here


def test_labels_need_no_images():
    bundle = build_dataset("synthetic-chest", options={"train_size": 5000, "val_size": 1,
                                                       "test_size": 0})
    assert bundle.test is None
    assert len(bundle.train.labels) == 5000 and not bundle.train._images


@pytest.mark.parametrize("frequencies", [None, "1,1,1,1,1", [0.5, 0, 0.5, 0, 0]])
def test_grade_frequencies_are_followed(frequencies):
    options = {"train_size": 20000, "val_size": 1, "test_size": 0}
    if frequencies is not None:
        options["grade_frequencies"] = frequencies
    bundle = build_dataset("synthetic-retina", options=options)
    wanted = np.asarray(bundle.info.options["grade_frequencies"])
    if frequencies is None:
        np.testing.assert_allclose(wanted, [0.73, 0.07, 0.15, 0.025, 0.025])
    assert wanted.sum() == pytest.approx(1.0)
    observed = np.bincount(bundle.train.labels, minlength=5) / 20000
    np.testing.assert_allclose(observed, wanted, atol=0.012)
    assert (observed[wanted == 0] == 0).all()


def test_uncertain_fraction_and_prevalence():
    options = {"train_size": 8000, "val_size": 1, "test_size": 0, "uncertain_fraction": "0.3",
               "prevalence": "0.1,0.2,0.3,0.4,0.5"}
    bundle = build_dataset("synthetic-chest", options=options)
    raw, labels = bundle.train.raw_labels, bundle.train.labels
    uncertain = raw == -1
    assert uncertain.mean() == pytest.approx(0.3, abs=0.015)
    np.testing.assert_array_equal(np.isnan(labels), uncertain)
    certain_positive = np.where(uncertain, np.nan, raw == 1)
    np.testing.assert_allclose(np.nanmean(certain_positive, axis=0), [0.1, 0.2, 0.3, 0.4, 0.5],
                               atol=0.025)


@pytest.mark.parametrize(("policy", "value"), [("u-ignore", np.nan), ("u-ones", 1.0),
                                               ("U_Zeros", 0.0), ("ones", 1.0)])
def test_uncertainty_policies_map_only_uncertain_labels(policy, value):
    bundle = build("synthetic-chest", uncertain_fraction=0.4, uncertainty=policy)
    raw, labels = bundle.train.raw_labels, bundle.train.labels
    uncertain = raw == -1
    assert uncertain.any()
    np.testing.assert_array_equal(labels[~uncertain], raw[~uncertain])
    np.testing.assert_array_equal(labels[uncertain], np.full(uncertain.sum(), value, np.float32))
    assert bundle.info.options["uncertainty"] in ("u-ignore", "u-ones", "u-zeros")
    # The policy only relabels: the images are the same.
    ignore = build("synthetic-chest", uncertain_fraction=0.4)
    assert torch.equal(bundle.train[3][0], ignore.train[3][0])


@pytest.mark.parametrize(("name", "options", "message"), [
    ("synthetic-retina", {"train_size": "abc"}, "train_size='abc' must be an integer >= 1"),
    ("synthetic-retina", {"train_size": 0}, "train_size=0 must be an integer >= 1"),
    ("synthetic-retina", {"val_size": "-3"}, "val_size='-3'"),
    ("synthetic-retina", {"test_size": True}, "test_size=True"),
    ("synthetic-retina", {"test_size": 2.5}, "test_size=2.5"),
    ("synthetic-retina", {"grade_frequencies": "1,2,3"}, "must be 5 comma-separated numbers"),
    ("synthetic-retina", {"grade_frequencies": "a,b,c,d,e"}, "must be 5 comma-separated"),
    ("synthetic-retina", {"grade_frequencies": [1, -1, 1, 1, 1]}, "non-negative"),
    ("synthetic-retina", {"grade_frequencies": "0,0,0,0,0"}, "must not be all zero"),
    ("synthetic-retina", {"grade_frequencies": 5}, "grade_frequencies=5"),
    ("synthetic-chest", {"uncertain_fraction": "1.5"}, "must be a number in [0, 1]"),
    ("synthetic-chest", {"uncertain_fraction": "nan"}, "uncertain_fraction='nan'"),
    ("synthetic-chest", {"uncertainty": "maybe"}, "is not one of u-ignore, u-ones, u-zeros"),
    ("synthetic-chest", {"prevalence": "0.1,0.2,0.3,0.4,1.2"}, "numbers in [0, 1]"),
    ("synthetic-chest", {"grade_frequencies": "1,1,1,1,1"}, "has no option 'grade_frequencies'"),
    ("synthetic-retina", {"train_sise": "10"}, "Did you mean 'train_size'?"),
])
def test_bad_options_are_one_line_config_errors(name, options, message):
    with pytest.raises(ConfigError) as error:
        build_dataset(name, options=options)
    text = str(error.value)
    assert message in text and "\n" not in text and f"Dataset '{name}'" in text


def test_typed_options_from_yaml_are_accepted():
    bundle = build_dataset("synthetic-chest", options={
        "train_size": 7, "val_size": 3, "test_size": 0, "uncertain_fraction": 0,
        "prevalence": [1, 0, 1, 0, 1], "uncertainty": "u-zeros"})
    assert len(bundle.train) == 7 and bundle.test is None
    np.testing.assert_array_equal(bundle.train.labels, np.tile([1, 0, 1, 0, 1], (7, 1)))


def test_negative_data_seed_is_rejected():
    with pytest.raises(ConfigError, match="non-negative integer"):
        build_dataset("synthetic-retina", seed=-1, options=SMALL)


def test_unknown_dataset_suggests_the_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'synthetic-retina'"):
        build_dataset("synthetic-retna")


@pytest.mark.parametrize("name", ["synthetic-retina", "synthetic-chest"])
@pytest.mark.parametrize("size", [32, 48, 64])
def test_any_image_size(name, size):
    bundle = build(name, image_size=size)
    image, _ = bundle.train[0]
    assert image.shape == (bundle.info.channels, size, size) and image.dtype == torch.uint8
    assert 10 < image.float().mean() < 200 and image.float().std() > 10


@pytest.mark.parametrize("name", ["synthetic-retina", "synthetic-chest"])
def test_sizes_draw_the_same_scene(name):
    small = build(name, image_size=32).train[4][0].float()
    large = build(name, image_size=64).train[4][0].float()
    pooled = torch.nn.functional.avg_pool2d(large[None], 2)[0]
    correlation = np.corrcoef(pooled.flatten().numpy(), small.flatten().numpy())[0, 1]
    assert correlation > 0.9


@pytest.mark.parametrize("name", ["synthetic-retina", "synthetic-chest"])
def test_batches_and_normalisation_constants(name):
    bundle = build(name, image_size=64, train_size=48)
    images, targets = next(iter(DataLoader(bundle.train, batch_size=48)))
    assert images.shape == (48, bundle.info.channels, 64, 64) and len(targets) == 48
    x = normalize(images, bundle.info)
    # The constants were measured on generated data: a batch is roughly standardised.
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.25
    assert ((x.std(dim=(0, 2, 3)) - 1).abs() < 0.25).all()


def test_splits_pickle_for_loader_workers_without_their_memo():
    split = build("synthetic-retina").train
    first = split[0][0]
    copy = pickle.loads(pickle.dumps(split))
    assert not copy._images and torch.equal(copy[0][0], first)


def test_registered_with_options_and_default_size():
    for name in ("synthetic-retina", "synthetic-chest"):
        spec = get("datasets", name)
        assert spec.default_image_size == 64 and not spec.needs_data_dir
        assert {"train_size", "val_size", "test_size"} <= set(spec.options)
        assert all(isinstance(text, str) and text for text in spec.options.values())
    assert "grade_frequencies" in get("datasets", "synthetic-retina").options
    assert {"uncertain_fraction", "uncertainty", "prevalence"} <= set(
        get("datasets", "synthetic-chest").options)


def lesion_counts(grade: int, seed: int) -> tuple[Lesions, FundusScene]:
    rng = np.random.default_rng(seed)
    scene = FundusScene(rng)
    lesions = Lesions()
    add_lesions(rng, scene, grade, lesions)
    return lesions, scene


def blob_sizes(lesions: Lesions, layer: str) -> np.ndarray:
    rows = lesions.blobs[layer]
    return np.concatenate(rows)[:, 2] if rows else np.zeros(0)


def test_fundus_lesions_follow_the_grade():
    haemorrhage = 0.012  # blob sigma: microaneurysms are smaller
    for seed in range(30):
        lesions = {g: lesion_counts(g, seed)[0] for g in range(5)}
        red = {g: blob_sizes(les, "red") for g, les in lesions.items()}
        assert not red[0].size and not lesions[0].blobs["exudate"]
        assert not lesions[0].blobs["cotton"]
        assert 1 <= red[1].size <= 5 and (red[1] < haemorrhage).all()
        assert not lesions[1].blobs["exudate"] and not lesions[1].blobs["cotton"]
        assert ((red[2] >= haemorrhage).any() or lesions[2].blobs["exudate"]
                or lesions[2].blobs["cotton"])
        assert not lesions[2].tangles and not lesions[2].preretinal
        assert (red[3] >= haemorrhage).sum() >= 16 and not lesions[3].tangles
        assert lesions[4].tangles or lesions[4].preretinal


def test_fundus_severe_haemorrhages_are_in_all_four_quadrants():
    for seed in range(10):
        lesions, scene = lesion_counts(3, seed)
        red = np.concatenate(lesions.blobs["red"])
        big = red[red[:, 2] >= 0.012]  # haemorrhages, not microaneurysms
        angle = np.arctan2(big[:, 1] - scene.center[1], big[:, 0] - scene.center[0])
        quadrants = np.floor((angle % (2 * np.pi)) / (np.pi / 2)).astype(int)
        assert set(quadrants) == {0, 1, 2, 3}


def test_cardiomegaly_label_means_a_wide_heart():
    for seed in range(40):
        for severity in (0.0, 0.05, 1.0):
            scene = ChestScene(np.random.default_rng(seed),
                               np.array([0, severity, 0, 0, 0], np.float32))
            assert (scene.heart_ratio > 0.5) == (severity > 0)
