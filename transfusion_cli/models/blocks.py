"""A model's ordered blocks (stem, block1, ..., head): the unit of transfusion, Mean Var and
similarity."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from transfusion_cli.errors import TfxError
from transfusion_cli.registry import TfxModel


def model_blocks(model: TfxModel) -> OrderedDict[str, tuple[str, ...]]:
    """Block name -> submodule names, in forward order."""
    blocks = getattr(model, "tfx_blocks", None)
    if not blocks:
        raise TfxError(f"{type(model).__name__} has no `tfx_blocks`; build it through the "
                       "architecture registry.")
    return OrderedDict(blocks)


def block_names(model: TfxModel) -> list[str]:
    """Ordered block names."""
    return list(model_blocks(model))


def block_output_module(model: nn.Module, block: str) -> nn.Module:
    """The module whose output is the block's output (its last submodule)."""
    blocks = model_blocks(model)
    if block not in blocks:
        raise TfxError(f"Unknown block '{block}'; this model's blocks are {', '.join(blocks)}.")
    return model.get_submodule(blocks[block][-1])


def block_of_parameter(model: nn.Module, name: str) -> str | None:
    """Which block a parameter or buffer (state_dict key) belongs to; None if none."""
    for block, modules in model_blocks(model).items():
        for module in modules:
            if name == module or name.startswith(module + "."):
                return block
    return None


def state_keys_by_block(model: nn.Module) -> OrderedDict[str, list[str]]:
    """Block name -> its state_dict keys (parameters and buffers), in block order."""
    grouped: OrderedDict[str, list[str]] = OrderedDict((b, []) for b in model_blocks(model))
    for key in model.state_dict():
        block = block_of_parameter(model, key)
        if block is not None:
            grouped[block].append(key)
    return grouped


def resolve_block_prefix(model: nn.Module, upto: str | int) -> list[str]:
    """Blocks from the first up to ``upto`` (a block name or a count), for transfusion."""
    names = block_names(model)
    if isinstance(upto, int) or str(upto).isdigit():
        k = int(upto)
        if not 1 <= k <= len(names):
            raise TfxError(f"Block count {k} out of range 1..{len(names)} ({', '.join(names)}).")
        return names[:k]
    if upto not in names:
        raise TfxError(f"Unknown block '{upto}'; this model's blocks are {', '.join(names)}.")
    return names[: names.index(upto) + 1]
