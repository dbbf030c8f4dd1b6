"""`fit`: resolve, build, train, evaluate, checkpoint; exact resume, DDP, Ctrl-C, bad losses."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfusion_cli.console import info as log
from transfusion_cli.console import warn
from transfusion_cli.data.bundles import DatasetInfo, dataset_labels, normalize
from transfusion_cli.errors import TrainingError
from transfusion_cli.io import append_jsonl
from transfusion_cli.models.runtime import Runtime, default_workers, make_runtime, resolve_device
from transfusion_cli.plugins import get
from transfusion_cli.registry import InitContext
from transfusion_cli.runfolder import RunFolder
from transfusion_cli.scores import compute_metrics, is_better, metric_values
from transfusion_cli.train import snapshots as ckpt
from transfusion_cli.train.choices import (
    resolve_augment,
    resolve_selection_metric,
    run_choices,
)
from transfusion_cli.train.config import (
    RESUMABLE_CHANGES,
    FitConfig,
    load_config_file,
    resume_config,
)
from transfusion_cli.train.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_buffers,
    broadcast_object,
    gather_arrays,
    setup_distributed,
    teardown_distributed,
)
from transfusion_cli.train.evaluation import loss_of, predict_logits, task_loss
from transfusion_cli.train.loaders import eval_loader, load_bundle, train_loader, training_split
from transfusion_cli.train.optim import make_optimizer, make_scheduler
from transfusion_cli.train.progress import Progress
from transfusion_cli.train.rundir import (
    check_run_dir,
    environment,
    prepare_run_dir,
    record_selection_check,
    resolve_resume_dir,
    truncate_metrics,
    write_config,
    write_environment,
    write_split,
)
from transfusion_cli.train.runlock import RunLock
from transfusion_cli.train.selection_check import (
    MAX_CI_WIDTH,
    MIN_CASES,
    ci_warning,
    selection_ci,
    small_split_warnings,
)
from transfusion_cli.train.state import seed_everything
from transfusion_cli.train.tracking import Tracker, check_tracker, open_tracker, scalars


@dataclass
class FitResult:
    """What a finished run reports (also the `--json` summary)."""

    run_dir: Path
    best_metric: str
    best_value: float | None
    best_step: int | None
    final_metrics: dict[str, Any]
    wall_time_s: float
    images_per_s: float
    steps: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        data = dataclasses.asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


class StopRequested(KeyboardInterrupt):
    """Raised between steps after SIGINT / SIGTERM, once last.pt can be saved consistently."""


class StopRequest:
    """SIGINT / SIGTERM set a flag that the loop checks between steps (a second Ctrl-C
    interrupts at once)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel."""
    return getattr(model, "module", model)


class Trainer:
    """One run: everything `fit` builds, and the loop."""

    def __init__(self, config: FitConfig, show_progress: bool = True):
        self.started = time.perf_counter()
        self.config = config
        device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.ctx: DistContext = setup_distributed(device.type)
        self.runtime: Runtime = make_runtime(device, config.amp, config.deterministic)
        self.show_progress = show_progress and self.ctx.is_main
        self.session_images, self.session_time = 0, 0.0
        self.saved_step = 0  # step of the last.pt on disk
        self.tracker: Tracker | None = None  # --log tensorboard|mlflow, rank 0 only
        self.lock: RunLock | None = None  # rank 0 holds the run folder for the whole fit
        # Validation outputs of the best checkpoint of this session (rank 0), for the
        # selection check at the end (train/selection_check.py).
        self.best_val: tuple[np.ndarray, np.ndarray] | None = None
        self.selection_warnings: list[str] = []

    # ----- setup -------------------------------------------------------------------------
    def build(self) -> None:
        """Dataset, model + init, loaders, then the run folder, optimizer and any resume state."""
        config, ctx = self.config, self.ctx
        seed_everything(config.seed)
        if ctx.enabled and not ctx.is_main:
            torch.distributed.barrier()  # rank 0 builds first (fills any cache alone)
        self.bundle = load_bundle(config)
        if ctx.enabled and ctx.is_main:
            torch.distributed.barrier()
        # best.pt is chosen by --selection-metric (saved resolved, so a resume keeps it); the
        # checkpoints' dataset info names the metric that chose them.
        self.dataset_selection = self.bundle.info.selection_metric
        config.selection_metric = resolve_selection_metric(config, self.bundle.info)
        self.info: DatasetInfo = dataclasses.replace(self.bundle.info,
                                                     selection_metric=config.selection_metric)
        self.in_chans = config.in_chans or self.info.channels
        if self.bundle.val is not None and len(self.bundle.val):
            self.selection_warnings = small_split_warnings(dataset_labels(self.bundle.val),
                                                           self.info)

        arch = get("architectures", config.arch)
        init_spec = get("inits", config.init_name)
        model = arch.build(num_classes=self.info.num_outputs, in_chans=self.in_chans)
        resuming = bool(config.resume) and RunFolder(config.resume).last.is_file()
        report = {} if resuming else init_spec.apply(model, InitContext(
            arch=arch, num_classes=self.info.num_outputs, in_chans=self.in_chans,
            seed=config.seed, argument=config.init_argument,
            weights=Path(config.weights) if config.weights else None,
            class_names=tuple(self.info.class_names)))
        self.init_entry = {"name": config.init_name, "argument": config.init_argument,
                           "report": ckpt.plain(report or {})}
        memory_format = torch.channels_last if self.runtime.channels_last else torch.preserve_format
        model.to(self.runtime.device, memory_format=memory_format)

        workers = config.workers if config.workers is not None else \
            default_workers(self.runtime.device)
        pin = self.runtime.device.type == "cuda"
        self.train_set = training_split(self.bundle, config)
        config.augment = resolve_augment(config)  # saved resolved: a resume augments the same
        self.loader, self.sampler = train_loader(self.train_set, config, ctx, workers, pin,
                                                 self.info.image_size)
        self.val_loader = eval_loader(self.bundle.val, config.batch_size, ctx, workers, pin)
        self.test_loader = self._test_loader(workers, pin)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.total_steps = config.steps or config.epochs * self.steps_per_epoch
        self.eval_every = config.eval_every or self.steps_per_epoch
        self.run = self._run_dir()  # only once data, model, init and loaders are valid

        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, self.total_steps)
        scaler = torch.amp.GradScaler(self.runtime.device.type) if self.runtime.needs_scaler \
            else None
        self.parts = ckpt.Trainables(model, optimizer, scheduler, scaler)
        self.state = ckpt.TrainState()
        if resuming:  # the checkpoint replaces the weights; the init is not run again
            self.state, self.init_entry = ckpt.restore(self.run.last, self.parts,
                                                       config.arch, self.info)
            self.saved_step = self.state.step
            scheduler.lr_lambdas[0].total_steps = self.total_steps if \
                config.scheduler == "cosine" else 0
            if ctx.is_main:
                truncate_metrics(self.run, self.state.step)
                self._record_resume()
        elif ctx.is_main:
            self._write_run_files()
        if ctx.is_main:
            self.tracker = open_tracker(config.log, self.run.root)
            if self.tracker is not None:
                self.tracker.log_params(config.to_dict())
        self.model: nn.Module = model
        if ctx.enabled:
            device_ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def unused_new_run(self) -> Path | None:
        """The run folder this fit created if it failed before finishing one step, else None."""
        run, state = getattr(self, "run", None), getattr(self, "state", None)
        if run is None or self.config.resume or not self.ctx.is_main:
            return None
        return run.root if state is None or state.step == 0 else None

    def _run_dir(self) -> RunFolder:
        """Rank 0 creates (or reopens) the run folder and tells the others where it is."""
        answer: tuple[str | None, str | None] = (None, None)
        if self.ctx.is_main:
            try:
                if self.config.resume:
                    root = resolve_resume_dir(self.config.resume)
                    self.lock = RunLock(root).acquire()
                else:
                    run, self.lock = prepare_run_dir(self.config)
                    root = run.root
                answer = (str(root), None)
            except Exception as exc:
                answer = (None, str(exc))
                if not self.ctx.enabled:
                    raise
        root, error = broadcast_object(self.ctx, answer)
        if error is not None:
            raise TrainingError(error) if self.ctx.is_main else SystemExit(1)
        return RunFolder(root)

    def _write_run_files(self) -> None:
        config_dict = self.config.to_dict()
        write_config(self.run, self.config)
        env = environment(self.config, self.runtime.device, self.ctx.world_size,
                          self.runtime.describe())
        env["choices"] = run_choices(self.config, self.parts.model, self.dataset_selection)
        env["selection_check"] = {"min_cases": MIN_CASES, "max_ci_width": MAX_CI_WIDTH,
                                  "warnings": list(self.selection_warnings)}
        write_environment(self.run, env)
        write_split(self.run, self.bundle.split_manifest)
        ckpt.save(ckpt.weights_checkpoint(self.parts.model, self.config.arch, self.info,
                                          self.in_chans, self.init_entry, config_dict),
                  self.run.init)
        self._save_last()

    def _record_resume(self) -> None:
        """config.yaml takes the plan this resume trains to (rerunning it trains what the run
        ends up as); env.json lists every resume: when, from which step, what changed."""
        saved = load_config_file(self.run.config)
        env = environment(self.config, self.runtime.device, self.ctx.world_size,
                          self.runtime.describe())
        env.update(from_step=self.state.step, total_steps=self.total_steps,
                   changed={k: {"before": saved.get(k), "now": getattr(self.config, k)}
                            for k in sorted(RESUMABLE_CHANGES - {"resume"})
                            if saved.get(k) != getattr(self.config, k)})
        write_environment(self.run, env)
        write_config(self.run, self.config)

    def _test_loader(self, workers: int, pin: bool):
        """The test split's loader when ``eval_test`` asks for test scores along training."""
        if not self.config.eval_test:
            return None
        test = self.bundle.test
        if test is None or len(test) == 0:
            if self.ctx.is_main:
                warn(f"--eval-test: {self.info.name} has no test split; scoring validation "
                     "only.")
            return None
        return eval_loader(test, self.config.batch_size, self.ctx, workers, pin)

    def _test_scores(self) -> dict[str, Any]:
        """``test/<metric>`` of the current weights on the test split (all ranks)."""
        logits, targets = predict_logits(unwrap(self.model), self.test_loader, self.info,
                                         self.runtime, self.in_chans)
        logits, targets = gather_arrays(self.ctx, logits), gather_arrays(self.ctx, targets)
        scores = metric_values(compute_metrics(logits, targets, self.info))
        scores["loss"] = loss_of(logits, targets, self.info.task)
        return {f"test/{key}": value for key, value in scores.items()}

    # ----- checkpoints ---------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any]:
        parts = dataclasses.replace(self.parts, model=unwrap(self.parts.model))
        return ckpt.training_checkpoint(parts, self.config.arch, self.info, self.in_chans,
                                        self.init_entry, self.state, self.steps_per_epoch,
                                        self.config.to_dict())

    def _save_last(self) -> None:
        if self.ctx.is_main:
            ckpt.save(self._checkpoint(), self.run.last)
        self.saved_step = self.state.step

    # ----- evaluation ----------------------------------------------------------------------
    def validate_and_save(self, train_loss: float, images_per_s: float) -> dict[str, Any]:
        """Metrics over the whole validation set (gathered across ranks), logged and saved."""
        model = unwrap(self.model)
        broadcast_buffers(self.ctx, model)
        logits, targets = predict_logits(model, self.val_loader, self.info, self.runtime,
                                         self.in_chans)
        logits, targets = gather_arrays(self.ctx, logits), gather_arrays(self.ctx, targets)
        if not np.isfinite(logits).all():
            raise TrainingError(
                f"Validation outputs became non-finite at step {self.state.step}; training "
                f"stopped. The last good checkpoint is {self.run.last} (step "
                f"{self.saved_step}). Lower --lr (now {self.config.lr:g}) or check the data.")
        metrics = compute_metrics(logits, targets, self.info)
        selection = self.info.selection_metric
        value = metrics.get(selection, float("nan"))
        record: dict[str, Any] = {
            "step": self.state.step,
            "epoch": round(self.state.step / self.steps_per_epoch, 4),
            "train_loss": train_loss,
            **metric_values(metrics),
            "val_loss": loss_of(logits, targets, self.info.task),
            "images_per_s": images_per_s,
            "val_examples": int(len(logits)),
        }
        if self.test_loader is not None:
            record.update(self._test_scores())
        for key in ("nan_reasons", "notes"):
            if metrics.get(key):
                record[key] = metrics[key]
        improved = is_better(value, self.state.best_value)
        if improved:
            self.state.best_value, self.state.best_step = float(value), self.state.step
            record["best"] = True
        self.state.last_record = record
        if self.ctx.is_main:
            append_jsonl(self.run.metrics, record)
            if self.tracker is not None:
                self.tracker.log_metrics(scalars(record), record["step"])
            if improved:  # best.pt before last.pt: a kill in between re-creates the same best
                ckpt.save(self._checkpoint(), self.run.best)
                self.best_val = (logits, targets)
            self._save_last()
        return record

    # ----- training --------------------------------------------------------------------------
    def train(self) -> FitResult:
        """Train from the current step to the end; evaluate every ``eval_every`` steps."""
        progress = Progress(self.total_steps, self.state.step, self.info.selection_metric,
                            self.show_progress)
        if self.show_progress:
            self._announce(progress)
        if self.ctx.is_main:
            for message in self.selection_warnings:
                warn(f"checkpoint selection: {message}")
        self.model.train()
        check_every = 1 if self.runtime.device.type == "cpu" else 10
        window: list[torch.Tensor] = []  # losses not yet checked
        interval_losses = self.state.interval_losses  # checked losses since the last evaluation
        interval_steps, tick = 0, time.perf_counter()
        try:
            with StopRequest() as stop:
                while self.state.step < self.total_steps:
                    epoch, start = divmod(self.state.step, self.steps_per_epoch)
                    self.sampler.set_position(epoch, start)
                    for images, targets in self.loader:
                        window.append(self._train_step(images, targets).detach())
                        self.state.step += 1
                        interval_steps += 1
                        step = self.state.step
                        evaluate_now = step % self.eval_every == 0 or step == self.total_steps
                        if evaluate_now or len(window) >= check_every:
                            losses, stop_now = self._check(window, stop, step)
                            interval_losses += losses
                            window = []
                            progress.step(step, interval_losses[-1])
                            if stop_now:
                                raise StopRequested
                        if evaluate_now:
                            rate = self._account(interval_steps, tick)
                            train_loss = float(np.mean(interval_losses))
                            interval_losses.clear()  # before validate_and_save() saves last.pt
                            record = self.validate_and_save(train_loss, rate)
                            progress.evaluation(record)
                            interval_steps = 0
                            tick = time.perf_counter()
                        if step >= self.total_steps:
                            break
        except StopRequested:
            progress.close()
            self._account(interval_steps, tick)
            self._save_last()
            if self.ctx.is_main:
                log(f"Interrupted at step {self.state.step}; saved {self.run.last}. "
                    f"Continue with: tfx fit --resume {self.run.root}")
            raise
        finally:
            progress.close()
            if self.tracker is not None:
                self.tracker.close()
        if self.ctx.is_main:
            self._check_selection()
        return self._result()

    def _check_selection(self) -> None:
        """At the end: the selection metric's bootstrap CI on validation for the best
        checkpoint of this session; warnings into env.json and best.pt's metrics."""
        if self.best_val is None:  # best found before a resume: checked back then
            return
        logits, targets = self.best_val
        ci = selection_ci(logits, targets, self.info)
        wide = ci_warning(ci, len(targets))
        warnings = [*self.selection_warnings, *([wide] if wide else [])]
        for message in warnings:
            warn(f"checkpoint selection: {message}")
        record_selection_check(self.run, ci, warnings)
        best = ckpt.load_checkpoint(self.run.best)
        best["metrics"] = {**(best.get("metrics") or {}), "selection_ci": ci,
                           "selection_warnings": warnings}
        ckpt.save(best, self.run.best)

    def _account(self, steps: int, since: float) -> float:
        """Add ``steps`` of training time to the counters; their images per second."""
        if self.runtime.device.type == "cuda":
            torch.cuda.synchronize(self.runtime.device)
        seconds = time.perf_counter() - since
        images = steps * self.config.batch_size * self.ctx.world_size
        self.state.images_seen += images
        self.state.train_time_s += seconds
        self.session_images += images
        self.session_time += seconds
        return images / seconds if seconds > 0 else 0.0

    def _train_step(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        runtime, parts = self.runtime, self.parts
        x = runtime.layout(normalize(runtime.to_device(images), self.info, self.in_chans))
        y = runtime.to_device(targets)
        with runtime.autocast():
            logits = self.model(x)
        loss = task_loss(logits, y, self.info.task)
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler is not None:
            parts.scaler.scale(loss).backward()
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
        else:
            loss.backward()
            parts.optimizer.step()
        parts.scheduler.step()
        return loss

    def _check(self, window: list[torch.Tensor], stop: StopRequest,
               step: int) -> tuple[list[float], bool]:
        """Losses of the window (mean over ranks) and whether any rank was asked to stop;
        a non-finite loss on any rank raises TrainingError."""
        losses = torch.stack(window).float()
        bad = (~torch.isfinite(losses)).float()
        flags = torch.cat([torch.nan_to_num(losses, nan=0.0, posinf=0.0, neginf=0.0), bad,
                           torch.tensor([float(stop.requested)], device=losses.device)])
        flags = all_reduce_sum(self.ctx, flags).cpu()
        n = len(window)
        summed, bad_counts, stop_count = flags[:n], flags[n:2 * n], float(flags[-1])
        if bad_counts.sum() > 0:
            first = step - n + 1 + int(torch.nonzero(bad_counts)[0])
            self._stop_diverged(first, "became non-finite")
        losses = (summed / self.ctx.world_size).tolist()
        if self.state.first_loss is None:
            self.state.first_loss = losses[0]
        bound = divergence_bound(self.state.first_loss, self.info)
        for offset, value in enumerate(losses):
            if value > bound:
                self._stop_diverged(step - n + 1 + offset,
                                    f"diverged ({value:.3g}, over {DIVERGENCE_FACTOR:g}x its "
                                    f"first value {self.state.first_loss:.3g})")
        return losses, stop_count > 0

    def _stop_diverged(self, step: int, what: str) -> None:
        """The one message for a loss that is not finite or has blown up, whatever optimiser."""
        raise TrainingError(
            f"Loss {what} at step {step}; training stopped. The last good checkpoint is "
            f"{self.run.last} (step {self.saved_step}). Lower --lr (now "
            f"{self.config.lr:g}) or check the data for broken images.")

    def _announce(self, progress: Progress) -> None:
        config, info = self.config, self.info
        action = f"resuming at step {self.state.step}" if self.state.step else "training"
        world = f" x {self.ctx.world_size} processes" if self.ctx.enabled else ""
        progress.message(
            f"tfx fit: {action} {config.arch} on {info.name} ({len(self.train_set)} train / "
            f"{len(self.bundle.val)} val images, {info.image_size} px, {info.task}) on "
            f"{self.runtime.describe()}{world}; {self.total_steps} steps "
            f"({self.total_steps / self.steps_per_epoch:.2f} epochs of {self.steps_per_epoch}), "
            f"batch {config.batch_size}, {config.scheduler} lr"
            f"{f' after {config.warmup_steps} warm-up steps' if config.warmup_steps else ''}, "
            f"augment {config.augment}, best.pt by validation {info.selection_metric} -> "
            f"{self.run.root}")

    def _result(self) -> FitResult:
        state = self.state
        rate = self.session_images / self.session_time if self.session_time > 0 else (
            state.images_seen / state.train_time_s if state.train_time_s > 0 else 0.0)
        return FitResult(
            run_dir=self.run.root,
            best_metric=self.info.selection_metric,
            best_value=state.best_value,
            best_step=state.best_step,
            final_metrics={k: v for k, v in state.last_record.items() if k != "best"},
            wall_time_s=time.perf_counter() - self.started,
            images_per_s=rate,
            steps=state.step,
        )


# A training loss this many times above max(first loss, chance-level loss) has diverged: an
# optimiser that still learns stays within a small multiple of where it started.
DIVERGENCE_FACTOR = 1e3


def divergence_bound(first_loss: float, info: DatasetInfo) -> float:
    """The loss above which training counts as diverged: DIVERGENCE_FACTOR times the larger of
    the first logged loss and the loss of a uniform guess (ln K classes; ln 2 per sigmoid)."""
    chance = math.log(len(info.class_names)) if info.task == "multiclass" else math.log(2)
    return DIVERGENCE_FACTOR * max(first_loss, chance)


def _resume_overrides(config: FitConfig) -> dict[str, Any]:
    """The resumable settings of ``config`` that differ from the defaults."""
    defaults = FitConfig()
    return {k: getattr(config, k) for k in RESUMABLE_CHANGES
            if getattr(config, k) != getattr(defaults, k) and k != "resume"}


def fit(config: FitConfig, show_progress: bool = True) -> FitResult:
    """Train one model as ``config`` says and write its run folder."""
    if config.resume and config.out != config.resume:
        config = resume_config(resolve_resume_dir(config.resume), _resume_overrides(config))
    check_tracker(config.log)  # a missing tracker package fails before any work
    if config.out and not config.resume and int(os.environ.get("RANK", "0")) == 0:
        check_run_dir(config)  # a refused or unusable --out fails before the data are built
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    trainer = Trainer(config, show_progress)
    unused_run: Path | None = None
    try:
        trainer.build()
        return trainer.train()
    except Exception:
        unused_run = trainer.unused_new_run()
        raise
    finally:
        if trainer.lock is not None:
            trainer.lock.release()
        if unused_run is not None:  # a new run that failed before its first step: no debris
            shutil.rmtree(unused_run, ignore_errors=True)
        teardown_distributed(trainer.ctx)
        torch.use_deterministic_algorithms(deterministic)  # --deterministic is per run
        torch.backends.cudnn.benchmark = benchmark

