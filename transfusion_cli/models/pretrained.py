"""Where pretrained weights come from, and how they are fitted to a target model.

Sources, in order: ``--weights PATH`` (a tfx checkpoint, or for timm models any timm weight
file: ``.pth``/``.safetensors``), then a file in the local weights folder
(``weights_dir()/<timm tag>.safetensors`` or ``.pth``), then timm's own download (hub / URL)
when the network is allowed. Every source goes through ``timm.models.load_pretrained`` with a
``file`` entry in the pretrained config (the same mechanism as timm's
``pretrained_cfg_overlay=dict(file=...)``), so the input conv is adapted to the target's
channels exactly as timm does it (``adapt_input_conv``), for CBR models too.

The classification head is kept only when it fits: same shape and, when both are known, the
same class names; otherwise it stays at the model's random init. The result says which target
tensors were loaded, adapted (input conv), re-initialised (no usable source tensor), and which
source tensors were skipped (not used).
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfusion_cli import env
from transfusion_cli.errors import CheckpointError
from transfusion_cli.models.blocks import state_keys_by_block
from transfusion_cli.registry import InitContext

HF_OFFLINE_ENV = "HF_HUB_OFFLINE"  # Hugging Face's own switch, read as huggingface_hub does
WEIGHT_SUFFIXES = (".safetensors", ".pth")


@dataclass
class SourceWeights:
    """Pretrained tensors already in the target model's key space (only the usable ones)."""

    state: dict[str, torch.Tensor]
    source: dict[str, Any]
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def weights_dir() -> Path:
    """Local folder of pretrained weight files: ``$TFX_WEIGHTS_DIR`` or ``<cache>/weights``."""
    root = env.value("TFX_WEIGHTS_DIR")
    if root is not None:
        return root
    from transfusion_cli.data.build import cache_root

    return cache_root() / "weights"


def offline() -> bool:
    """True when downloads are switched off (``TFX_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return bool(env.value("TFX_OFFLINE")) or os.environ.get(HF_OFFLINE_ENV, "").lower() in (
        "1", "true", "yes")


def input_conv_names(model: nn.Module) -> list[str]:
    """Module names of the model's input convolution(s): timm's ``first_conv``, else the first
    Conv2d that reads the model's input channels."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    if first:
        return [first] if isinstance(first, str) else list(first)
    in_chans = getattr(model, "in_chans", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and (in_chans is None or module.in_channels == in_chans):
            return [name]
    return []


def head_keys(model: nn.Module) -> list[str]:
    """state_dict keys of the classification head (the ``head`` block)."""
    return list(state_keys_by_block(model).get("head", []))


def timm_pretrained_cfg(model: nn.Module, pretrained: str | None) -> dict[str, Any] | None:
    """timm's pretrained config for the architecture's weights tag (None: not a timm model)."""
    base = getattr(model, "pretrained_cfg", None)
    if base is None:
        return None
    cfg = dict(base)
    if pretrained:
        from timm.models import get_pretrained_cfg

        tagged = get_pretrained_cfg(pretrained)
        if tagged is not None:
            cfg = tagged.to_dict()
    return cfg


def read_tfx_checkpoint(path: Path) -> dict[str, Any] | None:
    """The tfx checkpoint at ``path``, or None when the file is some other weight file."""
    from transfusion_cli.models.checkpoint import describe_load_error, torch_load_safely

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:  # reads only the header: a truncated or garbage file fails here, not in timm
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as exc:
            raise CheckpointError(f"Cannot read weights file {path} as .safetensors "
                                  f"({describe_load_error(exc)}); is the file complete?") from None
        return None
    data = torch_load_safely(path, "weights file")
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"Weights file {path} holds no state dict ({type(data).__name__}); "
                              "pass a tfx checkpoint or a timm .pth/.safetensors weight file.")
    if isinstance(data, dict) and data.get("format") == "tfx-checkpoint":
        from transfusion_cli.models.checkpoint import load_checkpoint

        return load_checkpoint(path)  # validates the format version
    return None


def load_source(model: nn.Module, context: InitContext, path: str | os.PathLike | None = None,
                *, checkpoint_only: bool = False, flag: str = "--weights") -> SourceWeights:
    """Pretrained weights for ``model`` from ``path`` or, without one, the architecture's
    public weights (local weights folder, then timm's download)."""
    arch = context.arch.name
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise CheckpointError(f"Weights file {path} (from {flag}) does not exist; pass the "
                                  "path of a tfx checkpoint (RUN/checkpoints/best.pt) or a timm "
                                  "weight file.")
        checkpoint = read_tfx_checkpoint(path)
        if checkpoint is not None:
            return _from_tfx_checkpoint(model, context, path, checkpoint)
        cfg = timm_pretrained_cfg(model, context.arch.pretrained)
        if checkpoint_only or cfg is None:
            raise CheckpointError(
                f"{path} is not a tfx checkpoint; '{arch}' takes pretrained weights from a tfx "
                f"checkpoint of {arch} (RUN/checkpoints/best.pt of `tfx fit --arch {arch}`).")
        source = {"kind": "timm-file", "path": str(path.resolve()),
                  "timm_cfg": _cfg_name(cfg)}
        return _load_with_timm(model, context, {**cfg, "file": str(path)}, source,
                               source_classes=None, where=str(path))
    return _from_public_weights(model, context)


def _cfg_name(cfg: dict[str, Any]) -> str:
    tag = cfg.get("tag")
    return f"{cfg.get('architecture')}.{tag}" if tag else str(cfg.get("architecture"))


def _from_public_weights(model: nn.Module, context: InitContext) -> SourceWeights:
    arch = context.arch.name
    cfg = timm_pretrained_cfg(model, context.arch.pretrained)
    if cfg is None or not context.arch.pretrained:
        raise CheckpointError(
            f"'{arch}' has no public ImageNet weights; pass --weights PATH with a tfx checkpoint "
            f"of {arch} (e.g. from `tfx fit --arch {arch} --data image-folder ...` on ImageNet).")
    name = _cfg_name(cfg)
    for suffix in WEIGHT_SUFFIXES:
        local = weights_dir() / f"{name}{suffix}"
        if local.is_file():
            source = {"kind": "timm-file", "path": str(local), "timm_cfg": name}
            return _load_with_timm(model, context, {**cfg, "file": str(local)}, source,
                                   source_classes=None, where=str(local))
    if offline():
        raise _offline_error(arch, cfg, reason="downloads are off (TFX_OFFLINE/HF_HUB_OFFLINE)")
    source = {"kind": "timm-download", "timm_cfg": name}
    try:
        return _load_with_timm(model, context, cfg, source, source_classes=None, where=name)
    except _FetchError as exc:
        raise _offline_error(arch, cfg, reason=str(exc)) from exc


def check_public_weights_offline(spec: Any) -> None:
    """With downloads off, fail now (not mid-sweep) when the architecture's public weights
    are not in the local weights folder."""
    if not offline() or not spec.pretrained:
        return
    from timm.models import get_pretrained_cfg

    tagged = get_pretrained_cfg(spec.pretrained)
    if tagged is None:
        return
    cfg = tagged.to_dict()
    if not any((weights_dir() / f"{_cfg_name(cfg)}{suffix}").is_file()
               for suffix in WEIGHT_SUFFIXES):
        raise _offline_error(spec.name, cfg, reason="downloads are off (TFX_OFFLINE/"
                             "HF_HUB_OFFLINE)")


def _offline_error(arch: str, cfg: dict[str, Any], reason: str) -> CheckpointError:
    name = _cfg_name(cfg)
    if cfg.get("hf_hub_id"):
        url = f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors"
        target = weights_dir() / f"{name}.safetensors"
    else:
        url = cfg.get("url") or "(no download address known)"
        target = weights_dir() / f"{name}.pth"
    return CheckpointError(
        f"Cannot get the ImageNet weights of '{arch}' ({name}): {reason}. Download {url} and "
        f"save it as {target}, or pass --weights PATH.")


class _FetchError(Exception):
    """timm could not fetch the weights (network, missing cache)."""


def _from_tfx_checkpoint(model: nn.Module, context: InitContext, path: Path,
                         checkpoint: dict[str, Any]) -> SourceWeights:
    arch = context.arch.name
    source_arch = checkpoint["arch"]["name"]
    if source_arch != arch:
        raise CheckpointError(f"{path} is a checkpoint of '{source_arch}', but the model is "
                              f"'{arch}'; pass a checkpoint of {arch} or use --arch {source_arch}.")
    dataset = checkpoint.get("dataset") or {}
    cfg = dict(timm_pretrained_cfg(model, None) or {})
    cfg.update({
        "file": str(path),
        "first_conv": (input_conv_names(model) or [None])[0],
        "input_size": (int(checkpoint["arch"]["in_chans"]), 1, 1),
        "num_classes": int(checkpoint["arch"]["num_classes"]),
    })
    source = {"kind": "tfx-checkpoint", "path": str(path.resolve()), "arch": source_arch,
              "dataset": dataset.get("name"), "step": checkpoint.get("step")}
    classes = tuple(dataset.get("class_names") or ()) or None
    return _load_with_timm(model, context, cfg, source, source_classes=classes, where=str(path))


def _model_filter_fn(model: nn.Module):
    """The timm model module's own ``checkpoint_filter_fn`` (original -> timm key layout)."""
    module = sys.modules.get(type(model).__module__)
    if module is None or not type(model).__module__.startswith("timm."):
        return None
    return getattr(module, "checkpoint_filter_fn", None)


def _load_with_timm(model: nn.Module, context: InitContext, cfg: dict[str, Any],
                    source: dict[str, Any], *, source_classes: tuple[str, ...] | None,
                    where: str) -> SourceWeights:
    """Load ``cfg``'s weights into a copy of ``model`` with timm; keep what fits."""
    from timm.models import load_pretrained

    scratch = copy.deepcopy(model)
    target = {k: v for k, v in scratch.state_dict().items()}
    head = set(head_keys(scratch))
    same_classes = (source_classes is None or context.class_names is None
                    or tuple(source_classes) == tuple(context.class_names))
    own_filter = _model_filter_fn(scratch)
    seen: dict[str, Any] = {}

    def filter_fn(state_dict: dict[str, torch.Tensor], _model: nn.Module):
        if own_filter is not None:
            state_dict = own_filter(state_dict, _model)
        seen["source_keys"] = list(state_dict)
        dropped = [k for k in state_dict if k in head and
                   (not same_classes or tuple(state_dict[k].shape) != tuple(target[k].shape))]
        for key in dropped:
            state_dict.pop(key)
        seen["dropped"] = dropped
        seen["shapes"] = {k: tuple(v.shape) for k, v in state_dict.items()}
        return state_dict

    cfg = {**cfg, "classifier": None}  # the head is decided above, not by timm's class count
    try:
        load_pretrained(scratch, pretrained_cfg=cfg, num_classes=context.num_classes,
                        in_chans=context.in_chans, filter_fn=filter_fn, strict=False)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        if "source_keys" not in seen:
            raise _FetchError(f"{type(exc).__name__}: {message}") from exc
        raise CheckpointError(f"The weights in {where} do not fit '{context.arch.name}' "
                              f"({message}); use weights of the same architecture.") from exc

    kept = seen["shapes"]
    missing = [k for k in target if k not in kept]
    unexpected = [k for k in kept if k not in target]
    serious = [k for k in missing if k not in head and not k.endswith("num_batches_tracked")]
    if serious:
        raise CheckpointError(
            f"The weights in {where} lack {len(serious)} tensor(s) of '{context.arch.name}' "
            f"(e.g. {serious[0]}); they belong to another architecture.")
    state = scratch.state_dict()
    loaded = [k for k in target if k in kept]
    adapted = [f"{name}.weight" for name in input_conv_names(scratch)
               if f"{name}.weight" in kept and kept[f"{name}.weight"] != tuple(target[
                   f"{name}.weight"].shape)]
    return SourceWeights(
        state={k: state[k].detach().clone() for k in loaded},
        source=source,
        loaded=loaded,
        adapted=adapted,
        reinitialised=missing,
        skipped=list(seen["dropped"]) + unexpected,
    )


def copy_into(model: nn.Module, state: dict[str, torch.Tensor], keys: list[str]) -> None:
    """Copy ``state[key]`` into the model's tensor ``key`` in place, for each key."""
    own = model.state_dict()
    with torch.no_grad():
        for key in keys:
            own[key].copy_(state[key])
