"""ResNet50, Inception-v3 and any timm model (as `timm/<name>`), built through timm."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from functools import partial

from torch import nn

from transfusion_cli.api import ArchitectureSpec, UnknownNameError, hookimpl, load_zoo

STAGE_CONTAINERS = ("stages", "blocks", "layers", "features")


def build_timm(timm_name: str, blocks: dict | None, num_classes: int = 5, in_chans: int = 3,
               **kwargs) -> nn.Module:
    """``timm.create_model`` (no download) with the ordered blocks attached as ``tfx_blocks``."""
    import timm

    model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes,
                              in_chans=in_chans, **kwargs)
    model.tfx_blocks = OrderedDict(
        (name, tuple(modules)) for name, modules in (blocks or generic_blocks(model)).items())
    return model


def generic_blocks(model: nn.Module) -> OrderedDict[str, tuple[str, ...]]:
    """Blocks of an arbitrary timm model: its top-level children with parameters, stage
    containers split into their stages, and the classifier last as ``head``."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    blocks: OrderedDict[str, tuple[str, ...]] = OrderedDict()
    head_name = None
    for name, child in model.named_children():
        if classifier is not None and child is classifier:
            head_name = name
            continue
        if not any(True for _ in child.parameters()):
            continue
        if name in STAGE_CONTAINERS and isinstance(child, nn.Sequential | nn.ModuleList):
            for index in range(len(child)):
                blocks[f"{name}.{index}"] = (f"{name}.{index}",)
        else:
            blocks[name] = (name,)
    if head_name is None:  # classifier nested (e.g. head.fc)
        for name, module in model.named_modules():
            if classifier is not None and module is classifier:
                head_name = name
    if head_name:
        blocks["head"] = (head_name,)
    return blocks


def resolve_timm(pattern_spec: ArchitectureSpec, model_name: str) -> ArchitectureSpec:
    """The spec for ``timm/<model_name>``, checked against timm's model list."""
    import timm

    if not timm.is_model(model_name):
        raise UnknownNameError("architectures", f"timm/{model_name}",
                               [f"timm/{n}" for n in timm.list_models()])
    return dataclasses.replace(
        pattern_spec, name=f"timm/{model_name}",
        build=partial(build_timm, model_name, None), resolve=None,
        pretrained=model_name,
        description=f"timm model {model_name}")


@hookimpl
def tfx_register_architectures(register):
    for name, entry in load_zoo().items():
        if entry["family"] != "timm":
            continue
        register(ArchitectureSpec(
            name=name,
            build=partial(build_timm, entry["timm_name"], entry["blocks"]),
            description=entry.get("description", ""),
            family="timm",
            default_image_size=entry.get("default_image_size", 224),
            pretrained=entry.get("pretrained"),
        ))
    pattern = ArchitectureSpec(
        name="timm/*", build=build_timm, family="timm",
        description="any timm model, e.g. timm/resnet18 (see timm.list_models())")
    register(dataclasses.replace(pattern, resolve=partial(resolve_timm, pattern)))
