"""`tfx fit`: train an architecture on a dataset into a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.fit_flags import with_fit_flags
from transfusion_cli.commands.options import json_option
from transfusion_cli.console import info, print_json

EXAMPLES = examples(
    "tfx fit --data synthetic-retina --arch cbr-tiny --epochs 2 -o runs/demo",
    "tfx fit --config runs/demo/config.yaml --init transfusion:2 --weights best.pt "
    "-o runs/transfusion")


@app.command("fit", epilog=EXAMPLES)
@with_fit_flags()
def fit_command(
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (e.g. "
                                "RUN_DIR/config.yaml); flags win over its values."),
    json_output: bool = json_option("Print one JSON summary on stdout at the end."),
    fit_flags: dict | None = None,
) -> None:
    """Train a model; writes config.yaml, env.json, metrics.jsonl and checkpoints/ to a run
    folder. Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel."""
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.train import fit, resolve_config, resume_config
    from transfusion_cli.train.rundir import resolve_resume_dir

    flags = dict(fit_flags or {})
    resume = flags.get("resume")
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; drop --config.")
        settings = resume_config(resolve_resume_dir(Path(resume)), flags)
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
