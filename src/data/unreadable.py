"""Unreadable files: what makes one (decode errors, images above the decode bound), and the record of those
met by the loader threads, which ``unreadable_report()`` summarises at the end of an epoch or an
evaluation.
"""
import logging
import threading
from dataclasses import dataclass, field

from PIL import Image

from .layout import SPLITS

__all__ = ["ImageTooLarge", "MAX_DECODE_PIXELS", "DECODE_ERRORS", "UnreadableSummary", "record_unreadable",
           "unreadable_report"]

LOGGER = logging.getLogger("snn_mlp")

# Images with more pixels than this (8192 x 8192) are refused as unreadable instead of decoded (256 MiB).
MAX_DECODE_PIXELS = 1 << 26


class ImageTooLarge(ValueError):
    """An image whose header declares more than ``MAX_DECODE_PIXELS`` pixels."""


DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass
class UnreadableSummary:
    """Unreadable images skipped since the previous report: ``count`` events, distinct ``paths``."""
    count: int = 0
    paths: list = field(default_factory=list)

    def __str__(self):
        if not self.count:
            return "no unreadable images"
        return f"{self.count} unreadable images skipped: first paths {', '.join(self.paths[:5])}"


# Unreadable paths met by the loader threads since the last report, per split.
_UNREADABLE = {split: [] for split in SPLITS}
_UNREADABLE_LOCK = threading.Lock()


def record_unreadable(split, path):
    with _UNREADABLE_LOCK:
        _UNREADABLE[split].append(path)


def unreadable_report(split=None, log=True):
    """Summarise the unreadable images met since the previous call (for ``split``, or both splits).

    Call it at the end of each epoch and each evaluation; it logs
    ``"<split>: N unreadable images skipped: first paths ..."`` as a warning when N > 0.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    total = UnreadableSummary()
    for name in (SPLITS if split is None else (split,)):
        with _UNREADABLE_LOCK:
            events, _UNREADABLE[name] = _UNREADABLE[name], []
        summary = UnreadableSummary(len(events), list(dict.fromkeys(events)))
        if log and summary.count:
            LOGGER.warning("%s: %s", name, summary)
        total.count += summary.count
        total.paths += [p for p in summary.paths if p not in total.paths]
    return total
