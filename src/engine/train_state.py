"""Epoch checkpoints for exact resume, ``best.ckpt`` for evaluation, and finding where to resume.

An epoch checkpoint ``<model>-<epoch>_<steps per epoch>.ckpt`` (``epoch`` = epochs completed, mindcv's
naming) holds the whole training state: the network weights under their official names, the AdamW
moments (``adam_m.*``, ``adam_v.*``) and step count, the EMA shadows (``ema.*``), the loss scale, and the
counters ``epoch_num``, ``step_num`` and ``best_top1``. ``best.ckpt`` holds only the weights that scored
the best validation top-1 (the EMA weights when EMA is on), plus ``epoch`` and ``top1``. Every file is
written by ``save_checkpoint_atomic`` (temp file, ``.sha256`` sidecar, rename), so a crash never leaves a
file that passes for complete; resume only considers files whose sidecar verifies. An epoch ends with its
``metrics.jsonl`` line, then ``best.ckpt``, then the epoch checkpoint (``commit_epoch``), and a run starts
by moving files that are not its own aside (``reconcile``): a kill at any point is recovered by resuming.
"""
import json
import logging
import os
import re
import shutil
import time

from ..checkpoint import CheckpointError, check_file, mismatch_report, read_checkpoint, save_checkpoint_atomic
from .curves import CURVES_NAME, METRICS_NAME, TENSORBOARD_DIR

__all__ = ["CheckpointManager", "BEST_NAME", "METRICS_NAME", "STATE_COUNTERS", "load_train_state"]

logger = logging.getLogger("snn_mlp")

BEST_NAME = "best.ckpt"
# Scalars stored beside the training state; the weights-only loader skips or returns them as metadata.
STATE_COUNTERS = ("epoch_num", "step_num", "best_top1", "best_epoch")
# Optional state: a run may switch EMA on or off between a save and a resume.
_OPTIONAL_PREFIXES = ("ema.",)
_OPTIONAL_NAMES = ("ema_updates",)


def _is_optional(name):
    return name.startswith(_OPTIONAL_PREFIXES) or name in _OPTIONAL_NAMES


class CheckpointManager:
    """The files of one run in ``directory``: epoch checkpoints (the newest ``keep_max`` kept), ``best.ckpt``
    and ``metrics.jsonl``. Only the ``writer`` (rank 0) changes anything on disk.

    Nothing of another run is ever deleted: ``reconcile`` moves it into a ``superseded-<time>-<why>/`` folder.
    """

    def __init__(self, directory, model_name, keep_max=5, writer=True):
        if keep_max < 1:
            raise ValueError(f"keep_checkpoint_max must be at least 1, got {keep_max}")
        self.directory = os.path.abspath(directory)
        self.model_name = model_name
        self.keep_max = keep_max
        self.writer = writer
        self.pattern = re.compile(rf"^{re.escape(model_name)}-(\d+)_(\d+)\.ckpt$")

    def epoch_path(self, epoch, steps_per_epoch):
        return os.path.join(self.directory, f"{self.model_name}-{epoch}_{steps_per_epoch}.ckpt")

    @property
    def best_path(self):
        return os.path.join(self.directory, BEST_NAME)

    @property
    def metrics_path(self):
        return os.path.join(self.directory, METRICS_NAME)

    def epoch_checkpoints(self):
        """``[(epoch, path)]`` of the epoch checkpoints on disk, newest first (complete or not)."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for entry in os.listdir(self.directory):
            match = self.pattern.match(entry)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, entry)))
        return sorted(found, reverse=True)

    def latest_complete(self):
        """The newest epoch checkpoint whose sidecar verifies, or None; broken ones are logged. A save killed
        between its two renames (sidecar still ``.pending``) is completed here when the pending hash matches."""
        for _, path in self.epoch_checkpoints():
            try:
                if check_file(path)[1] is None:  # completes a save killed between its renames (pending sidecar)
                    logger.warning("skipping %s for resume: it has no .sha256 sidecar (an interrupted save?)", path)
                    continue
                return path
            except CheckpointError as e:
                logger.warning("skipping %s for resume: %s", path, e)
        return None

    # ------------------------------------------------------------------ the start of a run

    def reconcile(self, resumed_epoch):
        """Make the folder hold only this run before it writes anything; returns ``(best_top1, best_epoch)``
        of the ``best.ckpt`` that stays (``(-1.0, -1)`` when none does).

        A fresh start (``resumed_epoch`` 0, also for a resume from another folder) moves every epoch
        checkpoint, ``best.ckpt``, ``metrics.jsonl``, ``config.yaml``, ``curves.png`` and ``tensorboard/`` of an
        earlier run aside; a resume
        after ``resumed_epoch`` epochs moves the epoch checkpoints and the ``best.ckpt`` of later epochs
        (another run's, or a save killed before its epoch checkpoint) and drops the later lines of
        ``metrics.jsonl`` (the whole file is kept aside). Moved files go into ``superseded-<time>-<why>/``,
        logged in one line; nothing is deleted.
        """
        if not self.writer:
            return -1.0, -1
        if os.path.exists(self.metrics_path + ".tmp"):
            os.remove(self.metrics_path + ".tmp")  # half of a rewrite that was killed; the old file is whole
        later = [path for epoch, path in self.epoch_checkpoints() if epoch > resumed_epoch]
        best_epoch, best_top1 = self._best_on_disk()
        moves = list(later)
        stale_best = resumed_epoch == 0 or best_epoch is None or best_epoch > resumed_epoch
        if os.path.exists(self.best_path) and stale_best:
            moves.append(self.best_path)
            best_epoch, best_top1 = None, None
        if resumed_epoch == 0:
            moves += [self.metrics_path] if os.path.exists(self.metrics_path) else []
            if moves:  # these go with the files they describe
                moves += [path for path in (os.path.join(self.directory, name)
                                            for name in ("config.yaml", CURVES_NAME, TENSORBOARD_DIR))
                          if os.path.exists(path)]
        records = self.read_metrics()
        kept = [r for r in records if r["epoch"] <= resumed_epoch]
        rewrite_metrics = resumed_epoch > 0 and len(kept) != len(records)
        if moves or rewrite_metrics:
            why = "earlier-run" if resumed_epoch == 0 else f"after-epoch-{resumed_epoch}"
            folder = os.path.join(self.directory, f"superseded-{time.strftime('%Y%m%d-%H%M%S')}-{why}")
            folder = _unused(folder)
            try:
                os.makedirs(folder)
                for path in moves:
                    for companion in (path, path + ".sha256", path + ".sha256.pending"):
                        if os.path.exists(companion):
                            os.replace(companion, os.path.join(folder, os.path.basename(companion)))
                if rewrite_metrics:
                    shutil.copy2(self.metrics_path, os.path.join(folder, METRICS_NAME))
            except OSError as e:
                raise CheckpointError(f"cannot move an earlier run's files into {folder}: {e.strerror or e}") from e
            if rewrite_metrics:
                self._write_metrics(kept)
            what = ("an earlier run's files" if resumed_epoch == 0 else
                    f"the files of epochs after {resumed_epoch} (another run's, or an unfinished save)")
            logger.warning("moved %s into %s (%s; nothing deleted)", what, folder,
                           ", ".join(os.path.basename(p) for p in moves) or "metrics.jsonl lines")
        if resumed_epoch:
            self._rotate(resumed_epoch)  # the rotation a save killed just before it would have done
        return (-1.0, -1) if best_epoch is None else (best_top1, best_epoch)

    def _best_on_disk(self):
        """``(epoch, top1)`` recorded in a ``best.ckpt`` that verifies, else ``(None, None)``."""
        if not os.path.exists(self.best_path):
            return None, None
        try:
            entries = read_checkpoint(self.best_path, choice_func=lambda name: name in ("epoch", "top1"))
            return int(entries["epoch"].asnumpy().item()), float(entries["top1"].asnumpy().item())
        except (CheckpointError, KeyError) as e:
            logger.warning("%s cannot be used as the best checkpoint: %s", self.best_path, e)
            return None, None

    # ------------------------------------------------------------------ the end of an epoch

    def commit_epoch(self, state, epoch, steps_per_epoch, counters, metrics, best=None):
        """Write what ``epoch`` leaves on disk, in the order that a kill between any two steps recovers from:
        its ``metrics.jsonl`` line (replacing any line of that epoch or later), then ``best.ckpt`` when
        ``best`` = ``(weights, top1, model_name)``, then the epoch checkpoint, whose counters name that best.
        A rerun resumes from the previous epoch checkpoint and rewrites the same line and files. Returns the
        path of the epoch checkpoint."""
        if self.writer:
            self.write_metrics_record(dict(metrics, epoch=epoch))
            if best is not None:
                self.save_best(best[0], epoch, best[1], best[2])
        return self.save_epoch(state, epoch, steps_per_epoch, counters)

    def save_epoch(self, state, epoch, steps_per_epoch, counters):
        """Save the training state after ``epoch`` epochs; keep the newest ``keep_max`` epoch checkpoints of
        epochs up to this one (later ones belong to no run that resumes here: ``reconcile`` moved them)."""
        path = self.epoch_path(epoch, steps_per_epoch)
        if not self.writer:
            return path
        save_checkpoint_atomic(state, path, append_dict=dict(counters))
        self._rotate(epoch)
        return path

    def _rotate(self, epoch):
        earlier = [old for old_epoch, old in self.epoch_checkpoints() if old_epoch <= epoch]
        for old in earlier[self.keep_max:]:
            # The sidecar first: a kill in between leaves a checkpoint the next rotation still sees.
            for stale in (old + ".sha256", old):
                if os.path.exists(stale):
                    os.remove(stale)

    def save_best(self, weights, epoch, top1, model_name):
        if self.writer:
            save_checkpoint_atomic(weights, self.best_path,
                                   append_dict={"epoch": int(epoch), "top1": float(top1), "model_name": model_name})
        return self.best_path

    # ------------------------------------------------------------------ metrics.jsonl

    def read_metrics(self):
        """The records of ``metrics.jsonl`` in epoch order; a torn or foreign line is skipped with a warning."""
        try:
            with open(self.metrics_path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                record["epoch"] = int(record["epoch"])
                records.append(record)
            except (ValueError, TypeError, KeyError):
                if line.strip():
                    logger.warning("%s line %d is not a metrics record: dropped", self.metrics_path, number)
        return sorted(records, key=lambda r: r["epoch"])

    def write_metrics_record(self, record):
        """Put ``record`` (with its ``epoch``) into ``metrics.jsonl`` after the records of earlier epochs; those
        of its epoch or later (a run resumed before them) are dropped, so each epoch appears once."""
        kept = [r for r in self.read_metrics() if r["epoch"] < record["epoch"]]
        self._write_metrics(kept + [record])

    def _write_metrics(self, records):
        # Rewritten whole through a temp file: a kill leaves the old file or the new one, never half a line.
        tmp = self.metrics_path + ".tmp"  # one writer per folder; a killed writer's is overwritten or cleared
        try:
            os.makedirs(self.directory, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.metrics_path)
        except OSError as e:
            raise CheckpointError(f"cannot write {self.metrics_path}: {e.strerror or e}") from e
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _unused(path):
    """``path``, or ``path-2``, ``path-3``... whichever does not exist yet."""
    candidate, n = path, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


def load_train_state(state, path, expected_sha256=None):
    """Assign the training state saved in ``path`` to the Parameters of ``state`` (``{name: Parameter}``).

    All or nothing: the file is verified, and every required parameter must be present with its shape
    before any is assigned. EMA shadows missing from the file start from the weights; extra ones are
    ignored. Returns the counters (``epoch_num``, ``step_num``, ...) as Python numbers.
    """
    entries = read_checkpoint(path, expected_sha256)
    missing = [n for n in state if n not in entries and not _is_optional(n)]
    unexpected = [n for n in entries if n not in state and n not in STATE_COUNTERS and not _is_optional(n)]
    mismatched = [f"{n} {tuple(entries[n].shape)} vs {tuple(p.shape)}" for n, p in state.items()
                  if n in entries and tuple(entries[n].shape) != tuple(p.shape)]
    counters_missing = [n for n in ("epoch_num", "step_num") if n not in entries]
    if missing or unexpected or mismatched or counters_missing:
        problems = []
        if counters_missing or any(n.startswith(("adam_m.", "adam_v.")) for n in missing):
            problems.append("it holds no optimizer state or step counters (a weights-only checkpoint such as "
                            "best.ckpt? start from it with --ckpt_path instead)")
        report = mismatch_report(("missing", missing), ("unexpected", unexpected),
                                 ("of another shape", mismatched, 2))
        raise CheckpointError(f"cannot resume from {path}: it does not fit this configuration: "
                              + "; ".join(problems + ([report] if report else [])))
    skipped_ema = [n for n in state if _is_optional(n) and n not in entries]
    if skipped_ema:
        logger.warning("%s has no EMA state: the EMA starts from the resumed weights", path)
        for name in skipped_ema:
            if name.startswith("ema."):
                state[name].set_data(entries[name[len("ema."):]].value().copy())
    for name, param in state.items():
        if name in entries:
            param.set_data(entries[name].value().astype(param.dtype))
    return {n: entries[n].asnumpy().item() for n in STATE_COUNTERS if n in entries}
