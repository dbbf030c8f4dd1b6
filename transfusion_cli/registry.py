"""Frozen spec dataclasses and the Registry that plugins fill (lookup with did-you-mean).

The process-wide registry, loaded from the installed plugins, is `plugins.get_registry()`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from transfusion_cli.errors import ConfigError, TfxError, UnknownNameError

KINDS = ("datasets", "architectures", "inits", "metrics", "preprocessing")


class TfxModel(Protocol):
    """What tfx reads from a model that ``ArchitectureSpec.build`` returns (a torch ``nn.Module``).

    ``tfx_blocks`` is required. The other attributes are optional: readers use
    ``getattr(model, name, default)`` with the default given in each comment.
    """

    # Block name (``stem``, ``block1``, ..., ``head``) -> the submodule names in that block, in
    # forward order: similarity, explain, block-wise inits and freezing read it.
    tfx_blocks: Mapping[str, tuple[str, ...]]
    # Input channels the model was built for (default: the dataset's channels).
    in_chans: int
    # How the architecture initialises itself, recorded in the run's env.json (default None).
    tfx_init_scheme: Mapping[str, Any] | None
    # Keyword arguments a from-scratch init passes to ``model.init_weights`` (default {}).
    tfx_init_kwargs: Mapping[str, Any]
    # A slimmer variant's donor: ``{"arch": NAME, "blocks": [...]}``; pretrained inits copy
    # the donor's weights block by block (default None: the architecture's own weights).
    tfx_pretrained_from: Mapping[str, Any] | None

    def __call__(self, images: Any) -> Any:
        """Logits for a normalised image batch (N, C, H, W)."""


@dataclass(frozen=True)
class ArchitectureSpec:
    """How to build one architecture: ``build(num_classes=..., in_chans=...) -> nn.Module``.

    The module it returns is a ``TfxModel``: it carries ``tfx_blocks``, an ordered dict from
    block name (``stem``, ``block1``, ..., ``head``) to the tuple of submodule names that make
    up the block, and may carry the optional attributes ``TfxModel`` documents.
    """

    name: str
    build: Callable[..., Any]
    description: str = ""
    family: str = ""
    default_image_size: int = 224
    # timm name whose pretrained weights `imagenet` / `mean-var` use; None: no public weights.
    pretrained: str | None = None
    # For a pattern name like ``timm/*``: resolve("resnet18") -> the concrete spec.
    resolve: Callable[[str], ArchitectureSpec] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one dataset: ``build(DatasetOptions) -> DatasetBundle`` (see ``data``)."""

    name: str
    build: Callable[..., Any]
    description: str = ""
    default_image_size: int = 224
    needs_data_dir: bool = False
    # Training augmentation when --augment is not given (train/augment.py: none, light, flip,
    # fundus); the dataset plugin chooses it.
    default_augment: str = "none"
    # Dataset-specific options (``--option key=value``): name -> one-line help.
    options: dict[str, str] = field(default_factory=dict)
    # ``input_roots(DatasetOptions) -> paths``: the files and folders a build with these options
    # reads besides ``data_dir`` itself (e.g. a CSV's image root), found cheaply (no image
    # decoded); tfx never writes into them. None: the dataset reads only inside ``data_dir``.
    input_roots: Callable[..., Any] | None = None
    # ``fetch(name, size, folder) -> Path``: download one published file of this dataset into
    # ``folder``, checked against its published checksum (`tfx data fetch DATASET/NAME`).
    fetch: Callable[..., Any] | None = None


@dataclass(frozen=True)
class PreprocessSpec:
    """A named image preprocessing step that a dataset applies before resizing.

    ``apply(image) -> image``: a decoded uint8 image, (H, W) grayscale or (H, W, 3) colour as
    the model takes it, to a uint8 image of any size (tfx resizes it to the model's input
    next). A dataset names its step in ``DatasetInfo.preprocess``; tfx applies it to every
    training image, records the name in checkpoints and exported models, and `tfx predict`
    applies it again by name (importing only the plugin that registered it, so keep that
    plugin's module free of torch imports if predict should stay light).
    ``input_warning(image) -> str | None``: optional; given a decoded (H, W, 3) uint8 input
    of `tfx predict`, a warning when it is clearly not what the step expects.
    ``field_of_view(image) -> mask | None``: optional; given a prepared (H, W, 3) uint8 model
    input, a boolean (H, W) mask of the imaged field (e.g. the fundus disc): heatmap
    overlays draw nothing outside it.
    ``apply``, ``input_warning`` and ``field_of_view`` must be module-level functions (they
    are pickled).
    """

    name: str
    apply: Callable[[Any], Any]
    description: str = ""
    input_warning: Callable[[Any], str | None] | None = None
    field_of_view: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class InitSpec:
    """An initialisation: ``apply(model, InitContext) -> report dict``.

    ``takes_argument``: used as ``name:ARG`` (``transfusion:2``, ``checkpoint:PATH``), with
    ``argument_name`` (``K``, ``PATH``) shown in messages. ``needs_weights``: reads pretrained
    weights (``--weights FILE`` or the architecture's public ones, ``ArchitectureSpec.pretrained``).
    ``check_argument(argument, ArchitectureSpec) -> str | None``: validates the argument before
    any training starts (raising a TfxError with the fix) and may return a normalised form
    (e.g. an absolute path); ``tfx compare-inits`` calls it through ``check``.
    ``full_transfer``: copies every pretrained feature, so it plays "transfer" against the
    baseline in the paper's comparisons (``tfx figures``).
    ``baseline``: the from-scratch init every other init is compared against (the paper's
    ``random``); exactly one registered init sets it (``Registry.baseline_init``).
    """

    name: str
    apply: Callable[..., dict]
    description: str = ""
    takes_argument: bool = False
    argument_name: str = "ARG"
    needs_weights: bool = False
    check_argument: Callable[[str, ArchitectureSpec], str | None] | None = None
    full_transfer: bool = False
    baseline: bool = False

    def check(self, argument: str | None, arch: ArchitectureSpec) -> str:
        """The init as ``name`` or ``name:ARGUMENT`` (normalised), or a ConfigError with the fix."""
        if self.takes_argument and not argument:
            raise ConfigError(f"Init '{self.name}' needs an argument: write "
                              f"{self.name}:{self.argument_name} (`tfx list inits`).")
        if argument is not None and not self.takes_argument:
            raise ConfigError(f"Init '{self.name}' takes no argument; write '{self.name}', not "
                              f"'{self.name}:{argument}'.")
        if argument is None:
            return self.name
        if self.check_argument is not None:
            argument = self.check_argument(argument, arch) or argument
        return f"{self.name}:{argument}"


@dataclass(frozen=True)
class InitContext:
    """What an init needs besides the model."""

    arch: ArchitectureSpec
    num_classes: int
    in_chans: int
    seed: int = 0
    argument: str | None = None
    weights: Path | None = None
    # The target dataset's class names: a pretrained head is kept only when they match.
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MetricSpec:
    """A representational-similarity metric: ``fn(x, y) -> float`` on (n, p) and (n, q).

    Optional streaming forms, used by ``tfx similarity`` instead of holding activations:
    ``from_moments(Moments) -> MetricResult`` computes the value exactly from the moments that
    ``transfusion_cli.similarity.PairStats`` accumulates in one pass shared by all such metrics;
    ``accumulator()`` returns an object with ``update(x, y)`` (one batch of inputs, features
    flattened per input) and ``result() -> MetricResult``.
    """

    name: str
    fn: Callable[..., Any]
    description: str = ""
    from_moments: Callable[[Any], Any] | None = None
    accumulator: Callable[[], Any] | None = None
    # Undefined unless there are more data points than neurons (CCA and its variants): tfx
    # fails before the pass when they are fewer, and warns below 10 points per neuron.
    needs_more_points_than_neurons: bool = False
    # from_moments reads the per-point row-norm sums (debiased CKA); off saves their cost.
    needs_row_norms: bool = True


SPEC_TYPES = {
    "datasets": DatasetSpec,
    "architectures": ArchitectureSpec,
    "inits": InitSpec,
    "metrics": MetricSpec,
    "preprocessing": PreprocessSpec,
}


class DuplicateNameError(TfxError):
    """A plugin registered a name that another plugin already holds."""


class Registry:
    """Every registered spec, by kind and name, with the plugin that registered it."""

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._owners: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self.plugins: list[Any] = []  # PluginInfo, filled by transfusion_cli.plugins

    def add(self, kind: str, spec: Any, plugin: str) -> None:
        """Register ``spec`` under ``spec.name``; a taken name raises DuplicateNameError."""
        expected = SPEC_TYPES[kind]
        if not isinstance(spec, expected):
            raise TfxError(f"Plugin '{plugin}' registered a {type(spec).__name__} as one of "
                           f"{kind}; expected {expected.__name__}.")
        if spec.name in self._specs[kind]:
            raise DuplicateNameError(
                f"'{spec.name}' is already registered by plugin '{self._owners[kind][spec.name]}'")
        self._specs[kind][spec.name] = spec
        self._owners[kind][spec.name] = plugin

    def remove(self, kind: str, name: str) -> None:
        """Forget one registration (used to roll back a plugin that failed half-way)."""
        self._specs[kind].pop(name, None)
        self._owners[kind].pop(name, None)

    def get(self, kind: str, name: str) -> Any:
        """The spec called ``name``; an unknown name raises UnknownNameError with a suggestion."""
        if kind == "inits" and ":" in name:
            name = name.split(":", 1)[0]
        specs = self._specs[kind]
        if name in specs:
            return specs[name]
        prefix, _, rest = name.partition("/")
        pattern = specs.get(f"{prefix}/*")
        if rest and pattern is not None and getattr(pattern, "resolve", None):
            return pattern.resolve(rest)
        raise UnknownNameError(kind, name, sorted(specs))

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, in registration order."""
        return list(self._specs[kind])

    def specs(self, kind: str) -> list[Any]:
        """Registered specs of one kind, in registration order."""
        return list(self._specs[kind].values())

    def owner(self, kind: str, name: str) -> str:
        """Name of the plugin that registered ``name``."""
        return self._owners[kind][name]

    def baseline_init(self) -> InitSpec:
        """The init that sets ``baseline`` (the paper's ``random``); a ConfigError unless
        exactly one registered init does."""
        found = [spec for spec in self.specs("inits") if spec.baseline]
        if len(found) != 1:
            names = ", ".join(spec.name for spec in found) or "none"
            raise ConfigError(f"Exactly one init must be the baseline (InitSpec.baseline); "
                              f"found {names}. Check the installed plugins (`tfx plugins`).")
        return found[0]
