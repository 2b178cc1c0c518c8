"""The training run: the epoch loop, learning rates per step, validation, checkpoints, resume and progress
logging, from the pieces of ``runtime`` (device, ranks, logger) and ``builders`` (data, network, train step).
``train(cfg)`` is what ``train.py`` calls.

The loop is written out (not ``Model.train``) so that the learning rates are computed on the host for every
step from the global step alone, a resume continues bit-for-bit on the same schedule, and the data order of
epoch ``e`` is fixed by ``seed + e`` whether or not the run was interrupted before it.
"""
import argparse
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

import mindspore as ms
from mindspore import Tensor, ops

from ..config import ConfigError, save_config
from .builders import build_dataset, build_network, build_train_step, load_initial_weights, resolve_dataset
from .train_state import CheckpointManager, load_train_state
from .curves import TrainingCurves
from .evaluate import evaluate
from .optim import LR_LIF, LR_MAIN
from .runtime import init_distributed, make_all_reduce, setup_context, setup_logging
from .schedule import CosineWarmupSchedule, scale_lr
from .step import GradientAccumulation

__all__ = ["train", "TrainingError"]

logger = logging.getLogger("snn_mlp")

_MAX_NONFINITE_WINDOWS = 3


class TrainingError(RuntimeError):
    """Training cannot go on (diverged); the message says what to change."""


def _format_seconds(seconds):
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class _WindowStats:
    steps: int
    applied: int  # steps whose update was applied (finite)
    loss: float  # mean over the applied steps
    grad_norm: float
    seconds: float


class _StepMeter:
    """Sums of the train step outputs kept on the device, so the host waits for it only at log lines."""

    def __init__(self):
        self.loss = self.grad_norm = self.applied = ops.zeros((), ms.float32)
        self.steps = 0
        self.start = time.time()

    def add(self, loss, grad_norm, finite):
        zero = ops.zeros((), ms.float32)
        self.loss = self.loss + ops.select(finite, loss, zero)  # select: a NaN times 0 would still be NaN
        self.grad_norm = self.grad_norm + ops.select(finite, grad_norm, zero)
        self.applied = self.applied + ops.cast(finite, ms.float32)
        self.steps += 1

    def read(self):
        applied = int(self.applied.asnumpy())
        mean = (lambda total: float(total.asnumpy()) / applied) if applied else (lambda total: float("nan"))
        return _WindowStats(self.steps, applied, mean(self.loss), mean(self.grad_norm),
                            max(time.time() - self.start, 1e-9))


class _Run:
    """State of one training run; ``fit()`` does the epochs."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.start_time = time.time()
        self.device_target = setup_context(cfg)
        self.rank, self.group_size = init_distributed()
        self.writer = self.rank == 0
        self.output_dir = os.path.abspath(os.path.expanduser(cfg.output_dir))
        setup_logging(None, self.rank)
        self.data_root = resolve_dataset(cfg)
        if self.writer:
            try:
                os.makedirs(self.output_dir, exist_ok=True)
            except OSError as e:  # a file of that name, no permission, a read-only disk
                raise ConfigError(f"output_dir {cfg.output_dir}: cannot use it as a folder "
                                  f"({'it is a file' if os.path.isfile(self.output_dir) else e.strerror or e})") from e
            setup_logging(self.output_dir, self.rank)
        self.val_data = build_dataset(cfg, self.data_root, False, self.rank, self.group_size, cfg.seed)
        self.steps_per_epoch = self._optimizer_steps_per_epoch(self._train_data(0).get_dataset_size())
        self.model, self.net = build_network(cfg, self.device_target, self.output_dir)
        self._build_optimization()
        self.checkpoints = CheckpointManager(self.output_dir, cfg.model, cfg.keep_checkpoint_max, self.writer)
        self.all_reduce = make_all_reduce(self.group_size)
        self.epoch, self.global_step, self.best_top1, self.best_epoch = 0, 0, -1.0, -1
        self.last_val = None

    def _train_data(self, epoch):
        # A fresh pipeline per epoch, seeded by the epoch: the data order of an epoch is the same whether the
        # run reached it directly or through a resume.
        return build_dataset(self.cfg, self.data_root, True, self.rank, self.group_size, self.cfg.seed + epoch)

    def _optimizer_steps_per_epoch(self, micro_batches):
        accumulation = self.cfg.accumulation_steps
        if micro_batches < accumulation:
            raise ConfigError(f"an epoch has {micro_batches} batches of {self.cfg.batch_size} per device, fewer than "
                              f"accumulation_steps {accumulation}: lower accumulation_steps or batch_size")
        if micro_batches % accumulation:
            logger.warning("%d batches per epoch are not a multiple of accumulation_steps %d: the last %d of each "
                           "epoch are left out (checkpoints fall on whole optimizer steps)", micro_batches,
                           accumulation, micro_batches % accumulation)
        return micro_batches // accumulation

    def _build_optimization(self):
        cfg = self.cfg
        # What one optimizer step sees, and so what the learning rates are scaled for.
        self.global_batch = cfg.batch_size * self.group_size * cfg.accumulation_steps
        scale = lambda lr: scale_lr(lr, self.global_batch, cfg.base_batch_size, cfg.lr_scale)
        total = cfg.epochs * self.steps_per_epoch
        self.schedule = CosineWarmupSchedule(scale(cfg.lr), scale(cfg.warmup_lr), scale(cfg.min_lr),
                                             cfg.warmup_epochs * self.steps_per_epoch, total)
        # As in the original: the LIF rate is not batch-scaled but follows the same warmup/cosine curve.
        self.lif_schedule = self.schedule.with_peak(cfg.lif_lr)
        self.train_step = build_train_step(cfg, self.model, self.net, self.group_size)
        self.groups, self.ema = self.train_step.optimizer.groups, self.train_step.ema
        self.optimizer_step = GradientAccumulation(self.train_step, cfg.accumulation_steps)

    def learning_rates(self, global_step, epoch):
        lrs = np.zeros(2, np.float32)
        lrs[LR_MAIN] = self.schedule(global_step)
        lrs[LR_LIF] = self.lif_schedule(global_step) if epoch >= self.cfg.lif_start_epoch else 0.0
        return lrs

    # ------------------------------------------------------------------ resume and checkpoints

    def restore(self):
        cfg = self.cfg
        path = cfg.resume
        if path is None and cfg.auto_resume:
            path = self.checkpoints.latest_complete()
            if path:
                logger.info("auto-resume: newest complete checkpoint is %s", path)
        if path is None:
            if cfg.ckpt_path:
                load_initial_weights(self.model, cfg.ckpt_path, cfg.ckpt_sha256)
            # A fresh start: an earlier run's files are moved aside, so neither rotation nor the next
            # auto-resume mixes them with this run's.
            self.checkpoints.reconcile(0)
            return
        counters = load_train_state(self.train_step.parameters_dict(), path)
        self.epoch = int(counters["epoch_num"])
        self.global_step = int(counters["step_num"])
        self.best_top1 = float(counters.get("best_top1", -1.0))
        self.best_epoch = int(counters.get("best_epoch", -1))
        if self.writer:
            # Resumed from a file of another folder, everything here is another run's. The best counters are
            # those of the best.ckpt that stays, the one a user gets.
            own = os.path.dirname(os.path.abspath(path)) == self.checkpoints.directory
            best = self.checkpoints.reconcile(self.epoch if own else 0)
            if best != (self.best_top1, self.best_epoch):
                held = "no best.ckpt of these epochs" if best[1] < 0 else "best.ckpt of %.2f%% (epoch %d)" % best
                logger.warning("%s names best top1 %.2f%% (epoch %d) but the folder holds %s: continuing from that",
                               path, self.best_top1, self.best_epoch, held)
                self.best_top1, self.best_epoch = best
        if self.global_step != self.epoch * self.steps_per_epoch:
            logger.warning("the checkpoint has %d steps for %d epochs but an epoch is now %d steps (batch size or "
                           "device count changed): continuing the schedule at step %d", self.global_step,
                           self.epoch, self.steps_per_epoch, self.epoch * self.steps_per_epoch)
            self.global_step = self.epoch * self.steps_per_epoch
        logger.info("resumed from %s: %d epochs done, global step %d, next lr %.3g, best top1 %.2f%%", path,
                    self.epoch, self.global_step, self.schedule(self.global_step), max(self.best_top1, 0.0))

    def save(self, val, metrics):
        """Commit the epoch just validated: its metrics line, ``best.ckpt`` when it is the best, the epoch
        checkpoint (in that order; see ``CheckpointManager.commit_epoch``). Returns (path, best)."""
        counters = {"epoch_num": self.epoch, "step_num": self.global_step, "best_top1": float(self.best_top1),
                    "best_epoch": self.best_epoch}
        best = None
        if self.best_epoch == self.epoch:
            weights = {p.name: (self.ema.shadows[i] if self.ema is not None else p)
                       for i, p in enumerate(self.model.trainable_params())}
            weights.update({p.name: p for p in self.model.untrainable_params()})
            best = (weights, val.top1, self.cfg.model)
        path = self.checkpoints.commit_epoch(self.train_step.parameters_dict(), self.epoch, self.steps_per_epoch,
                                             counters, metrics, best)
        return path, best is not None

    # ------------------------------------------------------------------ the loop

    def validate(self):
        if self.ema is not None:
            self.ema.swap()
        try:
            return evaluate(self.net, self.val_data, all_reduce=self.all_reduce)
        finally:
            if self.ema is not None:
                self.ema.swap()
            self.net.set_train(True)

    def _log_header(self):
        from ..snn_mlp import count_params

        cfg = self.cfg
        logger.info("SNN-MLP training: model %s, %.2f M parameters, %.1f M multiply-adds at %d px; device %s, mode "
                    "%s, %d device(s)", cfg.model, count_params(self.model) / 1e6,
                    self.model.flops(cfg.image_size) / 1e6, cfg.image_size,
                    self.device_target, cfg.mode, self.group_size)
        logger.info("data %s: %d optimizer steps/epoch of %d images (%d device(s) x %d per device x %d "
                    "micro-batch(es)); %d validation batches", self.data_root, self.steps_per_epoch,
                    self.global_batch, self.group_size, cfg.batch_size, cfg.accumulation_steps,
                    self.val_data.get_dataset_size())
        groups = ", ".join(f"{g.name} {len(g.params)} (wd {g.weight_decay:g})" for g in self.groups)
        scaling = (f"{cfg.lr:g} x global batch {self.global_batch} / {cfg.base_batch_size}"
                   if cfg.lr_scale == "linear" else "not scaled")
        logger.info("AdamW groups: %s; lr %.3g (%s; warmup %.3g over %d epochs, min %.3g), lif_lr %.3g from epoch "
                    "%d, clip %g, amp %s, loss scale %s %g%s", groups, self.schedule.peak_lr, scaling,
                    self.schedule.warmup_lr, cfg.warmup_epochs, self.schedule.min_lr, cfg.lif_lr,
                    cfg.lif_start_epoch, cfg.clip_grad, cfg.amp_level, cfg.loss_scale_type, cfg.loss_scale,
                    f", EMA {cfg.ema_decay}" if self.ema is not None else "")
        logger.info("output %s", self.output_dir)

    def train_epoch(self):
        """One epoch of steps with a log line every ``log_interval``; returns (mean loss, skipped steps, s)."""
        cfg = self.cfg
        self.net.set_train(True)
        steps = self.steps_per_epoch
        window, epoch_loss, epoch_applied, bad_windows = _StepMeter(), 0.0, 0, 0
        epoch_start = time.time()
        batches = self._train_data(self.epoch).create_tuple_iterator(num_epochs=1)
        for i in range(steps):
            micro_batches = [next(batches) for _ in range(cfg.accumulation_steps)]
            lrs = self.learning_rates(self.global_step, self.epoch)
            outputs = self.optimizer_step(micro_batches, Tensor(lrs))
            window.add(*outputs)
            self.global_step += 1
            self.curves.add_step(self.global_step, lrs[LR_MAIN], *outputs)
            if i == 0:
                first_step_end = time.time()
            if (i + 1) % cfg.log_interval and i + 1 != steps:
                continue
            stats = window.read()
            epoch_loss += stats.loss * stats.applied if stats.applied else 0.0
            epoch_applied += stats.applied
            now = time.time()
            # The first step of a run carries the graph compilation: leave it out of the ETA.
            step_time = (now - first_step_end) / i if i else now - epoch_start
            remaining = (steps - i - 1) + (cfg.epochs - self.epoch - 1) * steps
            eta = remaining * step_time + (cfg.epochs - self.epoch) * (self.last_val.seconds if self.last_val else 0)
            scale = float(self.train_step.loss_scale.asnumpy())
            images_per_s = stats.steps * self.global_batch / stats.seconds
            self.curves.flush_steps(images_per_s)
            logger.info("epoch %d/%d step %d/%d (global %d) loss %.4f grad_norm %.3f lr %.3g img/s %.1f eta %s%s%s",
                        self.epoch + 1, cfg.epochs, i + 1, steps, self.global_step, stats.loss, stats.grad_norm,
                        lrs[LR_MAIN], images_per_s, _format_seconds(eta),
                        f" skipped {stats.steps - stats.applied}" if stats.applied < stats.steps else "",
                        f" loss_scale {scale:g}" if cfg.loss_scale_type == "dynamic" else "")
            bad_windows = bad_windows + 1 if stats.applied == 0 else 0
            # A dynamic scale above 1 is still searching; otherwise nothing finite is coming back.
            if bad_windows >= _MAX_NONFINITE_WINDOWS and not (cfg.loss_scale_type == "dynamic" and scale > 1):
                raise TrainingError(f"the loss or gradients were not finite for the last {bad_windows} log intervals "
                                    f"up to global step {self.global_step} (lr {lrs[LR_MAIN]:.3g}): lower --lr, or "
                                    f"check the data")
            window = _StepMeter()
        batches.stop()  # the last micro-batches, too few for an optimizer step, are never read
        from ..dataset import unreadable_report

        unreadable_report("train")
        mean_loss = epoch_loss / epoch_applied if epoch_applied else float("nan")
        return mean_loss, steps - epoch_applied, time.time() - epoch_start

    def fit(self):
        cfg = self.cfg
        self._log_header()
        self.restore()
        # After restore: a fresh start has moved an earlier run's curves and events aside by now.
        self.curves = TrainingCurves(self.output_dir, cfg.tensorboard, self.writer, self.global_step + 1)
        if self.writer:
            # How this run started (resume, initial weights and their hash) would mislead eval.py, which reads
            # this file for the checkpoints beside it: those keys are left unset.
            saved = argparse.Namespace(**dict(vars(cfg), resume=None, ckpt_path=None, ckpt_sha256=None))
            save_config(saved, os.path.join(self.output_dir, "config.yaml"),
                        header=f"Effective configuration of the run in {self.output_dir} (eval.py reads it)")
        if self.epoch >= cfg.epochs:
            logger.info("already trained %d of %d epochs: nothing to do (best top1 %.2f%% at epoch %d)", self.epoch,
                        cfg.epochs, self.best_top1, self.best_epoch)
        while self.epoch < cfg.epochs:
            train_loss, skipped, train_time = self.train_epoch()
            val = self.validate()
            self.epoch += 1
            self.last_val = val
            if val.top1 > self.best_top1:
                self.best_top1, self.best_epoch = val.top1, self.epoch
            path, best = self.save(val, self._metrics(train_loss, skipped, train_time, val))
            logger.info("epoch %d/%d done: train loss %.4f (%.0fs%s), val top1 %.2f%% top5 %.2f%% loss %.4f on %d "
                        "images (%.0fs)%s; best %.2f%% (epoch %d); saved %s", self.epoch, cfg.epochs, train_loss,
                        train_time, f", {skipped} steps skipped" if skipped else "", val.top1, val.top5, val.loss,
                        val.num_images, val.seconds, f", {val.skipped} unreadable" if val.skipped else "",
                        self.best_top1, self.best_epoch, os.path.basename(path) + (" and best.ckpt" if best else ""))
            self.curves.after_epoch()  # metrics.jsonl has this epoch's record (written by save)
        self.curves.close()
        return self.summary()

    def _metrics(self, train_loss, skipped, train_time, val):
        """The ``metrics.jsonl`` record of the epoch just done."""
        return {"epoch": self.epoch, "global_step": self.global_step, "train_loss": train_loss,
                "skipped_steps": skipped, "train_seconds": round(train_time, 2),
                "lr": self.schedule(self.global_step - 1),
                "val_top1": val.top1, "val_top5": val.top5, "val_loss": val.loss, "val_images": val.num_images,
                "val_skipped": val.skipped}

    def summary(self):
        result = {"model": self.cfg.model, "rank": self.rank, "epochs": self.epoch, "global_step": self.global_step,
                  "best_top1": self.best_top1, "best_epoch": self.best_epoch,
                  "best_ckpt": self.checkpoints.best_path, "output_dir": self.output_dir,
                  "wall_seconds": round(time.time() - self.start_time, 1)}
        if self.last_val is not None:
            result.update(last_top1=self.last_val.top1, last_top5=self.last_val.top5, last_loss=self.last_val.loss,
                          val_images=self.last_val.num_images)
        return result


def train(cfg):
    """Train as configured by ``cfg`` (see ``src.config``); returns the summary dict of this rank."""
    return _Run(cfg).fit()
