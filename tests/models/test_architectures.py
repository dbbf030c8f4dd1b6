"""Contract tests over every registered architecture, and the paper's parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
from registry_helpers import registered_architectures

from transfusion_cli.errors import UnknownNameError
from transfusion_cli.models.blocks import block_names, block_output_module, state_keys_by_block
from transfusion_cli.plugins import get

# Inception-v3 needs at least 75 px; the others run on tiny inputs.
INPUT_SIZE = {"inception-v3": 75}
CBR_CHANNELS = {"cbr-large-t": ([32, 64, 128, 256, 512], 7),
                "cbr-large-w": ([64, 128, 256, 512], 7),
                "cbr-small": ([32, 64, 128, 256], 7), "cbr-tiny": ([32, 64, 128, 256], 5)}


def paper_table_count(channels: list[int], kernel: int, classes: int = 5) -> int:
    """The paper's table convention: conv weights except the first layer's + classifier weights."""
    convs = sum(a * b * kernel * kernel for a, b in zip(channels, channels[1:], strict=False))
    return convs + channels[-1] * classes


def true_count(channels: list[int], kernel: int, in_chans: int = 3, classes: int = 5) -> int:
    """Every parameter: convs (no bias), BN scale+shift, linear weight+bias."""
    widths = [in_chans, *channels]
    convs = sum(a * b * kernel * kernel for a, b in zip(widths, widths[1:], strict=False))
    return convs + 2 * sum(channels) + channels[-1] * classes + classes


def test_all_paper_architectures_registered():
    assert {"cbr-large-t", "cbr-large-w", "cbr-small", "cbr-tiny", "resnet50",
            "inception-v3"} <= set(registered_architectures())


@pytest.mark.parametrize(("name", "table_value"), [
    ("cbr-large-t", 8_532_480), ("cbr-large-w", 8_432_128),
    ("cbr-small", 2_108_672), ("cbr-tiny", 1_076_480)])
def test_cbr_counts_match_the_paper_table(name, table_value):
    channels, kernel = CBR_CHANNELS[name]
    assert paper_table_count(channels, kernel) == table_value
    model = get("architectures", name).build(num_classes=5, in_chans=3)
    assert sum(p.numel() for p in model.parameters()) == true_count(channels, kernel)


def test_true_counts_by_hand():
    # Derived by hand from paper.md (3 input channels, 5-way head, same padding, no conv bias):
    # e.g. CBR-Tiny = 3*32*25 + 32*64*25 + 64*128*25 + 128*256*25 + 2*(32+64+128+256) + 256*5 + 5.
    expected = {"cbr-large-t": 8_539_173, "cbr-large-w": 8_443_461, "cbr-small": 2_114_341,
                "cbr-tiny": 1_079_845}
    for name, count in expected.items():
        model = get("architectures", name).build(num_classes=5, in_chans=3)
        assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_shape_and_blocks(registered_architecture, in_chans):
    name = registered_architecture
    torch.manual_seed(0)
    model = get("architectures", name).build(num_classes=4, in_chans=in_chans).eval()
    size = INPUT_SIZE.get(name, 32)
    with torch.no_grad():
        out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 4)
    names = block_names(model)
    assert names and names[-1] == "head"
    assert names[0] in ("stem", "block1")
    order = [n for n, _ in model.named_modules()]
    first_modules = [order.index(model.tfx_blocks[b][0]) for b in names]
    assert first_modules == sorted(first_modules), "blocks must be listed in forward order"
    for block in names:
        assert block_output_module(model, block) is not None
    keys = state_keys_by_block(model)
    assert all(keys[b] for b in names), "every block owns state_dict entries"


def test_cbr_layer_structure_follows_the_paper():
    model = get("architectures", "cbr-large-t").build(num_classes=5, in_chans=3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 512]
    assert all(c.kernel_size == (7, 7) and c.stride == (1, 1) and c.bias is None for c in convs)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)


def test_timm_any_model_by_name():
    spec = get("architectures", "timm/resnet18")
    model = spec.build(num_classes=3, in_chans=1)
    assert block_names(model)[-1] == "head"
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    with pytest.raises(UnknownNameError, match="Did you mean 'timm/resnet18'"):
        get("architectures", "timm/resnet1B")


def test_unknown_architecture_suggests_and_lists():
    with pytest.raises(UnknownNameError) as excinfo:
        get("architectures", "cbr-tny")
    assert str(excinfo.value) == ("Unknown architecture 'cbr-tny'. Did you mean 'cbr-tiny'? "
                                  "See `tfx list architectures`.")


def test_list_architectures_json_cli(tfx):
    result = tfx.subprocess("list", "architectures", "--json", check=True)
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["cbr-tiny"]["params"] == 1_079_845
    assert rows["cbr-small"]["blocks"] == ["block1", "block2", "block3", "block4", "head"]
    assert rows["resnet50"]["blocks"] == ["stem", "block1", "block2", "block3", "block4", "head"]
    assert 23_000_000 < rows["resnet50"]["params"] < 24_000_000
    assert all({"name", "plugin", "params", "blocks"} <= set(r) for r in rows.values())


def test_unknown_name_cli_is_one_line_exit_1(tfx):
    result = tfx.subprocess("fit", "--arch", "cbr-tny", "--steps", "1")
    assert result.exit_code == 1
    assert result.error_line() == ("Error: Unknown architecture 'cbr-tny'. Did you mean "
                                   "'cbr-tiny'? See `tfx list architectures`.")
    debug = tfx.subprocess("fit", "--arch", "cbr-tny", "--steps", "1", "--debug")
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
