"""Build a Lightning Trainer from a config and run stage 1 (train) or stage 2 (finetune)."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mal.models import build_model
from mal.training.config import DEFAULTS, ConfigError, save_config
from mal.models.store import load_model  # the one loader: checkpoints, model files, public names
from mal.util.files import atomic_path
from mal.util.progress import Progress
from mal.util.threads import default_threads
from mal.training.datamodule import EnhancementData
from mal.training.task import EnhancementTask, check_variant


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a hidden temporary file beside the target, then renamed over it.

    Lightning's own save goes through an fsspec transaction whose temporary file lives in the
    system temp folder: across file systems the final move is a copy, so a kill during it
    leaves a truncated ``last.ckpt`` (and the temporary file behind). ``os.replace`` in the
    same folder is atomic: a reader sees the old checkpoint or the new one, never a mix.
    Checkpoints holding non-finite weights are refused, so a diverged run never replaces
    the last good one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        bad = [k for k, v in checkpoint.get("state_dict", {}).items()
               if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise RuntimeError(f"{path}: not written, non-finite weights in {bad[0]} ({len(bad)} tensor(s))")
        with atomic_path(path, fsync=True) as tmp:
            torch.save(checkpoint, tmp)


def _remove_stale_parts(ckpt_dir: Path) -> None:
    """Temporary checkpoint files left by a run killed while saving (never read: drop them)."""
    if _is_main_process():
        for part in ckpt_dir.glob(".*.ckpt.*.part"):
            part.unlink(missing_ok=True)


def _is_main_process() -> bool:
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning deletes metrics.csv here; a resumed run appends to it, under its header.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class AppendingCSVLogger(CSVLogger):
    """CSVLogger that keeps ``metrics.csv`` across ``--resume`` (Lightning's deletes it)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class _FirstStep(Callback):
    """Notes when training has begun: a failure before that is a failed start."""

    started = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.started = True


@contextlib.contextmanager
def _clean_up_failed_start(cfg: dict) -> Iterator[_FirstStep]:
    """Delete what a run wrote (config.yaml, split.json, folders) when it fails before its first step."""
    out = Path(cfg["output_dir"])
    split = Path(cfg["data"]["split_file"] or out / "split.json")
    before = _paths(out) | _paths(split)
    first_step = _FirstStep()
    try:
        yield first_step
    except BaseException:
        if not first_step.started and _is_main_process():
            for path in sorted((_paths(out) | _paths(split)) - before, key=lambda p: len(p.parts), reverse=True):
                if path.is_dir() and not path.is_symlink():
                    with contextlib.suppress(OSError):
                        path.rmdir()  # only when empty
                else:
                    path.unlink(missing_ok=True)
        raise


def _paths(path: Path) -> set[Path]:
    """``path`` and everything under it that exists now."""
    if not path.exists():
        return set()
    return {path, *path.rglob("*")} if path.is_dir() else {path}


class _LightningTips(logging.Filter):
    """Drops Lightning's lines that tell a mal user nothing: '💡 Tip: ... try installing ...'
    advertisements, 'GPU available: False, used: False' and its TPU/HPU siblings (the config
    says the accelerator), 'Loading `train_dataloader` to estimate number of stepping batches'."""

    NOISE = ("💡", "GPU available:", "TPU available:", "HPU available:", "IPU available:",
             "Loading `train_dataloader` to estimate", "`Trainer.fit` stopped: `max_epochs")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


def _quiet_lightning() -> None:
    """Silence what Lightning and torch print that tells a mal user nothing (docs/robustness.md)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _LightningTips) for f in logger.filters):
        logger.addFilter(_LightningTips())
    # Lightning's pytree helper still builds torch's deprecated LeafSpec
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # the MAL-encoder snapshot and a frozen encoder are in eval mode on purpose (_describe says so once)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
    # a short run (fewer batches than trainer.log_every_n_steps) still logs every epoch's values
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")


def _describe(task: EnhancementTask) -> None:
    """One line on what trains, in place of Lightning's summary table (whose FLOPs column is always 0)."""
    if not _is_main_process():
        return
    total = sum(p.numel() for p in task.model.parameters())
    trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    line = f"model: {type(task.model).__name__}, {total:,} parameters ({trainable:,} trained)"
    if task.mal_loss is not None:
        line += ("; the MAL-encoder is a frozen snapshot of the encoder (eval mode, no gradients into it, on purpose), "
                 + ("re-taken every epoch" if task.refresh_each_epoch else "taken once from the stage-1 weights"))
    if task.freeze_encoder:
        line += "; the model's own encoder is frozen (eval mode)"
    print(line, file=sys.stderr)


class _EpochLines(Callback):
    """Plain lines for logs and pipes (a progress bar there is one endless line): inside an
    epoch ``epoch e/E: done/total batches, rate, ETA`` every ``every_seconds``, as
    ``mal enhance`` prints, then one line per epoch with its losses."""

    every_seconds = 10.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()
        self._progress = None
        total = trainer.num_training_batches
        if _is_main_process() and isinstance(total, int) and total > 0:
            self._progress = Progress(total, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", unit="batch",
                                      stream=sys.stderr, every_seconds=self.every_seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if getattr(self, "_progress", None) is not None and self._progress.done < self._progress.total:
            self._progress.update()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # after the epoch's validation
        if not _is_main_process():
            return
        shown = ("train/loss_epoch", "val/loss", "val/si_sdr")
        metrics = trainer.callback_metrics
        values = ", ".join(f"{k.removesuffix('_epoch')} {float(metrics[k]):.3f}" for k in shown if k in metrics)
        seconds = time.monotonic() - getattr(self, "_start", time.monotonic())
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {values} ({seconds:.1f} s)", file=sys.stderr,
              flush=True)


def _trainer(cfg: dict, callbacks: tuple[Callback, ...] = ()) -> L.Trainer:
    t, out = cfg["trainer"], Path(cfg["output_dir"])
    ckpt_dir = out / "checkpoints"
    _remove_stale_parts(ckpt_dir)
    _quiet_lightning()
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor=cfg["finetune"]["select_by"], mode=cfg["finetune"]["select_mode"],
        save_top_k=1, save_last=True, enable_version_counter=False,
    )
    if t["progress_bar"] and not sys.stderr.isatty():
        callbacks = (*callbacks, _EpochLines())
    try:
        return _build_trainer(cfg, [checkpoint, LearningRateMonitor(logging_interval="step"), *callbacks])
    except MisconfigurationException as err:  # e.g. --accelerator gpu on a machine without one
        message = str(err).strip().splitlines()[0]
        words = {"accelerator": ("accelerator", "gpu", "cuda", "mps", "tpu", "backend"), "strategy": ("strategy",),
                 "devices": ("devices",), "precision": ("precision",)}
        key = next((k for k, found in words.items() if any(w in message.lower() for w in found)), None)
        advice = "; use --accelerator cpu (or auto)" if key == "accelerator" else ""
        raise ConfigError(f"trainer.{key}={t[key]}: {message}{advice}" if key else f"trainer: {message}") from None


def _build_trainer(cfg: dict, callbacks: list[Callback]) -> L.Trainer:
    t, out = cfg["trainer"], Path(cfg["output_dir"])
    return L.Trainer(
        default_root_dir=out,
        max_epochs=t["max_epochs"],
        max_time=t["max_time"],
        accelerator=t["accelerator"],
        devices=t["devices"],
        num_nodes=t["num_nodes"],
        strategy=t["strategy"],
        precision=t["precision"],
        log_every_n_steps=t["log_every_n_steps"],
        limit_train_batches=t["limit_train_batches"],
        limit_val_batches=t["limit_val_batches"],
        gradient_clip_val=cfg["optim"]["grad_clip"] or None,
        callbacks=callbacks,
        enable_model_summary=False,  # replaced by _describe's one line
        plugins=[AtomicCheckpointIO()],
        logger=AppendingCSVLogger(out, name="", version=""),
        enable_progress_bar=t["progress_bar"] and sys.stderr.isatty(),  # off a terminal: _EpochLines
        reload_dataloaders_every_n_epochs=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def _prepare(cfg: dict) -> None:
    # torch's own default is every core of the machine, data workers or not (issue 29)
    torch.set_num_threads(int(cfg["trainer"]["threads"] or default_threads(cfg["data"]["num_workers"])))
    L.seed_everything(cfg["seed"], workers=True, verbose=False)


def _save_config(cfg: dict) -> None:
    if _is_main_process():
        save_config(cfg, Path(cfg["output_dir"]) / "config.yaml")


def _resume_path(cfg: dict, resume: bool) -> str | None:
    if not resume:
        return None
    last = Path(cfg["output_dir"]) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"{last}: no checkpoint to resume from")
    return str(last)


def train(cfg: dict, resume: bool = False, quality_scorer=None) -> Path:
    """Stage 1: train ``cfg['model']`` with L_df. Returns the checkpoint folder.

    A run that fails before its first step leaves nothing behind (no config.yaml, no split.json).
    ``quality_scorer`` rates clean files for the gate of ``data.quality``
    (:func:`mal.evaluation.quality.clean_scorer`).
    """
    check_variant(cfg["finetune"]["variant"])
    with _clean_up_failed_start(cfg) as first_step:
        resume_path = _resume_path(cfg, resume)
        data = EnhancementData(cfg, quality_scorer)
        data.setup()  # fail on bad data paths before the model is built
        _prepare(cfg)  # seeds first: the initial weights must depend on cfg["seed"] only
        task = EnhancementTask(cfg)
        trainer = _trainer(cfg, (first_step,))  # after every check of ours: Lightning starts logging here
        _save_config(cfg)
        _describe(task)
        trainer.fit(task, datamodule=data, ckpt_path=resume_path)
    return Path(cfg["output_dir"]) / "checkpoints"


def _from_source(cfg: dict, stage1, start) -> dict:
    """``cfg`` saying what is fine-tuned: ``model`` = the source's architecture, ``finetune.from``
    = the source. A ``model`` section that asks for another architecture cannot apply (the
    architecture and weights come from the source): a ConfigError naming the keys."""
    source = start.config_dict()
    if cfg["model"] != DEFAULTS["model"]:
        wanted = build_model(cfg["model"]).config_dict()
        differ = sorted(k for k in set(wanted) | set(source) if wanted.get(k) != source.get(k))
        if differ:
            shown = ", ".join(f"model.{k}={wanted.get(k)!r} (the source has {source.get(k)!r})" for k in differ[:3])
            raise ConfigError(f"{shown}: cannot apply with --from {stage1}; the architecture comes from the model "
                              "fine-tuned: drop the model settings, or train a new model with mal train")
    return {**cfg, "model": source, "finetune": {**cfg["finetune"], "from": str(stage1)}}


def finetune(cfg: dict, stage1: str | os.PathLike, resume: bool = False, quality_scorer=None) -> Path:
    """Stage 2: continue from a stage-1 model with ``cfg['finetune']['variant']``.

    ``stage1`` is anything :func:`mal.models.store.load_model` takes: a checkpoint, a model file,
    or a public model name (``deepfilternet3``).

    The MAL-encoder snapshot is taken from the stage-1 weights; on ``--resume`` Lightning
    restores the saved snapshot with the rest of the state, so the same loss continues.
    """
    check_variant(cfg["finetune"]["variant"])

    start = load_model(stage1)
    cfg = _from_source(cfg, stage1, start)
    if cfg["data"]["sample_rate"] != start.sample_rate:  # e.g. 16 kHz speech, a 48 kHz public model
        print(f"finetune: mixing training audio at the model's rate, {start.sample_rate} Hz "
              f"(data.sample_rate was {cfg['data']['sample_rate']})")
        cfg = {**cfg, "data": {**cfg["data"], "sample_rate": start.sample_rate}}
    with _clean_up_failed_start(cfg) as first_step:
        resume_path = _resume_path(cfg, resume)
        data = EnhancementData(cfg, quality_scorer)
        data.setup()
        _prepare(cfg)  # seeds first, as in train()
        task = EnhancementTask(cfg, model_spec=start.config_dict())
        task.model.load_state_dict(start.state_dict())
        task.take_snapshot()  # MAL-encoder = the stage-1 encoder
        trainer = _trainer(cfg, (first_step,))
        _save_config(cfg)
        _describe(task)
        trainer.fit(task, datamodule=data, ckpt_path=resume_path)
    return Path(cfg["output_dir"]) / "checkpoints"
