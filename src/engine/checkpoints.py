"""Epoch checkpoints for exact resume, ``best.ckpt`` for evaluation, and finding where to resume.

An epoch checkpoint ``<model>-<epoch>_<steps per epoch>.ckpt`` (``epoch`` = epochs completed, mindcv's
naming) holds the whole training state: the network weights under their official names, the AdamW
moments (``adam_m.*``, ``adam_v.*``) and step count, the EMA shadows (``ema.*``), the loss scale, and the
counters ``epoch_num``, ``step_num`` and ``best_top1``. ``best.ckpt`` holds only the weights that scored
the best validation top-1 (the EMA weights when EMA is on), plus ``epoch`` and ``top1``. Every file is
written by ``save_checkpoint_atomic`` (temp file, ``.sha256`` sidecar, rename), so a crash never leaves a
file that passes for complete; resume only considers files whose sidecar verifies.
"""
import logging
import os
import re

from ..checkpoint import CheckpointError, read_checkpoint, read_sidecar, save_checkpoint_atomic, verify_file

__all__ = ["CheckpointManager", "BEST_NAME", "STATE_COUNTERS", "load_train_state"]

logger = logging.getLogger("snn_mlp")

BEST_NAME = "best.ckpt"
# Scalars stored beside the training state; the weights-only loader skips or returns them as metadata.
STATE_COUNTERS = ("epoch_num", "step_num", "best_top1", "best_epoch")
# Optional state: a run may switch EMA on or off between a save and a resume.
_OPTIONAL_PREFIXES = ("ema.",)
_OPTIONAL_NAMES = ("ema_updates",)


def _first(names, limit=4):
    names = list(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _is_optional(name):
    return name.startswith(_OPTIONAL_PREFIXES) or name in _OPTIONAL_NAMES


class CheckpointManager:
    """Saves into ``directory`` (only when ``writer``: rank 0) and keeps the newest ``keep_max`` epochs."""

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
        """The newest epoch checkpoint whose sidecar exists and verifies, or None; broken ones are logged."""
        for _, path in self.epoch_checkpoints():
            try:
                if read_sidecar(path) is None:
                    logger.warning("skipping %s for resume: it has no .sha256 sidecar (an interrupted save?)", path)
                    continue
                verify_file(path)
                return path
            except CheckpointError as e:
                logger.warning("skipping %s for resume: %s", path, e)
        return None

    def save_epoch(self, state, epoch, steps_per_epoch, counters):
        """Save the training state after ``epoch`` epochs; prune beyond ``keep_max``. Returns the path."""
        path = self.epoch_path(epoch, steps_per_epoch)
        if not self.writer:
            return path
        save_checkpoint_atomic(state, path, append_dict=dict(counters))
        for _, old in self.epoch_checkpoints()[self.keep_max:]:
            for stale in (old, old + ".sha256"):
                if os.path.exists(stale):
                    os.remove(stale)
        return path

    def save_best(self, weights, epoch, top1, model_name):
        if self.writer:
            save_checkpoint_atomic(weights, self.best_path,
                                   append_dict={"epoch": int(epoch), "top1": float(top1), "model_name": model_name})
        return self.best_path


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
        if missing:
            problems.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} of another shape ({_first(mismatched, 2)})")
        raise CheckpointError(f"cannot resume from {path}: it does not fit this configuration: "
                              + "; ".join(problems))
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
