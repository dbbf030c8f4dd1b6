"""Built-in initialisations."""

from __future__ import annotations

import torch
from torch import nn

from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.registry import InitContext, InitSpec


def reset_module_parameters(model: nn.Module) -> None:
    """Re-run the architecture's own initialisation (CBR: He normal; timm: timm's scheme)."""
    if hasattr(model, "reset_parameters"):
        model.reset_parameters()
        return
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    if hasattr(model, "init_weights"):  # timm models re-apply their own scheme on top
        model.init_weights()


def apply_random(model: nn.Module, context: InitContext) -> dict:
    """Seeded standard initialisation of every tensor."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(context.seed)
        reset_module_parameters(model)
    return {"loaded": [], "reinitialised": list(model.state_dict()), "skipped": []}


@hookimpl
def tfx_register_inits(register):
    register(InitSpec("random", apply_random,
                      "the architecture's standard initialisation (He normal for CBR, timm's "
                      "for timm models), seeded"))
