"""Training curves: ``curves.png`` beside ``metrics.jsonl`` after every epoch, the same figure for several runs
(``scripts/plot_metrics.py``), and optionally TensorBoard event files.

The figure is drawn from ``metrics.jsonl`` alone (one JSON record per finished epoch, written by the trainer),
so a resumed run's picture holds its whole history. Records of epochs that a later record redoes (a resume
from an older checkpoint, a fresh start in the same folder) are replaced by the later ones.

TensorBoard (``--tensorboard true``) goes through ``tensorboardX`` into ``<output_dir>/tensorboard``: the epoch
scalars of the figure under ``epoch/``, and per optimizer step ``train/loss``, ``train/grad_norm`` (finite
steps only), ``train/lr`` and, once per log interval, ``train/images_per_s``. The per-step values stay on the
device until the trainer's next log line, so they cost no extra wait for it.
"""
import json
import logging
import math
import os

__all__ = ["MetricsError", "read_metrics", "plot_runs", "TrainingCurves", "CURVES_NAME", "METRICS_NAME",
           "TENSORBOARD_DIR"]

logger = logging.getLogger("snn_mlp")

METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
TENSORBOARD_DIR = "tensorboard"
# The record keys drawn, and written to TensorBoard under epoch/.
EPOCH_SCALARS = ("train_loss", "val_loss", "val_top1", "val_top5", "lr")


class MetricsError(ValueError):
    """A run folder without readable metrics; the message is one line."""


def read_metrics(run_dir):
    """The epoch records of ``run_dir/metrics.jsonl`` in epoch order, later records replacing the ones of the
    same or later epochs that came before them."""
    path = os.path.join(run_dir, METRICS_NAME)
    if not os.path.isdir(run_dir):
        raise MetricsError(f"{run_dir} is not a directory")
    if not os.path.isfile(path):
        raise MetricsError(f"{run_dir} has no {METRICS_NAME} (not a training output folder, or no epoch finished "
                           f"yet)")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                epoch = int(record["epoch"])
            except (ValueError, KeyError, TypeError) as e:
                raise MetricsError(f"{path} line {number} is not an epoch record ({type(e).__name__}: {e})") from None
            records = [r for r in records if r["epoch"] < epoch] + [dict(record, epoch=epoch)]
    if not records:
        raise MetricsError(f"{path} is empty (no epoch finished yet)")
    return records


def _values(records, key):
    """``(epochs, values)`` of the records that carry a finite ``key``."""
    pairs = [(r["epoch"], r[key]) for r in records
             if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_runs(runs, path, title=None):
    """Draw ``runs`` (``[(label, records)]``) into one PNG at ``path``: loss (train solid, validation dashed),
    validation top-1/top-5 and the learning rate, per epoch; written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    many = len(runs) > 1
    for index, (label, records) in enumerate(runs):
        color = colors[index % len(colors)]
        prefix = f"{label}: " if many else ""
        marker = "o" if len(records) <= 30 else None
        style = dict(color=color, marker=marker, markersize=4)
        # Training batches are augmented (mixup, label smoothing): their loss sits above the validation loss.
        ax_loss.plot(*_values(records, "train_loss"), "-", label=f"{prefix}train (augmented batches)", **style)
        ax_loss.plot(*_values(records, "val_loss"), "--", label=f"{prefix}validation", **style)
        epochs, top1 = _values(records, "val_top1")
        ax_acc.plot(epochs, top1, "-", label=f"{prefix}top-1", **style)
        ax_acc.plot(*_values(records, "val_top5"), ":", label=f"{prefix}top-5", **style)
        if top1:
            best = max(range(len(top1)), key=top1.__getitem__)
            ax_acc.plot(epochs[best], top1[best], "*", color=color, markersize=12)
            right_half = 2 * best >= len(top1)  # the label extends towards the middle, never off the axes
            ax_acc.annotate(f"best {top1[best]:.2f}% (epoch {epochs[best]})", (epochs[best], top1[best]),
                            textcoords="offset points", xytext=(-6 if right_half else 6, -16),
                            ha="right" if right_half else "left", fontsize=8, color=color)
        ax_lr.plot(*_values(records, "lr"), "-", label=f"{prefix}lr" if many else None, **style)
    for ax, heading, ylabel in ((ax_loss, "loss (cross entropy)", "loss"),
                                (ax_acc, "validation accuracy", "accuracy %"),
                                (ax_lr, "learning rate (last step of the epoch)", "lr")):
        ax.set_title(heading)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    tmp = f"{path}.{os.getpid()}.tmp.png"
    try:
        fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path


def _tensorboard_writer(directory, first_step):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise MetricsError("--tensorboard true needs the tensorboardX package: pip install tensorboardX "
                           "(or run with --tensorboard false)") from None
    # A resumed run rewrites its steps from first_step on: events a killed run wrote past its checkpoint go.
    return SummaryWriter(directory, purge_step=first_step if first_step > 1 else None)


class TrainingCurves:
    """What the trainer calls: ``add_step`` after each optimizer step, ``flush_steps`` at each log line,
    ``after_epoch`` once the epoch's record is in ``metrics.jsonl``. Does nothing on other ranks than 0
    (``writer=False``); without ``tensorboard`` only ``after_epoch`` does something (the PNG)."""

    def __init__(self, output_dir, tensorboard=False, writer=True, first_step=1):
        self.output_dir = output_dir
        self.writer = writer
        self.board = (_tensorboard_writer(os.path.join(output_dir, TENSORBOARD_DIR), first_step)
                      if tensorboard and writer else None)
        self.pending = []

    def add_step(self, global_step, lr, loss, grad_norm, finite):
        """One optimizer step (1-based ``global_step``); the tensors are read at ``flush_steps``."""
        if self.board is not None:
            self.pending.append((global_step, float(lr), loss, grad_norm, finite))

    def flush_steps(self, images_per_s):
        if self.board is None:
            return
        for global_step, lr, loss, grad_norm, finite in self.pending:
            self.board.add_scalar("train/lr", lr, global_step)
            if bool(finite.asnumpy()):
                self.board.add_scalar("train/loss", float(loss.asnumpy()), global_step)
                self.board.add_scalar("train/grad_norm", float(grad_norm.asnumpy()), global_step)
        if self.pending:
            self.board.add_scalar("train/images_per_s", images_per_s, self.pending[-1][0])
        self.pending = []
        self.board.flush()

    def after_epoch(self):
        """Redraw ``curves.png`` from ``metrics.jsonl``; send the newest epoch's scalars to TensorBoard. A figure
        that cannot be drawn is a warning, never the end of the training."""
        if not self.writer:
            return
        try:
            records = read_metrics(self.output_dir)
        except MetricsError as e:
            logger.warning("%s not updated: %s", CURVES_NAME, e)
            return
        try:
            best = max((r.get("val_top1", float("nan")) for r in records), default=float("nan"))
            plot_runs([(os.path.basename(self.output_dir), records)], os.path.join(self.output_dir, CURVES_NAME),
                      title=f"{os.path.basename(self.output_dir)}: {len(records)} epoch(s), best top-1 {best:.2f}%")
        except Exception as e:  # matplotlib missing or failing must not stop a run, nor its TensorBoard scalars
            logger.warning("%s not updated: %s", CURVES_NAME, " ".join(str(e).split()))
        if self.board is not None:
            last = records[-1]
            for key in EPOCH_SCALARS:
                if isinstance(last.get(key), (int, float)):
                    self.board.add_scalar(f"epoch/{key}", last[key], last["epoch"])
            self.board.flush()

    def close(self):
        if self.board is not None:
            self.board.close()
