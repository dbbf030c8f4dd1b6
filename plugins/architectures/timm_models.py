"""ResNet50, Inception-v3, ResNet50-Slim and any timm model (as `timm/<name>`), built through timm.

Initialisation scheme: timm zero-initialises the last BatchNorm scale of every residual block
(``zero_init_last=True``); the paper's TF-Slim ResNets do not, so tfx builds every timm model
that has the option with ``zero_init_last=False``. A ``model_zoo.yaml`` entry asks otherwise
with ``zero_init_last: true``. The paper's ResNet50 and Inception-v3 were TF-Slim models: their
zoo entries (``resnet50``, ``resnet50-slim``, ``inception-v3``) say ``init_scheme: tf-slim`` and
the ``random`` init then draws the weights as TF-Slim does instead of timm's He fan-out
(``timm/<name>`` keeps timm's). The scheme travels with the model as ``tfx_init_scheme`` (the
run's env.json records it) and ``tfx_init_kwargs`` (what the ``random`` init re-applies).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import OrderedDict
from functools import partial

from torch import nn

from transfusion_cli.api import (
    ArchitectureSpec,
    ConfigError,
    UnknownNameError,
    hookimpl,
    load_zoo,
)

FAMILY = "timm"
INIT_SCHEMES = ("timm", "tf-slim")
TF_SLIM_TEXT = ("TF-Slim's, as the paper's models: truncated normal, variance scaling 2.0 over "
                "the fan-in, applied by the random init (plugins/inits/tf_slim.py)")
STAGE_CONTAINERS = ("stages", "blocks", "layers", "features")


def build_timm(timm_name: str, blocks: dict | None, num_classes: int = 5, in_chans: int = 3,
               *, zero_init_last: bool = False, pretrained_from: dict | None = None,
               init_scheme: str = "timm", **kwargs) -> nn.Module:
    """``timm.create_model`` (no download) with the ordered blocks attached as ``tfx_blocks``.

    ``kwargs`` go to the timm model (e.g. ``channels`` for a ResNet); ``pretrained_from``
    (``{"arch": NAME, "blocks": [...]}``) says that the pretrained weights of these blocks come
    from architecture NAME, whose blocks of the same names have the same tensors.
    ``init_scheme`` ``tf-slim`` asks the ``random`` init for TF-Slim's weights
    (``tfx_init_scheme["weights"]``).
    """
    import timm

    options = dict(kwargs, num_classes=num_classes, in_chans=in_chans)
    try:
        model = timm.create_model(timm_name, pretrained=False, zero_init_last=zero_init_last,
                                  **options)
        scheme: dict = {"zero_init_last": zero_init_last}
    except TypeError as exc:  # a timm model without the option
        if "zero_init_last" not in str(exc):
            raise
        model = timm.create_model(timm_name, pretrained=False, **options)
        scheme = {"zero_init_last": None}
    init_weights = getattr(model, "init_weights", None)
    accepts = init_weights is not None and \
        "zero_init_last" in inspect.signature(init_weights).parameters
    model.tfx_init_kwargs = {"zero_init_last": zero_init_last} if accepts else {}
    model.tfx_init_scheme = {"builder": "timm", "timm_name": timm_name, **scheme,
                             **({"weights": init_scheme, "description": TF_SLIM_TEXT}
                                if init_scheme == "tf-slim" else {"weights": "timm"})}
    if pretrained_from:
        model.tfx_pretrained_from = {"arch": pretrained_from["arch"],
                                     "blocks": list(pretrained_from["blocks"])}
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


def check_entry(name: str, entry: dict) -> None:
    """A zoo entry of this family names its timm model and its ordered blocks."""
    if "timm_name" not in entry or not entry.get("blocks"):
        raise ConfigError(f"model_zoo.yaml: timm entry '{name}' needs timm_name and blocks.")
    if entry.get("init_scheme", "timm") not in INIT_SCHEMES:
        raise ConfigError(f"model_zoo.yaml: timm entry '{name}' has init_scheme "
                          f"{entry['init_scheme']!r}; use one of {', '.join(INIT_SCHEMES)}.")


@hookimpl
def tfx_register_architectures(register):
    for name, entry in load_zoo().items():
        if entry["family"] != FAMILY:
            continue
        check_entry(name, entry)
        register(ArchitectureSpec(
            name=name,
            build=partial(build_timm, entry["timm_name"], entry["blocks"],
                          zero_init_last=bool(entry.get("zero_init_last", False)),
                          pretrained_from=entry.get("pretrained_from"),
                          init_scheme=entry.get("init_scheme", "timm"),
                          **(entry.get("timm_kwargs") or {})),
            description=entry.get("description", ""),
            family=FAMILY,
            default_image_size=entry.get("default_image_size", 224),
            pretrained=entry.get("pretrained"),
        ))
    pattern = ArchitectureSpec(
        name="timm/*", build=build_timm, family=FAMILY,
        description="any timm model, e.g. timm/resnet18 (see timm.list_models())")
    register(dataclasses.replace(pattern, resolve=partial(resolve_timm, pattern)))
