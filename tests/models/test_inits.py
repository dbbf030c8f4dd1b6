"""The built-in initialisations, with weight files the tests make themselves (no download)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import CheckpointError, ConfigError
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.plugins import get, get_registry
from transfusion_cli.registry import InitContext, InitSpec

CHEST = DatasetInfo(name="fake-chest", task="multilabel",
                    class_names=("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                                 "Pleural Effusion"),
                    channels=1, image_size=32, mean=(0.5,), std=(0.25,))
RETINA_GRADES = ("0", "1", "2", "3", "4")


def context(arch: str, num_classes=5, in_chans=3, seed=0, argument=None, weights=None,
            class_names=None) -> InitContext:
    return InitContext(arch=get("architectures", arch), num_classes=num_classes,
                       in_chans=in_chans, seed=seed, argument=argument, weights=weights,
                       class_names=class_names)


def build(arch: str, num_classes=5, in_chans=3):
    return get("architectures", arch).build(num_classes=num_classes, in_chans=in_chans)


def apply(init: str, model, ctx):
    return get("inits", init).apply(model, ctx)


def random_twin(arch: str, ctx: InitContext):
    """The same architecture at the seeded random init: what re-initialised tensors must equal."""
    model = build(arch, ctx.num_classes, ctx.in_chans)
    apply("random", model, ctx)
    return model.state_dict()


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A timm resnet18 state_dict (1000 classes) saved as a plain .pth: stands in for ImageNet."""
    import timm

    torch.manual_seed(123)
    source = timm.create_model("resnet18", pretrained=False)
    # Non-trivial BN statistics, so a copy is distinguishable from a reset.
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.2, 1.5)
            module.bias.data.normal_(0.1, 0.3)
    path = tmp_path_factory.mktemp("weights") / "resnet18_imagenet.pth"
    torch.save(source.state_dict(), path)
    return path, {k: v.clone() for k, v in source.state_dict().items()}


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A timm resnet50 state_dict (1000 classes), the paper's model, saved as a plain .pth."""
    import timm

    torch.manual_seed(5)
    source = timm.create_model("resnet50", pretrained=False)
    path = tmp_path_factory.mktemp("weights50") / "resnet50.pth"
    torch.save(source.state_dict(), path)
    return path, {k: v.clone() for k, v in source.state_dict().items()}


@pytest.fixture(scope="module")
def chest_checkpoint(tmp_path_factory):
    """A tfx checkpoint of cbr-tiny trained on 1-channel, 5-label data (a different task)."""
    torch.manual_seed(7)
    model = build("cbr-tiny", num_classes=5, in_chans=1)
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.add_(torch.randn_like(tensor) * 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "chest.pt"
    save_checkpoint(make_checkpoint(model, "cbr-tiny", CHEST, step=10), path)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def test_all_inits_registered():
    names = set(get_registry().names("inits"))
    assert {"random", "imagenet", "mean-var", "transfusion", "checkpoint", "gabor"} <= names
    assert get("inits", "transfusion:2").takes_argument
    assert get("inits", "checkpoint:x.pt").takes_argument


class SecondBaseline:
    """A third-party init that also claims to be the baseline."""

    @hookimpl
    def tfx_register_inits(self, register):
        register(InitSpec("my-scratch", lambda model, context: {}, baseline=True))


def test_random_is_the_one_baseline_init(fake_registry):
    assert get_registry().baseline_init().name == "random"
    assert [s.name for s in get_registry().specs("inits") if s.baseline] == ["random"]
    fake_registry(SecondBaseline())
    with pytest.raises(ConfigError, match="Exactly one init must be the baseline.*found "
                                          "random, my-scratch"):
        get_registry().baseline_init()


def test_random_is_seeded_and_differs_between_seeds():
    a, b, c = build("cbr-tiny"), build("cbr-tiny"), build("cbr-tiny")
    apply("random", a, context("cbr-tiny", seed=1))
    apply("random", b, context("cbr-tiny", seed=1))
    apply("random", c, context("cbr-tiny", seed=2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    assert not torch.equal(a.block1[0].weight, c.block1[0].weight)


def test_imagenet_local_timm_file_loads_every_backbone_tensor_bit_exactly(resnet50_file):
    path, expected = resnet50_file
    model = build("resnet50", num_classes=5)
    ctx = context("resnet50", weights=path)
    report = apply("imagenet", model, ctx)
    state = model.state_dict()
    backbone = [k for k in state if not k.startswith("fc.")]
    assert len(backbone) > 300
    for key in backbone:
        assert torch.equal(state[key], expected[key]), key
    assert sorted(report["loaded"]) == sorted(backbone)
    assert report["reinitialised"] == ["fc.weight", "fc.bias"]
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    assert report["adapted"] == []
    assert report["source"]["kind"] == "timm-file"
    twin = random_twin("resnet50", ctx)
    assert torch.equal(state["fc.weight"], twin["fc.weight"])  # the seeded random head


def test_imagenet_adapts_input_conv_for_one_channel_as_timm_does(resnet18_file):
    from timm.models import adapt_input_conv

    path, expected = resnet18_file
    model = build("timm/resnet18", num_classes=5, in_chans=1)
    report = apply("imagenet", model, context("timm/resnet18", in_chans=1, weights=path))
    assert report["adapted"] == ["conv1.weight"]
    assert torch.equal(model.conv1.weight, adapt_input_conv(1, expected["conv1.weight"]))
    assert torch.allclose(model.conv1.weight, expected["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer1[0].conv1.weight, expected["layer1.0.conv1.weight"])


def test_imagenet_safetensors_file_and_head_kept_for_same_classes(tmp_path, resnet18_file):
    from safetensors.torch import save_file

    _, expected = resnet18_file
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in expected.items()}, str(path))
    model = build("timm/resnet18", num_classes=1000)
    report = apply("imagenet", model, context("timm/resnet18", num_classes=1000, weights=path))
    assert report["reinitialised"] == [] and report["skipped"] == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_offline_without_file_says_which_file_to_place_where(monkeypatch, tmp_path,
                                                            resnet18_file):
    from safetensors.torch import save_file

    monkeypatch.setenv("TFX_OFFLINE", "1")
    monkeypatch.setenv("TFX_WEIGHTS_DIR", str(tmp_path))
    model = build("timm/resnet18")
    with pytest.raises(CheckpointError) as excinfo:
        apply("imagenet", model, context("timm/resnet18"))
    message = str(excinfo.value)
    target = tmp_path / "resnet18.a1_in1k.safetensors"
    assert str(target) in message and "--weights" in message
    assert "huggingface.co/timm/resnet18.a1_in1k" in message and "\n" not in message
    # Placing the file where the message says makes the same call work, still offline.
    _, expected = resnet18_file
    save_file({k: v.contiguous() for k, v in expected.items()}, str(target))
    report = apply("imagenet", model, context("timm/resnet18"))
    assert report["source"]["path"] == str(target)
    assert torch.equal(model.layer4[1].conv2.weight, expected["layer4.1.conv2.weight"])


def test_cbr_without_weights_asks_for_a_checkpoint():
    with pytest.raises(CheckpointError, match="no public ImageNet weights.*--weights"):
        apply("imagenet", build("cbr-tiny"), context("cbr-tiny"))


def test_checkpoint_init_on_cbr_adapts_input_conv_and_head(chest_checkpoint):
    from timm.models import adapt_input_conv

    path, expected = chest_checkpoint
    # Retina-like target: 3 channels, 5 grades. Same count as the 5 chest labels, other classes.
    ctx = context("cbr-tiny", in_chans=3, argument=str(path), class_names=RETINA_GRADES)
    model = build("cbr-tiny", in_chans=3)
    report = apply("checkpoint", model, ctx)
    state = model.state_dict()
    assert report["adapted"] == ["block1.0.weight"]
    assert torch.equal(state["block1.0.weight"],
                       adapt_input_conv(3, expected["block1.0.weight"], base_chans=1))
    for key in state:
        if key.startswith(("block2", "block3", "block4")) or key.startswith("block1.1"):
            assert torch.equal(state[key], expected[key]), key
    assert report["reinitialised"] == ["head.weight", "head.bias"]
    assert sorted(report["skipped"]) == ["head.bias", "head.weight"]
    twin = random_twin("cbr-tiny", ctx)
    assert torch.equal(state["head.weight"], twin["head.weight"])
    assert report["source"]["kind"] == "tfx-checkpoint"
    assert report["source"]["dataset"] == "fake-chest"


def test_checkpoint_init_keeps_head_when_classes_match(chest_checkpoint):
    path, expected = chest_checkpoint
    model = build("cbr-tiny", in_chans=1)
    report = apply("checkpoint", model, context("cbr-tiny", in_chans=1, argument=str(path),
                                                class_names=CHEST.class_names))
    assert report["reinitialised"] == [] and report["skipped"] == [] and report["adapted"] == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_imagenet_with_a_cbr_checkpoint_as_weights(chest_checkpoint):
    path, expected = chest_checkpoint
    model = build("cbr-tiny", in_chans=1, num_classes=3)
    report = apply("imagenet", model, context("cbr-tiny", in_chans=1, num_classes=3,
                                              weights=path))
    assert torch.equal(model.block3[0].weight, expected["block3.0.weight"])
    assert report["reinitialised"] == ["head.weight", "head.bias"]


def test_mean_var_matches_statistics_and_destroys_features(resnet18_file):
    path, expected = resnet18_file
    model = build("timm/resnet18", num_classes=5)
    ctx = context("timm/resnet18", weights=path, seed=3)
    report = apply("mean-var", model, ctx)
    state = model.state_dict()
    params = dict(model.named_parameters())
    assert report["loaded"] == []
    assert set(report["resampled"]) == {k for k in params if not k.startswith("fc.")}
    assert not set(report["skipped"]) & set(report["resampled"])
    assert "bn1.running_mean" in report["skipped"] and "bn1.running_mean" in report["reinitialised"]
    checked_corr = 0
    for key in report["resampled"]:
        got, ref = state[key].double().flatten(), expected[key].double().flatten()
        n = ref.numel()
        sd = ref.std().item()
        # Sample mean within 6 standard errors; sample variance within 6 s.e. of a normal's.
        assert abs(got.mean().item() - ref.mean().item()) <= 6 * sd / math.sqrt(n) + 1e-12, key
        ratio = got.var().item() / max(ref.var().item(), 1e-30)
        assert abs(ratio - 1) <= 6 * math.sqrt(2 / (n - 1)), key
        if n >= 1000:  # features destroyed: no correlation with the source tensor
            corr = np.corrcoef(got.numpy(), ref.numpy())[0, 1]
            assert abs(corr) < 6 / math.sqrt(n), key
            checked_corr += 1
    assert checked_corr > 15
    # BN running statistics reset, not copied.
    bn = model.bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert int(bn.num_batches_tracked) == 0
    assert report["batchnorm_statistics_reset"] is True
    # Head at the random init (classes differ from the source's 1000).
    twin = random_twin("timm/resnet18", ctx)
    assert torch.equal(state["fc.weight"], twin["fc.weight"])


def test_mean_var_on_cbr_checkpoint(chest_checkpoint):
    path, expected = chest_checkpoint
    model = build("cbr-tiny", in_chans=3)
    report = apply("mean-var", model, context("cbr-tiny", weights=path,
                                              class_names=RETINA_GRADES))
    weight = model.block3[0].weight.double()
    ref = expected["block3.0.weight"].double()
    assert abs(weight.std().item() / ref.std().item() - 1) < 0.02
    assert "block1.0.weight" in report["resampled"] and "head.weight" not in report["resampled"]
    # Seeded: the same seed draws the same weights, another seed other weights.
    again, other = build("cbr-tiny"), build("cbr-tiny")
    apply("mean-var", again, context("cbr-tiny", weights=path, class_names=RETINA_GRADES))
    apply("mean-var", other, context("cbr-tiny", weights=path, class_names=RETINA_GRADES,
                                     seed=1))
    assert torch.equal(again.block3[0].weight, model.block3[0].weight)
    assert not torch.equal(other.block3[0].weight, model.block3[0].weight)


@pytest.mark.parametrize("argument", ["stem", "block2"])
def test_transfusion_copies_exactly_the_lowest_blocks(resnet50_file, argument):
    path, expected = resnet50_file
    ctx = context("resnet50", weights=path, argument=argument, seed=4)
    model = build("resnet50")
    report = apply("transfusion", model, ctx)
    copied = {"stem": ["stem"], "block2": ["stem", "block1", "block2"]}[argument]
    assert report["blocks"] == copied
    prefixes = {"stem": ("conv1.", "bn1."), "block1": ("layer1.",), "block2": ("layer2.",)}
    inside = tuple(p for block in copied for p in prefixes[block])
    twin = random_twin("resnet50", ctx)
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith(inside):
            assert torch.equal(value, expected[key]), key
            assert key in report["loaded"]
        else:
            assert torch.equal(value, twin[key]), key
            assert key in report["reinitialised"]
    assert any(k.startswith("layer4.") for k in report["skipped"])


def test_transfusion_on_cbr_by_count(chest_checkpoint):
    path, expected = chest_checkpoint
    ctx = context("cbr-tiny", in_chans=1, weights=path, argument="2")
    model = build("cbr-tiny", in_chans=1)
    report = apply("transfusion", model, ctx)
    twin = random_twin("cbr-tiny", ctx)
    for key, value in model.state_dict().items():
        reference = expected if key.startswith(("block1.", "block2.")) else twin
        assert torch.equal(value, reference[key]), key
    assert report["blocks"] == ["block1", "block2"]


@pytest.mark.parametrize("argument", ["9", "block7", "0", None])
def test_transfusion_bad_k_is_a_clear_error(chest_checkpoint, argument):
    path, _ = chest_checkpoint
    with pytest.raises(ConfigError) as excinfo:
        apply("transfusion", build("cbr-tiny"), context("cbr-tiny", weights=path,
                                                        argument=argument))
    message = str(excinfo.value)
    assert "\n" not in message and "transfusion" in message
    if argument:
        assert "block1, block2, block3, block4, head" in message


def test_missing_weights_file_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothere\.pt.*does not exist"):
        apply("imagenet", build("cbr-tiny"), context("cbr-tiny", weights=tmp_path / "nothere.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        apply("checkpoint", build("cbr-tiny"), context("cbr-tiny", argument="nothere.pt"))
    with pytest.raises(ConfigError, match="checkpoint:PATH"):
        apply("checkpoint", build("cbr-tiny"), context("cbr-tiny"))


def test_checkpoint_of_another_architecture_error(chest_checkpoint, resnet18_file):
    path, _ = chest_checkpoint
    with pytest.raises(CheckpointError, match="checkpoint of 'cbr-tiny'.*'cbr-small'"):
        apply("checkpoint", build("cbr-small"), context("cbr-small", argument=str(path)))
    timm_file, _ = resnet18_file
    with pytest.raises(CheckpointError, match="not a tfx checkpoint"):
        apply("checkpoint", build("cbr-tiny"), context("cbr-tiny", argument=str(timm_file)))
    with pytest.raises(CheckpointError, match="do not fit|lack"):
        apply("imagenet", build("timm/resnet34"), context("timm/resnet34", weights=timm_file))


def test_corrupt_weights_file_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="Cannot read weights file"):
        apply("imagenet", build("cbr-tiny"), context("cbr-tiny", weights=bad))


def dominant_frequency(kernel: np.ndarray) -> tuple[float, float]:
    """(orientation in [0, pi), cycles per pixel) of the strongest Fourier component."""
    size = 128
    spectrum = np.abs(np.fft.fft2(kernel, s=(size, size)))
    fy, fx = np.unravel_index(spectrum.argmax(), spectrum.shape)
    fy, fx = (fy if fy < size // 2 else fy - size), (fx if fx < size // 2 else fx - size)
    return math.atan2(fy, fx) % math.pi, math.hypot(fx, fy) / size


@pytest.mark.parametrize(("arch", "conv"), [("cbr-tiny", "block1.0"), ("timm/resnet18", "conv1")])
def test_gabor_first_conv_is_a_gabor_bank(arch, conv):
    ctx = context(arch, seed=2)
    model = build(arch)
    report = apply("gabor", model, ctx)
    weight = model.get_submodule(conv).weight.detach().numpy()
    out_ch, in_ch, k, _ = weight.shape
    params = report["gabor"]
    assert report["synthetic"] == [f"{conv}.weight"] and len(params) == out_ch
    thetas = {round(p["theta"], 6) for p in params}
    wavelengths = {round(p["wavelength"], 6) for p in params}
    assert len(thetas) >= 8 and len(wavelengths) >= 2
    assert {p["band"] for p in params} == {"low", "high"}
    for index, p in enumerate(params):
        for channel in range(1, in_ch):  # one grayscale kernel, repeated on every channel
            assert np.array_equal(weight[index, channel], weight[index, 0])
        kernel = weight[index, 0].astype(np.float64)
        assert abs(kernel.sum()) < 1e-5 * np.abs(kernel).sum()  # zero mean (no DC)
        rotated = kernel[::-1, ::-1]  # even filters symmetric, odd antisymmetric about centre
        sign = 1 if p["phase"] == 0 else -1
        assert np.allclose(rotated, sign * kernel, atol=1e-6)
        angle, frequency = dominant_frequency(kernel)
        difference = abs(angle - p["theta"])
        assert min(difference, math.pi - difference) < math.radians(10)
        assert 0.7 < frequency * p["wavelength"] < 1.4
    # Same scale as the He init it replaces; everything else is the seeded random init.
    assert abs(weight.std() / math.sqrt(2 / (out_ch * k * k)) - 1) < 0.01
    twin = random_twin(arch, ctx)
    for key, value in model.state_dict().items():
        if key != f"{conv}.weight":
            assert torch.equal(value, twin[key]), key


@pytest.mark.parametrize("name,content,expected", [
    ("empty.safetensors", b"", "header too small"),
    ("garbage.safetensors", b"garbage, not safetensors", "safetensors"),
    ("empty.pth", b"", "empty (0 bytes)"),
    ("junk.pth", b"junk junk junk", "Cannot read"),
])
def test_a_broken_weights_file_is_one_line_naming_it(tfx, tmp_path, name, content, expected):
    weights = tmp_path / name
    weights.write_bytes(content)
    before = snapshot_tree(tmp_path)
    result = tfx("fit", *SMALL, "--steps", "1", "--arch", "resnet50", "--init", "imagenet",
                 "--weights", weights, "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert str(weights) in line and expected in line
    assert_tree_unchanged(tmp_path, before)
