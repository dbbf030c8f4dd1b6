"""The shape of a `tfx reproduce` profile (YAML), checked as a whole before any work starts.

Every key has a type and, where it matters, a range (pydantic models, strict: ``"3"`` is not
3, ``two`` is not a number, a string is not a list). ``validate_profile`` returns the checked
model or raises one ConfigError naming the first bad key and what it takes.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from transfusion_cli.errors import ConfigError
from transfusion_cli.limits import MAX_REPRESENTATION_SAMPLES, MAX_STUDY_SEEDS
from transfusion_cli.reproduce.parts import PARTS as PART_NAMES
from transfusion_cli.runfolder import check_name

MAX_DATA_SEED = 2**32 - 1  # numpy's seed range


def _plain_name(value: str) -> str:
    try:
        return check_name(value, "")
    except ConfigError:
        raise ValueError("a plain name: letters, digits, '.', '_' and '-', starting with a "
                         "letter or digit, no '..'") from None


# Names that become folder names (dataset keys name the sweep folders, the study's name the
# default --out): identifiers, never paths.
Name = Annotated[str, AfterValidator(_plain_name)]


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError("a single value (text, a number or true/false)")
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]  # a dataset option's value
Names = Annotated[list[str], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class DatasetModel(_Strict):
    data: str
    options: dict[str, Scalar] | None = None
    data_dir: str | None = None
    data_seed: Annotated[int, Field(ge=0, le=MAX_DATA_SEED)] | None = None
    fit: dict[str, Any] | None = None


class HybridModel(_Strict):
    arch: str
    init: str = "pretrained"
    weights_from: str | None = None


class PartModel(_Strict):
    dataset: str
    archs: Names
    inits: Names | None = None
    arch_inits: dict[str, Names] | None = None
    seeds: Annotated[int, Field(ge=1, le=MAX_STUDY_SEEDS)] = 1
    train_size: Annotated[int, Field(ge=1)] | None = None
    target: float | None = None
    metric: str | None = None
    samples: Annotated[int, Field(ge=1, le=MAX_REPRESENTATION_SAMPLES)] = 256
    split: Literal["train", "val", "test"] | None = None  # representations: the probe images
    hybrids: list[HybridModel] | None = None
    fit: dict[str, Any] | None = None


class StandInModel(_Strict):
    data: dict[str, str]
    fit: dict[str, Any] | None = None
    options: dict[str, Scalar] | None = None


class PretrainedModel(_Strict):
    weights: dict[str, str | None] | None = None
    stand_in: StandInModel | None = None
    recipe: str | None = None


class ProfileModel(_Strict):
    name: Name | None = None
    description: str | None = None
    # reproduction (default) or pipeline-check: every verdict then says it checks the code
    purpose: Literal["reproduction", "pipeline-check"] | None = None
    datasets: dict[Name, DatasetModel] | None = None
    fit: dict[str, Any] | None = None
    pretrained: PretrainedModel | None = None
    roles: dict[Literal["standard", "small"], list[str]] | None = None
    parts: dict[Literal[PART_NAMES], PartModel] | None = None  # type: ignore[valid-type]
    slurm: dict[str, Any] | None = None
    source_scores: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None
    claims: dict[str, Annotated[float, Field(ge=0)]] | None = None
    stands_for: dict[str, str] | None = None


# What a key takes, in words (the error says it with the value given).
EXPECTED = {
    "archs": "a list of architecture names, e.g. [cbr-tiny]",
    "inits": "a list of init names, e.g. [random, pretrained]",
    "seeds": f"a whole number of seeds from 1 to {MAX_STUDY_SEEDS}",
    "samples": f"a whole number of images from 1 to {MAX_REPRESENTATION_SAMPLES}",
    "train_size": "a whole number of training images (1 or more)",
    "target": "a number (the metric value that counts as reached, e.g. 0.91)",
    "data_seed": f"a whole number from 0 to {MAX_DATA_SEED}",
    "source_scores": "a mapping ARCH: top-1 accuracy as a fraction in [0, 1] (0.761, not 76.1)",
    "claims": "a mapping of claim settings to non-negative numbers",
    "roles": "a mapping with the keys standard and small, each a list of architectures",
    "hybrids": "a list of mappings {arch: ..., init: ..., weights_from: ...}",
    "datasets": "a mapping KEY: {data: DATASET, ...}",
    "parts": f"a mapping of parts ({', '.join(PART_NAMES)})",
    "slurm": "a mapping of SLURM settings (time_min, partition, ...)",
    "fit": "a mapping of `tfx fit` settings (steps, lr, ...)",
    "options": "a mapping of dataset options",
    "pretrained": "a mapping (weights, stand_in, recipe)",
    "stand_in": "a mapping (data, fit, options)",
    "description": "text",
}
# pydantic's words for a type, as the profile's reader says them.
TYPE_WORDS = {"a valid dictionary": "a mapping", "a valid list": "a list",
              "a valid string": "text", "a valid integer": "a whole number",
              "a valid number": "a number", "a valid boolean": "true or false"}
# What each value of a mapping key takes (``claims.alpha``, ``roles.standard``).
EXPECTED_VALUE = {
    "claims": "a non-negative number",
    "roles": "a list of architecture names",
    "source_scores": "a fraction in [0, 1] (top-1 accuracy 0.761, not 76.1)",
    "datasets": "a mapping {data: DATASET, ...}",
    "parts": "a mapping of the part's settings (dataset, archs, ...)",
    "arch_inits": "a list of init names",
}


def validate_profile(data: Any, source: str) -> ProfileModel:
    """The checked profile; the first problem is a ConfigError naming its key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of profile keys (name, datasets, "
                          f"parts, ...), got {type(data).__name__}; see `tfx reproduce "
                          "--show-profile smoke`.")
    try:
        return ProfileModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc.errors()[0])}") from None


def _describe(error: dict[str, Any]) -> str:
    loc = list(error["loc"])
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    if error["type"] == "extra_forbidden":
        valid = ", ".join(_fields_at(loc[:-1]))
        return f"{_where(loc[:-1]) or 'the profile'}: unknown key '{loc[-1]}'; valid keys: {valid}."
    if loc and loc[-1] == "[key]":
        where, key = _where(loc[:-2]), loc[-2]
        if where == "parts":
            return f"unknown part '{key}'; parts are {', '.join(PART_NAMES)}."
        expected = error["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
        return f"{where}: the key {key!r} must be {expected}."
    expected = None
    if loc and isinstance(loc[-1], str):
        parent = _model_in(_annotation_at(loc[:-1]))
        if parent is not None and loc[-1] in parent.model_fields:
            expected = EXPECTED.get(loc[-1])
        elif len(loc) > 1:
            expected = EXPECTED_VALUE.get(loc[-2])
    if error["type"] == "missing":
        return f"{_where(loc)} is missing; add it (see `tfx reproduce --show-profile smoke`)."
    if expected is None:
        expected = error["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
        expected = TYPE_WORDS.get(expected, expected)
    return f"{_where(loc)} must be {expected}, got {shown}."


def _where(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fields_at(loc: list[Any]) -> list[str]:
    """The keys the model at ``loc`` allows (walking fields, dict values and list items)."""
    model = _model_in(_annotation_at(loc))
    return sorted(model.model_fields) if model else []


def _annotation_at(loc: list[Any]) -> Any:
    annotation: Any = ProfileModel
    for part in loc:
        annotation = _step(annotation, part)
    return annotation


def _step(annotation: Any, part: Any) -> Any:
    model = _model_in(annotation)
    if model is not None and isinstance(part, str) and part in model.model_fields:
        return model.model_fields[part].annotation
    for arg in _alternatives(annotation):
        origin = typing.get_origin(arg)
        if origin is dict:
            return typing.get_args(arg)[1]
        if origin is list:
            return typing.get_args(arg)[0]
    return None


def _alternatives(annotation: Any) -> list[Any]:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _alternatives(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    return next((a for a in _alternatives(annotation)
                 if isinstance(a, type) and issubclass(a, BaseModel)), None)
