"""`tfx fit`: train an architecture on a dataset into a run folder."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from transfusion_cli.app import app
from transfusion_cli.console import info, print_json


class Optimizer(StrEnum):
    """Optimizers `tfx fit` offers."""

    adam = "adam"
    sgd = "sgd"


class Scheduler(StrEnum):
    """Learning-rate schedules."""

    cosine = "cosine"
    constant = "constant"


class Device(StrEnum):
    """Where to train."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _value(option):
    return option.value if isinstance(option, StrEnum) else option


@app.command("fit")
def fit_command(
    data: str = typer.Option(None, "--data", "-d", help="Dataset name (`tfx list datasets`). "
                             "Default: synthetic-retina."),
    arch: str = typer.Option(None, "--arch", "-a", help="Architecture (`tfx list "
                             "architectures`). Default: cbr-tiny."),
    init: str = typer.Option(None, "--init", help="Initialisation, NAME or NAME:ARG "
                             "(`tfx list inits`). Default: random."),
    weights: Path = typer.Option(None, "--weights", help="Weights file the init reads "
                                 "(e.g. a timm .safetensors for imagenet / mean-var)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder of the dataset's files "
                                  "(default: $TFX_DATA_DIR/<name>)."),
    option: list[str] = typer.Option(None, "--option", metavar="KEY=VALUE",
                                     help="Dataset option (repeatable; see `tfx list datasets "
                                     "--json`)."),
    data_seed: int = typer.Option(None, "--data-seed", help="Seed of the data: synthetic "
                                  "content, patient split, --train-size subset. Default 0."),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images", help="Leave out "
                                         "unreadable images (with a warning) instead of "
                                         "failing."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs to train (default 4)."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps to train (instead of "
                              "--epochs)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Images per step "
                                   "(per process under torchrun). Default 32."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate. Default 1e-3."),
    optimizer: Optimizer = typer.Option(None, "--optimizer", help="adam (default) or sgd "
                                        "(momentum 0.9)."),
    scheduler: Scheduler = typer.Option(None, "--scheduler", help="cosine decay to 0 "
                                        "(default) or constant."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="L2 weight decay. "
                                       "Default 0."),
    image_size: int = typer.Option(None, "--image-size", help="Image side in pixels "
                                   "(default: the dataset's)."),
    train_size: int = typer.Option(None, "--train-size", help="Train on a fixed, seeded, "
                                   "stratified subset of N training images."),
    in_chans: int = typer.Option(None, "--in-chans", help="Model input channels (default: "
                                 "the dataset's; grey images are replicated to 3)."),
    seed: int = typer.Option(None, "--seed", help="Training seed: init, data order. "
                             "Default 0."),
    device: Device = typer.Option(None, "--device", help="auto (CUDA if present), cpu or "
                                  "cuda."),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: on for "
                             "CUDA, bf16 where supported else fp16; off on CPU)."),
    workers: int = typer.Option(None, "--workers", help="Data-loading processes (default: 0 "
                                "on CPU, up to 8 on CUDA)."),
    eval_every: int = typer.Option(None, "--eval-every", help="Evaluate every N steps "
                                   "(default: once per epoch, and at the end)."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: "
                             "runs/<data>-<arch>-<YYYYmmdd-HHMMSS>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run "
                                   "folder."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic "
                                       "algorithms (no cuDNN autotuning); slower on GPU."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in RUN_DIR from "
                                "its last.pt."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (e.g. "
                                "RUN_DIR/config.yaml); flags win over its values."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout "
                                     "at the end."),
) -> None:
    """Train a model; writes config.yaml, env.json, metrics.jsonl and checkpoints/ to a run
    folder. Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel."""
    from transfusion_cli.data.build import parse_option_pairs
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.train import fit, resolve_config, resume_config
    from transfusion_cli.train.rundir import resolve_resume_dir

    flags = {
        "data": data, "arch": arch, "init": init,
        "weights": str(weights) if weights else None,
        "data_dir": str(data_dir) if data_dir else None,
        "options": parse_option_pairs(option) if option else None,
        "data_seed": data_seed, "skip_bad_images": skip_bad_images or None,
        "epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr,
        "optimizer": _value(optimizer), "scheduler": _value(scheduler),
        "weight_decay": weight_decay, "image_size": image_size, "train_size": train_size,
        "in_chans": in_chans, "seed": seed, "device": _value(device), "amp": amp,
        "workers": workers, "eval_every": eval_every, "out": str(out) if out else None,
        "overwrite": overwrite or None, "deterministic": deterministic or None,
    }
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; drop --config.")
        settings = resume_config(resolve_resume_dir(resume), flags)
    else:
        settings = resolve_config(config, flags)
    result = fit(settings)
    if not _is_main_process():
        return
    if json_output:
        print_json(result.to_dict())
    else:
        best = "n/a" if result.best_value is None else f"{result.best_value:.4f}"
        info(f"done in {result.wall_time_s:.1f} s ({result.images_per_s:.0f} train img/s): best "
             f"{result.best_metric} {best} at step {result.best_step}; run folder "
             f"{result.run_dir}")


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
