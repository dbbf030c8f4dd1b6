"""pluggy hook specifications: the whole plugin API of tfx."""

from __future__ import annotations

import pluggy

PROJECT = "tfx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def tfx_register_datasets(register):
    """Register dataset specs: call ``register(DatasetSpec(...))`` once per dataset."""


@hookspec
def tfx_register_architectures(register):
    """Register architecture specs: call ``register(ArchitectureSpec(...))`` per architecture."""


@hookspec
def tfx_register_inits(register):
    """Register initialisation specs: call ``register(InitSpec(...))`` per initialisation."""


@hookspec
def tfx_register_metrics(register):
    """Register representational-similarity metrics: ``register(MetricSpec(...))``."""


@hookspec
def tfx_register_preprocessing(register):
    """Register image preprocessing steps that datasets name: ``register(PreprocessSpec(...))``."""
