"""Built-in initialisations: random, imagenet, mean-var, transfusion:K, checkpoint:PATH, gabor.

Every init returns a report with ``loaded`` (target tensors copied from a source),
``reinitialised`` (target tensors at the architecture's seeded random init) and ``skipped``
(source tensors not used), plus ``source`` and what is particular to the init.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from transfusion_cli.api import (
    ArchitectureSpec,
    CheckpointError,
    ConfigError,
    InitContext,
    InitSpec,
    SourceWeights,
    TfxError,
    copy_into,
    get,
    hookimpl,
    input_conv_names,
    load_source,
    resolve_block_prefix,
    state_keys_by_block,
)

from . import tf_slim


def reset_module_parameters(model: nn.Module) -> None:
    """Re-run the architecture's own initialisation (CBR: He normal; timm: timm's scheme; the
    paper's ResNet50 / Inception-v3: TF-Slim's, ``tf_slim``)."""
    if hasattr(model, "reset_parameters"):
        model.reset_parameters()
    else:
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if hasattr(model, "init_weights"):  # timm models re-apply their own scheme on top
            model.init_weights(**getattr(model, "tfx_init_kwargs", {}))
    if (getattr(model, "tfx_init_scheme", None) or {}).get("weights") == tf_slim.SCHEME:
        tf_slim.apply_tf_slim(model)


def apply_random(model: nn.Module, context: InitContext) -> dict:
    """Seeded standard initialisation of every tensor."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(context.seed)
        reset_module_parameters(model)
        reset_batchnorm_statistics(model)
    return {"loaded": [], "reinitialised": list(model.state_dict()), "skipped": [],
            "source": None}


def reset_batchnorm_statistics(model: nn.Module) -> list[str]:
    """Running mean 0, variance 1, batch count 0 in every BatchNorm; returns the keys reset."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.reset_running_stats()
            prefix = f"{name}." if name else ""
            keys += [prefix + b for b, _ in module.named_buffers(recurse=False)]
    return keys


def pretrained_source(model: nn.Module, context: InitContext) -> SourceWeights:
    """The pretrained weights for ``model``: its own, or for a model that declares
    ``tfx_pretrained_from`` (e.g. resnet50-slim), the named blocks of that architecture's
    weights, loaded into it and copied over by key (the rest stays random)."""
    mapping = getattr(model, "tfx_pretrained_from", None)
    if not mapping:
        return load_source(model, context, context.weights)
    donor_spec = get("architectures", mapping["arch"])
    donor = donor_spec.build(num_classes=context.num_classes, in_chans=context.in_chans)
    source = load_source(donor, dataclasses.replace(context, arch=donor_spec), context.weights)
    own = model.state_dict()
    donor_blocks, own_blocks = state_keys_by_block(donor), state_keys_by_block(model)
    wanted = [key for block in mapping["blocks"] for key in own_blocks[block]]
    available = {key for block in mapping["blocks"] for key in donor_blocks[block]}
    keep = [key for key in wanted if key in available and key in source.state]
    misfit = [key for key in keep if source.state[key].shape != own[key].shape]
    lacking = [key for key in wanted if key not in keep and
               not key.endswith("num_batches_tracked")]
    if misfit or lacking:
        example = (misfit or lacking)[0]
        raise CheckpointError(f"'{context.arch.name}' takes blocks {', '.join(mapping['blocks'])} "
                              f"from '{mapping['arch']}', but {example} does not fit; the "
                              "architectures' blocks differ.")
    kept = set(keep)
    return SourceWeights(
        state={key: source.state[key] for key in keep},
        source={**source.source, "via_arch": mapping["arch"], "blocks": list(mapping["blocks"])},
        loaded=keep,
        adapted=[key for key in source.adapted if key in kept],
        reinitialised=[key for key in own if key not in kept],
        skipped=list(source.skipped) + [key for key in source.loaded if key not in kept],
    )


def _report(source: SourceWeights, model: nn.Module, loaded: list[str], **extra) -> dict:
    """Report for a model whose ``loaded`` keys came from ``source`` and the rest is random."""
    loaded_set = set(loaded)
    skipped = list(source.skipped) + [k for k in source.loaded if k not in loaded_set]
    return {
        "loaded": list(loaded),
        "reinitialised": [k for k in model.state_dict() if k not in loaded_set],
        "skipped": skipped,
        "adapted": [k for k in source.adapted if k in loaded_set],
        "source": source.source,
        **extra,
    }


def apply_imagenet(model: nn.Module, context: InitContext) -> dict:
    """Pretrained weights everywhere they fit; head re-initialised when the classes differ."""
    apply_random(model, context)
    source = pretrained_source(model, context)
    copy_into(model, source.state, source.loaded)
    return _report(source, model, source.loaded)


def apply_checkpoint(model: nn.Module, context: InitContext) -> dict:
    """All weights of a tfx checkpoint of the same architecture (head when classes match)."""
    if not context.argument:
        raise ConfigError("Init 'checkpoint' needs a path: write checkpoint:PATH, e.g. "
                          "checkpoint:runs/pretrain/checkpoints/best.pt.")
    apply_random(model, context)
    source = load_source(model, context, context.argument, checkpoint_only=True,
                         flag="checkpoint:PATH")
    copy_into(model, source.state, source.loaded)
    return _report(source, model, source.loaded)


def apply_mean_var(model: nn.Module, context: InitContext) -> dict:
    """Each pretrained parameter tensor replaced by iid normal draws with its mean and
    variance; BatchNorm running statistics reset. Keeps the scaling, destroys the features."""
    apply_random(model, context)
    source = pretrained_source(model, context)
    parameters = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(10_007 * context.seed + 1)
    resampled = []
    with torch.no_grad():
        for key in source.loaded:
            tensor = source.state[key]
            if key not in parameters or not tensor.is_floating_point():
                continue
            values = tensor.double()
            mean = values.mean()
            std = values.std() if values.numel() > 1 else torch.zeros((), dtype=torch.float64)
            draw = torch.randn(values.shape, generator=generator, dtype=torch.float64)
            parameters[key].copy_((mean + std * draw).to(parameters[key].dtype))
            resampled.append(key)
    report = _report(source, model, [])
    drawn = set(resampled)
    report["reinitialised"] = [k for k in report["reinitialised"] if k not in drawn]
    report["skipped"] = [k for k in report["skipped"] if k not in drawn]  # their stats were used
    report["resampled"] = resampled
    report["batchnorm_statistics_reset"] = True
    return report


def apply_transfusion(model: nn.Module, context: InitContext) -> dict:
    """Pretrained weights for the lowest K blocks, the architecture's random init above."""
    if not context.argument:
        raise ConfigError("Init 'transfusion' needs the last block to copy: write "
                          "transfusion:K with a block name (transfusion:stem) or a count "
                          "(transfusion:2).")
    try:
        blocks = resolve_block_prefix(model, context.argument.strip())
    except TfxError as exc:
        raise ConfigError(f"transfusion:{context.argument}: {exc}") from exc
    mapping = getattr(model, "tfx_pretrained_from", None)
    beyond = [b for b in blocks if mapping and b not in mapping["blocks"]]
    if beyond:
        raise ConfigError(f"transfusion:{context.argument}: '{context.arch.name}' has "
                          f"pretrained weights only for {', '.join(mapping['blocks'])} (from "
                          f"{mapping['arch']}), not {', '.join(beyond)}; copy up to "
                          f"transfusion:{mapping['blocks'][-1]} at most.")
    apply_random(model, context)
    source = pretrained_source(model, context)
    by_block = state_keys_by_block(model)
    wanted = {key for block in blocks for key in by_block[block]}
    loaded = [key for key in source.loaded if key in wanted]
    copy_into(model, source.state, loaded)
    return _report(source, model, loaded, blocks=blocks)


def apply_gabor(model: nn.Module, context: InitContext) -> dict:
    """The input convolution set to a synthetic Gabor bank, the rest at the random init."""
    from transfusion_cli.api import gabor_bank

    apply_random(model, context)
    names = input_conv_names(model)
    if not names:
        raise ConfigError(f"'{context.arch.name}' has no input Conv2d to put Gabor filters in; "
                          "use another init.")
    conv = model.get_submodule(names[0])
    height, width = conv.weight.shape[-2:]
    if height != width or conv.groups != 1:
        raise ConfigError(f"Gabor init needs a square, ungrouped input conv; '{names[0]}' of "
                          f"'{context.arch.name}' is {height}x{width} with groups={conv.groups}.")
    weights, params = gabor_bank(conv.out_channels, conv.in_channels, int(height))
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights).to(conv.weight.dtype))
    key = f"{names[0]}.weight"
    return {
        "loaded": [],
        "reinitialised": [k for k in model.state_dict() if k != key],
        "skipped": [],
        "synthetic": [key],
        "source": {"kind": "gabor"},
        "gabor": [{"band": p.band, "theta": p.theta, "wavelength": p.wavelength,
                   "phase": p.phase, "sigma": p.sigma} for p in params],
    }


def check_checkpoint_path(argument: str, arch: ArchitectureSpec) -> str:
    """``checkpoint:PATH`` names an existing file; returns its absolute path."""
    path = Path(argument).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint:{argument}: checkpoint {path} does not exist; pass "
                              "the path of a tfx checkpoint (RUN/checkpoints/best.pt).")
    return str(path.resolve())


def check_transfusion_blocks(argument: str, arch: ArchitectureSpec) -> None:
    """``transfusion:K`` names blocks that ``arch`` has."""
    model = arch.build(num_classes=2, in_chans=3)
    try:
        blocks = resolve_block_prefix(model, argument.strip())
    except TfxError as exc:
        raise ConfigError(f"transfusion:{argument} on '{arch.name}': {exc}") from exc
    mapping = getattr(model, "tfx_pretrained_from", None)
    beyond = [b for b in blocks if mapping and b not in mapping["blocks"]]
    if beyond:
        raise ConfigError(f"transfusion:{argument} on '{arch.name}': it has pretrained weights "
                          f"only for {', '.join(mapping['blocks'])} (from {mapping['arch']}); "
                          f"copy up to transfusion:{mapping['blocks'][-1]} at most.")


@hookimpl
def tfx_register_inits(register):
    register(InitSpec("random", apply_random,
                      "the architecture's standard initialisation, seeded: He normal for CBR, "
                      "TF-Slim's for the paper's resnet50 / resnet50-slim / inception-v3, "
                      "timm's for other timm models", baseline=True))
    register(InitSpec("imagenet", apply_imagenet,
                      "pretrained weights (timm download, or --weights FILE: timm weights or a "
                      "tfx checkpoint); head re-initialised, input conv adapted",
                      needs_weights=True, full_transfer=True))
    register(InitSpec("mean-var", apply_mean_var,
                      "iid normal with each pretrained tensor's mean and variance (same sources "
                      "as imagenet); BN statistics reset", needs_weights=True))
    register(InitSpec("transfusion", apply_transfusion,
                      "pretrained weights for the lowest blocks up to K (transfusion:stem, "
                      "transfusion:2), random above", takes_argument=True, argument_name="K",
                      needs_weights=True, check_argument=check_transfusion_blocks))
    register(InitSpec("checkpoint", apply_checkpoint,
                      "all weights of a tfx checkpoint of the same architecture "
                      "(checkpoint:PATH); head re-initialised when classes differ",
                      takes_argument=True, argument_name="PATH", full_transfer=True,
                      check_argument=check_checkpoint_path))
    register(InitSpec("gabor", apply_gabor,
                      "synthetic Gabor filters in the input conv (grayscale, repeated across the "
                      "input channels; low- and high-frequency halves), the rest random"))
