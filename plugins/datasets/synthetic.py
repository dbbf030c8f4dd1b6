"""Built-in synthetic datasets that need no download: `synthetic-retina` and `synthetic-chest`.

Images are generated on the fly from (data seed, split, index) at any size; see
``synthetic_fundus`` and ``synthetic_chest_xray`` for what is drawn. Dataset options come as
strings from ``--option KEY=VALUE`` or typed from YAML; resolved values are recorded in
``DatasetInfo.options``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tfx_plugins.datasets.synthetic_chest_xray import (
    DEFAULT_PREVALENCE,
    FINDINGS,
    UNCERTAIN,
    draw_findings,
    render_chest,
)
from tfx_plugins.datasets.synthetic_fundus import (
    DEFAULT_GRADE_FREQUENCIES,
    draw_grade,
    render_fundus,
)
from tfx_plugins.datasets.synthetic_split import SyntheticSplit

from transfusion_cli.api import (
    ConfigError,
    DatasetBundle,
    DatasetInfo,
    DatasetOptions,
    DatasetSpec,
    hookimpl,
)

DEFAULT_IMAGE_SIZE = 64
GRADE_NAMES = ("0-none", "1-mild", "2-moderate", "3-severe", "4-proliferative")
POLICIES = ("u-ignore", "u-ones", "u-zeros")
# Sizes chosen so that the README quick start (cbr-tiny, a few epochs, 64 px) takes about a
# minute on two CPU cores.
DEFAULT_SIZES = {"train_size": 1500, "val_size": 400, "test_size": 400}
# Per-channel mean and std of the uint8 images / 255, measured with
# `python benchmarks/synthetic_learnability.py --data NAME --measure-normalisation` (train
# split, data seed 0, 2000 images at 64 px); at 32 and 128 px they differ by < 0.005.
RETINA_MEAN, RETINA_STD = (0.4083, 0.159, 0.0791), (0.3007, 0.1226, 0.0625)
CHEST_MEAN, CHEST_STD = (0.5785,), (0.2327,)

SIZE_HELP = "number of {} images (default {})"
RETINA_OPTIONS = {
    "train_size": SIZE_HELP.format("training", DEFAULT_SIZES["train_size"]),
    "val_size": SIZE_HELP.format("validation", DEFAULT_SIZES["val_size"]),
    "test_size": SIZE_HELP.format("test", DEFAULT_SIZES["test_size"]) + "; 0: no test split",
    "grade_frequencies": "relative frequencies of DR grades 0-4, five comma-separated numbers "
                         "(default EyePACS-like 73,7,15,2.5,2.5)",
}
CHEST_OPTIONS = {
    "train_size": RETINA_OPTIONS["train_size"],
    "val_size": RETINA_OPTIONS["val_size"],
    "test_size": RETINA_OPTIONS["test_size"],
    "prevalence": "probability of each finding (Atelectasis, Cardiomegaly, Consolidation, "
                  "Edema, Pleural Effusion), five comma-separated numbers in [0, 1] "
                  "(default 0.25,0.2,0.2,0.25,0.3)",
    "uncertain_fraction": "fraction of labels reported uncertain (-1), in [0, 1] (default 0.1)",
    "uncertainty": "policy for uncertain labels: u-ignore (masked, default), u-ones (-> 1) or "
                   "u-zeros (-> 0)",
}


class FundusGenerator:
    """Draws DR grades with the given frequencies, and fundus images of those grades."""

    def __init__(self, frequencies: tuple[float, ...]):
        self.cumulative = np.cumsum(frequencies)

    def label(self, rng: np.random.Generator) -> int:
        """One DR grade."""
        return draw_grade(rng, self.cumulative)

    def labels(self, draws: list[int]) -> np.ndarray:
        """Grades as int64 (N,)."""
        return np.asarray(draws, dtype=np.int64)

    def image(self, rng: np.random.Generator, draw: int, size: int) -> np.ndarray:
        """A fundus photo of that grade, uint8 (3, size, size)."""
        return render_fundus(rng, draw, size)


class ChestGenerator:
    """Draws CheXpert-style reports (1 / 0 / -1 per finding) and radiographs that fit them."""

    def __init__(self, prevalence: tuple[float, ...], uncertain_fraction: float, policy: str):
        self.prevalence = np.asarray(prevalence)
        self.uncertain_fraction, self.policy = uncertain_fraction, policy

    def label(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One report and the severities it is drawn with."""
        return draw_findings(rng, self.prevalence, self.uncertain_fraction)

    def labels(self, draws: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """float32 (N, 5) after the uncertainty policy (NaN: masked)."""
        reported = self.reported(draws)
        value = {"u-ignore": np.nan, "u-ones": 1.0, "u-zeros": 0.0}[self.policy]
        return np.where(reported == UNCERTAIN, value, reported).astype(np.float32)

    def reported(self, draws: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Labels as reported, before the uncertainty policy: 1, 0 or -1 (uncertain)."""
        if not draws:
            return np.zeros((0, len(FINDINGS)), np.float32)
        return np.stack([reported for reported, _ in draws]).astype(np.float32)

    def image(self, rng: np.random.Generator, draw: tuple[np.ndarray, np.ndarray],
              size: int) -> np.ndarray:
        """A radiograph with those findings, uint8 (1, size, size)."""
        return render_chest(rng, draw[1], size)


def build_retina(options: DatasetOptions) -> DatasetBundle:
    """`synthetic-retina`: fundus photographs graded 0-4 for diabetic retinopathy."""
    name = "synthetic-retina"
    extra = dict(options.extra)
    resolved = resolve_sizes(name, extra)
    frequencies = parse_numbers(name, "grade_frequencies", extra.get("grade_frequencies"),
                                DEFAULT_GRADE_FREQUENCIES, 5, upper=None)
    total = sum(frequencies)
    if total <= 0:
        raise ConfigError(f"Dataset '{name}': option grade_frequencies must not be all zero; "
                          "give five relative frequencies, e.g. 73,7,15,2.5,2.5.")
    resolved["grade_frequencies"] = [round(f / total, 6) for f in frequencies]
    image_size = options.image_size or DEFAULT_IMAGE_SIZE
    info = DatasetInfo(
        name=name, task="multiclass", class_names=GRADE_NAMES, channels=3,
        image_size=image_size, mean=RETINA_MEAN, std=RETINA_STD, referable_threshold=2,
        selection_metric="referable_auc", options=resolved)
    bundle = make_bundle(info, FundusGenerator(tuple(resolved["grade_frequencies"])), 1,
                         check_seed(name, options.seed), resolved)
    for split in (bundle.train, bundle.val, bundle.test):
        if split is not None:  # the paper's binary label: referable DR, grade >= 2
            split.referable = split.labels >= info.referable_threshold
    return bundle


def build_chest(options: DatasetOptions) -> DatasetBundle:
    """`synthetic-chest`: frontal chest radiographs with five CheXpert findings."""
    name = "synthetic-chest"
    extra = dict(options.extra)
    resolved = resolve_sizes(name, extra)
    resolved["prevalence"] = parse_numbers(name, "prevalence", extra.get("prevalence"),
                                           DEFAULT_PREVALENCE, 5, upper=1.0)
    resolved["uncertain_fraction"] = parse_number(name, "uncertain_fraction",
                                                  extra.get("uncertain_fraction"), 0.1, upper=1.0)
    resolved["uncertainty"] = parse_policy(name, extra.get("uncertainty", "u-ignore"))
    generator = ChestGenerator(tuple(resolved["prevalence"]), resolved["uncertain_fraction"],
                               resolved["uncertainty"])
    info = DatasetInfo(
        name=name, task="multilabel", class_names=FINDINGS, channels=1,
        image_size=options.image_size or DEFAULT_IMAGE_SIZE, mean=CHEST_MEAN, std=CHEST_STD,
        selection_metric="mean_auc", options=resolved)
    bundle = make_bundle(info, generator, 2, check_seed(name, options.seed), resolved)
    for split in (bundle.train, bundle.val, bundle.test):
        if split is not None:  # the report before the policy, for statistics and checks
            split.raw_labels = generator.reported(split.draws)
    return bundle


def make_bundle(info: DatasetInfo, generator: Any, dataset_key: int, seed: int,
                sizes: Mapping[str, Any]) -> DatasetBundle:
    """Train, val and (unless its size is 0) test splits."""
    def split(which: str) -> SyntheticSplit:
        return SyntheticSplit(generator, dataset_key=dataset_key, seed=seed, split=which,
                              size=sizes[f"{which}_size"], image_size=info.image_size,
                              task=info.task)

    test = split("test") if sizes["test_size"] > 0 else None
    return DatasetBundle(info, split("train"), split("val"), test)


def check_seed(name: str, seed: Any) -> int:
    """Data seeds are non-negative integers."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"Dataset '{name}': data seed {seed!r} must be a non-negative integer, "
                          "e.g. --data-seed 0.")
    return int(seed)


def resolve_sizes(name: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """train_size, val_size (at least 1) and test_size (0 or more) from the options."""
    return {key: parse_int(name, key, extra.get(key), default, minimum=0 if key == "test_size"
                           else 1) for key, default in DEFAULT_SIZES.items()}


def parse_int(name: str, key: str, value: Any, default: int, minimum: int) -> int:
    """An integer option (a string from the CLI or an int from YAML)."""
    if value is None:
        return default
    number: int | None = None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value.strip())
    if number is None or number < minimum:
        raise ConfigError(f"Dataset '{name}': option {key}={value!r} must be an integer >= "
                          f"{minimum}, e.g. --option {key}={max(minimum, default)}.")
    return number


def parse_number(name: str, key: str, value: Any, default: float, upper: float | None) -> float:
    """A number in [0, upper] (a string from the CLI or a number from YAML)."""
    if value is None:
        return default
    hint = f"a number in [0, {upper:g}]" if upper is not None else "a non-negative number"
    number = to_float(value)
    if number is None or number < 0 or (upper is not None and number > upper):
        raise ConfigError(f"Dataset '{name}': option {key}={value!r} must be {hint}, "
                          f"e.g. --option {key}={default:g}.")
    return number


def parse_numbers(name: str, key: str, value: Any, default: tuple[float, ...], count: int,
                  upper: float | None) -> list[float]:
    """``count`` numbers: "a,b,c,..." from the CLI or a list from YAML."""
    example = ",".join(f"{v:g}" for v in default)
    if value is None:
        return list(default)
    items = value.split(",") if isinstance(value, str) else value
    numbers = [to_float(item) for item in items] if isinstance(items, list | tuple) else None
    if numbers is None or len(numbers) != count or any(
            n is None or n < 0 or (upper is not None and n > upper) for n in numbers):
        bounds = f"in [0, {upper:g}]" if upper is not None else "non-negative"
        raise ConfigError(f"Dataset '{name}': option {key}={value!r} must be {count} "
                          f"comma-separated numbers {bounds}, e.g. --option {key}={example}.")
    return [float(n) for n in numbers]


def to_float(value: Any) -> float | None:
    """A finite float from a number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def parse_policy(name: str, value: Any) -> str:
    """u-ignore / u-ones / u-zeros (also accepted: ignore, ones, zeros, U_Ones, ...)."""
    text = str(value).strip().lower().replace("_", "-")
    text = text if text.startswith("u-") else f"u-{text}"
    if text not in POLICIES:
        raise ConfigError(f"Dataset '{name}': option uncertainty={value!r} is not one of "
                          f"{', '.join(POLICIES)}; e.g. --option uncertainty=u-ones.")
    return text


SPECS: tuple[tuple[str, Callable[[DatasetOptions], DatasetBundle], str, dict[str, str]], ...] = (
    ("synthetic-retina", build_retina,
     "synthetic colour fundus photos, diabetic retinopathy grades 0-4 (referable: >= 2); "
     "generated, no download", RETINA_OPTIONS),
    ("synthetic-chest", build_chest,
     "synthetic chest X-rays, 5 CheXpert findings (multi-label, uncertain labels); generated, "
     "no download", CHEST_OPTIONS),
)


@hookimpl
def tfx_register_datasets(register):
    for name, build, description, dataset_options in SPECS:
        register(DatasetSpec(name=name, build=build, description=description,
                             default_image_size=DEFAULT_IMAGE_SIZE, options=dataset_options))
