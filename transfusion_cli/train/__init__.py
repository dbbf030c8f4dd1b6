"""Training: ``fit(FitConfig) -> FitResult`` writes a run folder; ``evaluate`` scores a model."""

from transfusion_cli.train.config import FitConfig, load_config_file, resolve_config, resume_config
from transfusion_cli.train.evaluation import evaluate, predict_logits, task_loss
from transfusion_cli.train.loop import FitResult, fit

__all__ = ["FitConfig", "FitResult", "evaluate", "fit", "load_config_file", "predict_logits",
           "resolve_config", "resume_config", "task_loss"]
