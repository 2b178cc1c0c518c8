"""The embedded default data set: scikit-learn's handwritten digits as a small ImageFolder.

``sklearn.datasets.load_digits`` ships 1,797 8x8 scans (10 classes) inside the package, so training and
evaluation run without any download. They are exported once as ``train/<digit>/<index>.png`` and
``val/<digit>/<index>.png`` (RGB, upscaled to 32x32 with a bicubic resample, bright ink on black) with a
fixed stratified 80/20 split (``random_state=0``: 1,437 train, 360 val), so the ImageNet pipeline of
``src.dataset`` reads them unchanged. ``<index>`` is the sample's index in ``load_digits``.

The export is atomic: it is written to a temporary sibling folder, completed with a marker file holding
the per-class counts, then renamed into place, so concurrent processes (msrun ranks, parallel tests) see
either no folder or a complete one. A folder whose marker or counts do not match is exported again.
"""
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

__all__ = ["prepare_default_data", "default_data_root", "DIGITS_IMAGE_SIZE", "DIGITS_NUM_CLASSES", "MARKER"]

LOGGER = logging.getLogger("snn_mlp")

DIGITS_IMAGE_SIZE = 32
DIGITS_NUM_CLASSES = 10
VAL_FRACTION = 0.2
SPLIT_SEED = 0
MARKER = "digits_export.json"
_FORMAT = 1  # bump when the exported images change, so old exports are replaced
_TMP_PREFIX = ".digits-export-"
_STALE_TMP_SECONDS = 3600  # temp folders of crashed exports older than this are removed


def default_data_root():
    """``$SNNMLP_HOME/data/digits``, else ``~/.cache/snn_mlp/data/digits``."""
    home = os.environ.get("SNNMLP_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "snn_mlp")
    return os.path.join(home, "data", "digits")


def _split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    targets = load_digits().target
    train_idx, val_idx = train_test_split(np.arange(len(targets)), test_size=VAL_FRACTION, stratify=targets,
                                          random_state=SPLIT_SEED)
    return np.sort(train_idx), np.sort(val_idx), targets


def _counts_on_disk(root):
    counts = {}
    for split in ("train", "val"):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            return None
        counts[split] = {name: sum(1 for f in os.listdir(os.path.join(split_dir, name)) if f.endswith(".png"))
                         for name in sorted(os.listdir(split_dir))
                         if os.path.isdir(os.path.join(split_dir, name))}
    return counts


def _is_complete(root):
    try:
        with open(os.path.join(root, MARKER)) as marker_file:
            marker = json.load(marker_file)
    except (OSError, ValueError):
        return False
    return (isinstance(marker, dict) and marker.get("format") == _FORMAT
            and marker.get("counts") == _counts_on_disk(root))


def _export(target):
    """Write the whole ImageFolder and its marker into ``target`` (an empty folder)."""
    from sklearn.datasets import load_digits

    images = load_digits().images  # (1797, 8, 8), ink intensity 0..16
    train_idx, val_idx, targets = _split()
    counts = {}
    for split, indices in (("train", train_idx), ("val", val_idx)):
        counts[split] = {str(c): 0 for c in range(DIGITS_NUM_CLASSES)}
        for c in range(DIGITS_NUM_CLASSES):
            os.makedirs(os.path.join(target, split, str(c)))
        for index in indices:
            gray = np.clip(np.rint(images[index] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            img = Image.fromarray(gray, mode="L").resize((DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE),
                                                         Image.Resampling.BICUBIC)
            label = str(int(targets[index]))
            img.convert("RGB").save(os.path.join(target, split, label, f"{index:04d}.png"))
            counts[split][label] += 1
    marker = {"format": _FORMAT, "source": "sklearn.datasets.load_digits",
              "image_size": DIGITS_IMAGE_SIZE, "split": f"stratified, val {VAL_FRACTION}, random_state={SPLIT_SEED}",
              "counts": counts}
    with open(os.path.join(target, MARKER), "w") as marker_file:
        json.dump(marker, marker_file, indent=1, sort_keys=True)


def _remove_stale_temps(parent):
    now = time.time()
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.startswith(_TMP_PREFIX) and os.path.isdir(path):
            try:
                if now - os.path.getmtime(path) > _STALE_TMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass  # another process removed it first


def prepare_default_data(root=None):
    """Export the digits ImageFolder to ``root`` (default ``default_data_root()``) unless a complete
    export is already there; returns the absolute root, which holds ``train/`` and ``val/``."""
    root = os.path.abspath(os.path.expanduser(str(root))) if root else default_data_root()
    if _is_complete(root):
        return root
    parent = os.path.dirname(root)
    try:
        os.makedirs(parent, exist_ok=True)
        _remove_stale_temps(parent)
        tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=parent)
    except OSError as error:
        raise ValueError(f"cannot create the default data folder {root}: {error} "
                         f"(set SNNMLP_HOME or pass another root)") from None
    try:
        LOGGER.info("exporting scikit-learn digits to %s", root)
        _export(tmp)
        # A folder that is there but incomplete (failed check above) is moved aside first; a rename
        # never exposes a partly written tree.
        if os.path.exists(root) and not _is_complete(root):
            trash = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=parent)
            try:
                os.replace(root, os.path.join(trash, "old"))
            except FileNotFoundError:
                pass  # another process moved it already
            LOGGER.warning("replaced the incomplete export at %s", root)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process renamed its complete export into place first: use that one.
            if not _is_complete(root):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOGGER.info("digits ready at %s", root)
    return root
