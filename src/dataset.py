"""ImageNet-style ImageFolder pipeline for SNN-MLP: transforms, mixup/cutmix, sharding, unreadable files.

Layout: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>``. Class indices follow the
sorted folder names and images the sorted relative paths, as torchvision's ImageFolder does, so labels
match checkpoints trained with the PyTorch original.

The training recipe is the one of the original (timm ``create_transform`` with the Swin/SNN-MLP config):
random resized crop (bicubic, scale (0.08, 1)), horizontal flip, RandAugment ``rand-m9-mstd0.5-inc1``,
normalisation, random erasing 0.25 with per-pixel normal noise, then batch-wise Mixup 0.8 / CutMix 1.0
with label smoothing 0.1. As in timm, colour jitter only applies when ``auto_augment`` is off.
Evaluation resizes the shorter side to ``int(image_size / crop_pct)`` (bicubic), centre-crops and
normalises.

How it is built, and why:

* The file list is scanned here rather than by ``ImageFolderDataset``, because reporting an unreadable
  file by its path, sharding and counting all need it.
* A sampler yields keys ``epoch * num_images + index``. Every random choice made for a sample is drawn
  from a generator seeded by ``(seed, key)``, and mixup's from ``(seed, first key of the batch)``, so a
  batch depends on the seed alone, not on worker count or scheduling.
* Reading, decoding, cropping and the PIL augmentations run in the ``GeneratorDataset`` source, in
  worker threads: Pillow releases the GIL while it decodes and resamples, and a thread hands a sample over
  without pickling it (worker processes were slower than one worker on 2 cores). ``num_workers=None``
  times a few samples in 1 thread and in ``default_num_workers()`` threads and keeps the faster.
* Decoding is lazy: the random-resized-crop box is drawn from the header's size, a JPEG is decoded at
  1/2..1/8 scale (libjpeg DCT scaling) when the box stays at least the output size at that scale, and the
  box is resampled to the output in one step; evaluation likewise resamples the source region of its
  centre crop once instead of resizing the whole image then cropping. Images above ``2**26`` pixels are
  refused as unreadable, so no file can make the loader allocate more than that.
* Normalisation, HWC->CHW, random erasing and mixup/cutmix run per batch in one numpy pass, in place
  (timm's order: erasing on the normalised sample, then mixing).
* The scan follows symlinked folders but lists every folder and file once (cycles and second paths are
  skipped with a warning); a class folder without images is an error in ``train/``, a warning in ``val/``.
* Unreadable files (corrupt, truncated, not an image, too large) are logged by path with the ``snn_mlp``
  logger and recorded; ``unreadable_report()`` summarises them at the end of an epoch or an evaluation.
  Training substitutes the next readable image in the file list (a split with none is refused by
  ``create_dataset``); evaluation emits a black placeholder with label ``-1`` so that every batch keeps its
  place: **eval consumers must ignore rows with ``label < 0``** (accuracy over the readable images).
"""
import io
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

import mindspore.dataset as ds

__all__ = ["create_dataset", "get_num_classes", "count_images", "unreadable_report", "UnreadableSummary",
           "DEFAULT_AUG", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "default_num_workers",
           "RandAugment", "parse_rand_augment", "MixupCutmix", "ImageTooLarge"]

LOGGER = logging.getLogger("snn_mlp")

SPLITS = ("train", "val")
LAYOUT = "expected <root>/train/<class>/<image> and <root>/val/<class>/<image>"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The ImageNet recipe of the original; every effect can be switched off with 0 or None.
DEFAULT_AUG = {
    "hflip": 0.5,                            # probability of a horizontal flip
    "auto_augment": "rand-m9-mstd0.5-inc1",  # timm RandAugment spec, or None
    "color_jitter": 0.4,                     # brightness/contrast/saturation strength; only without auto_augment
    "reprob": 0.25,                          # random erasing probability
    "mixup": 0.8,                            # mixup beta alpha (0: off)
    "cutmix": 1.0,                           # cutmix beta alpha (0: off)
    "mixup_switch_prob": 0.5,                # probability of cutmix instead of mixup when both are on
    "mixup_prob": 1.0,                       # probability of mixing a batch at all
    "label_smoothing": 0.1,
    "interpolation": "bicubic",
    "crop_pct": 0.875,                       # eval: centre crop fraction of the resized image
    "scale_min": 0.08,                       # train: smallest crop area fraction
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
}

_INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                   "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# Independent random streams per purpose, so turning one effect off does not shift another's draws.
_STREAM_SHUFFLE, _STREAM_SAMPLE, _STREAM_ERASE, _STREAM_MIX = range(4)
# The worker probe: samples timed in one thread, then in the candidate number of threads.
_PROBE_SAMPLES = 9
# More threads must beat one by this factor to be chosen (the probe is short; the machine may be loaded).
_PROBE_MIN_GAIN = 1.1
# Images with more pixels than this (8192 x 8192) are refused as unreadable instead of decoded (256 MiB).
_MAX_DECODE_PIXELS = 1 << 26


class ImageTooLarge(ValueError):
    """An image whose header declares more than ``_MAX_DECODE_PIXELS`` pixels."""


_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


# --------------------------------------------------------------------------------------------------
# Layout: classes, file lists, counts
# --------------------------------------------------------------------------------------------------

def _split_dir(dataset_path, split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if dataset_path is None or str(dataset_path) == "":
        raise ValueError(f"dataset_path is empty ({LAYOUT})")
    root = os.path.abspath(os.path.expanduser(str(dataset_path)))
    if not os.path.isdir(root):
        raise ValueError(f"dataset root {root} does not exist or is not a directory ({LAYOUT})")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise ValueError(f"split folder {split_dir} is missing ({LAYOUT})")
    return split_dir


def _class_names(split_dir):
    names = sorted(entry.name for entry in os.scandir(split_dir)
                   if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise ValueError(f"no class folders in {split_dir} ({LAYOUT})")
    return names


@dataclass
class _FileTable:
    """One split's images. Paths are a fixed-width byte array: compact for a million files."""
    split_dir: str
    classes: list
    rel_paths: np.ndarray
    labels: np.ndarray
    empty_classes: list = field(default_factory=list)

    def __len__(self):
        return len(self.labels)

    def path(self, index):
        return os.path.join(self.split_dir, os.fsdecode(self.rel_paths[index]))


class _Walk:
    """Sorted depth-first listing of class folders that follows symlinks but reaches every directory and every
    file once: a symlink cycle (``loop -> .``) or a second path to the same folder or file (a symlink, a hard
    link) is skipped and reported, so no image counts twice and no label is ambiguous."""

    def __init__(self, split_dir):
        self.split_dir = split_dir
        self.dirs, self.files = set(), {}  # (st_dev, st_ino) -> first relative path
        self.ignored, self.repeated, self.unlistable = [], [], []

    def rel(self, path):
        return os.path.relpath(path, self.split_dir)

    def images(self, folder):
        """Relative paths of the images under ``folder``, in os.walk's top-down order, files sorted."""
        try:
            stat = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:  # no permission, vanished: its images cannot be read either
            self.unlistable.append(f"{self.rel(folder)}/ ({error.strerror or error})")
            return []
        if (stat.st_dev, stat.st_ino) in self.dirs:
            self.repeated.append(f"{self.rel(folder)}/ (a folder already listed)")
            return []
        self.dirs.add((stat.st_dev, stat.st_ino))
        found, subdirs = [], []
        for entry in entries:
            rel = self.rel(entry.path)
            try:
                is_dir = entry.is_dir()
                if not is_dir:
                    # A plain file's inode is known without a stat; a symlink's target needs one.
                    target = entry.stat() if entry.is_symlink() else None
                    key = (target.st_dev, target.st_ino) if target else (stat.st_dev, entry.inode())
            except OSError:  # a dangling symlink: left for the reader to report as unreadable
                is_dir, key = False, None
            if entry.name.startswith("."):
                self.ignored.append(rel)
            elif is_dir:
                subdirs.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
                self.ignored.append(rel)
            elif key is not None and key in self.files:
                self.repeated.append(f"{rel} (the same file as {self.files[key]})")
            else:
                if key is not None:
                    self.files[key] = rel
                found.append(rel)
        for subdir in subdirs:
            found += self.images(subdir)
        return found


def _scan_split(split_dir):
    classes = _class_names(split_dir)
    LOGGER.info("scanning %s (%d classes)", split_dir, len(classes))
    walk = _Walk(split_dir)
    rel_paths, labels, empty = [], [], []
    for label, name in enumerate(classes):
        images = walk.images(os.path.join(split_dir, name))
        if not images:
            empty.append(name)
        rel_paths += [os.fsencode(rel) for rel in images]
        labels += [label] * len(images)
    if walk.ignored:
        LOGGER.warning("%d entries without an image extension ignored under %s: first %s", len(walk.ignored),
                       split_dir, ", ".join(walk.ignored[:5]))
    if walk.unlistable:
        LOGGER.warning("%d folders under %s could not be listed: first %s", len(walk.unlistable), split_dir,
                       ", ".join(walk.unlistable[:3]))
    if walk.repeated:
        LOGGER.warning("%d paths under %s skipped as symlink cycles or second paths to a folder or file already "
                       "listed: first %s", len(walk.repeated), split_dir, ", ".join(walk.repeated[:3]))
    if not labels:
        raise ValueError(f"no images (extensions {', '.join(sorted(IMAGE_EXTENSIONS))}) in the class folders "
                         f"of {split_dir} ({LAYOUT})")
    return _FileTable(split_dir, classes, np.array(rel_paths, dtype=np.bytes_), np.array(labels, np.int32), empty)


def get_num_classes(dataset_path):
    """Number of class folders of the dataset (from ``train/``, or ``val/`` when there is no ``train/``)."""
    try:
        return len(_class_names(_split_dir(dataset_path, "train")))
    except ValueError as train_error:
        try:
            return len(_class_names(_split_dir(dataset_path, "val")))
        except ValueError:
            raise train_error from None


def count_images(dataset_path, split):
    """Number of image files (by extension) in ``split`` ('train' or 'val'); unreadable ones included."""
    return len(_scan_split(_split_dir(dataset_path, split)))


def _check_matching_classes(dataset_path, split, classes):
    # Different class folders in train/ and val/ would silently scramble labels between the two.
    other = SPLITS[1 - SPLITS.index(split)]
    other_dir = os.path.join(os.path.abspath(os.path.expanduser(str(dataset_path))), other)
    if not os.path.isdir(other_dir):
        return
    other_classes = sorted(e.name for e in os.scandir(other_dir) if e.is_dir() and not e.name.startswith("."))
    if other_classes and other_classes != classes:
        only_here = sorted(set(classes) - set(other_classes))[:5]
        only_there = sorted(set(other_classes) - set(classes))[:5]
        raise ValueError(f"class folders of {split}/ and {other}/ differ under {dataset_path} "
                         f"(only in {split}: {only_here}, only in {other}: {only_there}); labels would not match")


# --------------------------------------------------------------------------------------------------
# Unreadable files: recorded by any process, summarised by the main one
# --------------------------------------------------------------------------------------------------

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


def _record_unreadable(split, path):
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


# --------------------------------------------------------------------------------------------------
# Augmentations (PIL, driven by an explicit numpy Generator)
# --------------------------------------------------------------------------------------------------

def _negate_half(value, rng):
    return -value if rng.random() > 0.5 else value


def _solarize_add(img, add, threshold=128):
    lut = [min(255, i + add) if i < threshold else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _posterize(img, bits):
    # Keep the top ``bits`` bits; 0 bits gives black, as older Pillow did (Pillow >= 11 refuses 0).
    if bits >= 8:
        return img
    mask = ~(2 ** (8 - bits) - 1) & 0xFF
    return img.point([i & mask for i in range(256)] * len(img.getbands()))


def _affine(img, matrix, fill, resample):
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=fill)


# name -> (apply(img, arg, fill, resample), level(magnitude, rng) -> arg or None). Levels follow timm's
# RandAugment on a 0..10 scale; the "Increasing" variants grow stronger with the magnitude.
_RAND_OPS = {
    "AutoContrast": (lambda img, arg, fill, rs: ImageOps.autocontrast(img), None),
    "Equalize": (lambda img, arg, fill, rs: ImageOps.equalize(img), None),
    "Invert": (lambda img, arg, fill, rs: ImageOps.invert(img), None),
    "Rotate": (lambda img, deg, fill, rs: img.rotate(deg, resample=rs, fillcolor=fill),
               lambda m, rng: _negate_half(m / 10 * 30.0, rng)),
    "Posterize": (lambda img, bits, fill, rs: _posterize(img, bits),
                  lambda m, rng: int(m / 10 * 4)),
    "PosterizeIncreasing": (lambda img, bits, fill, rs: _posterize(img, bits),
                            lambda m, rng: 4 - int(m / 10 * 4)),
    "Solarize": (lambda img, thr, fill, rs: ImageOps.solarize(img, thr), lambda m, rng: int(m / 10 * 256)),
    "SolarizeIncreasing": (lambda img, thr, fill, rs: ImageOps.solarize(img, thr),
                           lambda m, rng: 256 - int(m / 10 * 256)),
    "SolarizeAdd": (lambda img, add, fill, rs: _solarize_add(img, add), lambda m, rng: int(m / 10 * 110)),
    "Color": (lambda img, f, fill, rs: ImageEnhance.Color(img).enhance(f), lambda m, rng: m / 10 * 1.8 + 0.1),
    "ColorIncreasing": (lambda img, f, fill, rs: ImageEnhance.Color(img).enhance(f),
                        lambda m, rng: max(0.1, 1.0 + _negate_half(m / 10 * 0.9, rng))),
    "Contrast": (lambda img, f, fill, rs: ImageEnhance.Contrast(img).enhance(f),
                 lambda m, rng: m / 10 * 1.8 + 0.1),
    "ContrastIncreasing": (lambda img, f, fill, rs: ImageEnhance.Contrast(img).enhance(f),
                           lambda m, rng: max(0.1, 1.0 + _negate_half(m / 10 * 0.9, rng))),
    "Brightness": (lambda img, f, fill, rs: ImageEnhance.Brightness(img).enhance(f),
                   lambda m, rng: m / 10 * 1.8 + 0.1),
    "BrightnessIncreasing": (lambda img, f, fill, rs: ImageEnhance.Brightness(img).enhance(f),
                             lambda m, rng: max(0.1, 1.0 + _negate_half(m / 10 * 0.9, rng))),
    "Sharpness": (lambda img, f, fill, rs: ImageEnhance.Sharpness(img).enhance(f),
                  lambda m, rng: m / 10 * 1.8 + 0.1),
    "SharpnessIncreasing": (lambda img, f, fill, rs: ImageEnhance.Sharpness(img).enhance(f),
                            lambda m, rng: max(0.1, 1.0 + _negate_half(m / 10 * 0.9, rng))),
    "ShearX": (lambda img, s, fill, rs: _affine(img, (1, s, 0, 0, 1, 0), fill, rs),
               lambda m, rng: _negate_half(m / 10 * 0.3, rng)),
    "ShearY": (lambda img, s, fill, rs: _affine(img, (1, 0, 0, s, 1, 0), fill, rs),
               lambda m, rng: _negate_half(m / 10 * 0.3, rng)),
    "TranslateXRel": (lambda img, pct, fill, rs: _affine(img, (1, 0, pct * img.size[0], 0, 1, 0), fill, rs),
                      lambda m, rng: _negate_half(m / 10 * 0.45, rng)),
    "TranslateYRel": (lambda img, pct, fill, rs: _affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), fill, rs),
                      lambda m, rng: _negate_half(m / 10 * 0.45, rng)),
}
_RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
                    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
                    "TranslateYRel")
_RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                               "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                               "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                               "TranslateXRel", "TranslateYRel")


class RandAugment:
    """timm-style RandAugment: ``num_layers`` ops drawn with replacement, each applied with ``op_prob``
    at a magnitude drawn from N(magnitude, magnitude_std) clipped to [0, magnitude_max]."""

    def __init__(self, ops, num_layers=2, magnitude=9.0, magnitude_std=0.0, magnitude_max=10.0, op_prob=0.5,
                 fill=(124, 116, 104), resample=Image.Resampling.BICUBIC):
        unknown = [op for op in ops if op not in _RAND_OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; known: {sorted(_RAND_OPS)}")
        self.ops, self.num_layers = tuple(ops), int(num_layers)
        self.magnitude, self.magnitude_std, self.magnitude_max = float(magnitude), float(magnitude_std), \
            float(magnitude_max)
        self.op_prob, self.fill, self.resample = float(op_prob), tuple(fill), resample

    def __call__(self, img, rng):
        for op_index in rng.integers(0, len(self.ops), self.num_layers):
            if rng.random() > self.op_prob:
                continue
            apply, level = _RAND_OPS[self.ops[op_index]]
            magnitude = self.magnitude
            if self.magnitude_std > 0:
                magnitude = rng.normal(magnitude, self.magnitude_std)
            magnitude = min(self.magnitude_max, max(0.0, magnitude))
            img = apply(img, level(magnitude, rng) if level else None, self.fill, self.resample)
        return img


def parse_rand_augment(spec, fill=(124, 116, 104), resample=Image.Resampling.BICUBIC):
    """Build a ``RandAugment`` from a timm spec such as ``rand-m9-mstd0.5-inc1``.

    Sections: ``m`` magnitude (0..10), ``n`` ops per image, ``mstd`` magnitude std, ``mmax`` magnitude cap,
    ``inc`` 1 for the increasing-strength op set, ``p`` per-op probability.
    """
    parts = str(spec).split("-")
    if parts[0] != "rand":
        raise ValueError(f"auto_augment {spec!r} is not supported: use a RandAugment spec such as "
                         f"'rand-m9-mstd0.5-inc1', or None")
    kwargs, increasing = {}, False
    names = {"m": "magnitude", "n": "num_layers", "mstd": "magnitude_std", "mmax": "magnitude_max",
             "p": "op_prob"}
    for part in parts[1:]:
        key = part.rstrip("0123456789.")
        try:
            value = float(part[len(key):])
        except ValueError:
            raise ValueError(f"auto_augment {spec!r}: section {part!r} has no number") from None
        if key == "inc":
            increasing = bool(value)
        elif key in names:
            kwargs[names[key]] = value
        else:
            raise ValueError(f"auto_augment {spec!r}: unknown section {part!r} (known: m, n, mstd, mmax, inc, p)")
    ops = _RAND_INCREASING_TRANSFORMS if increasing else _RAND_TRANSFORMS
    return RandAugment(ops, fill=fill, resample=resample, **kwargs)


def _color_jitter(img, strength, rng):
    # torchvision ColorJitter(b, c, s) without hue: factors in [1-s, 1+s], applied in random order.
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for which in rng.permutation(len(enhancers)):
        img = enhancers[which](img).enhance(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))
    return img


def _random_resized_crop_box(width, height, scale, rng):
    """timm/torchvision RandomResizedCrop parameters as a PIL box (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(_CROP_RATIO[0]), math.log(_CROP_RATIO[1]))
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    # Fallback: the largest centred crop whose aspect lies within the ratio range.
    in_ratio = width / height
    if in_ratio < _CROP_RATIO[0]:
        w, h = width, int(round(width / _CROP_RATIO[0]))
    elif in_ratio > _CROP_RATIO[1]:
        w, h = int(round(height * _CROP_RATIO[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def _reduced_decode(img, box, size):
    """Let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling, ``Image.draft``) when ``box`` is still
    at least ``size`` pixels on each side at that scale; -> (image, box in its coordinates). Other formats and
    crops too small to gain are returned unchanged."""
    factor = min(box[2] - box[0], box[3] - box[1]) / size
    if img.format != "JPEG" or factor < 2:
        return img, box
    reduce = 8 if factor >= 8 else 4 if factor >= 4 else 2
    width = img.width
    drafted = img.draft("RGB", (width // reduce, img.height // reduce))
    if drafted is None:  # a JPEG libjpeg cannot scale (e.g. already configured)
        return img, box
    scale = drafted[1][2] / width  # draft's box: the original extent in the new coordinates
    return img, tuple(c * scale for c in box)


def _resized_rgb(img, box, size, resample):
    """The ``box`` of a not yet decoded image, resampled once to ``size`` x ``size`` RGB: decoding stops at the
    scale the crop needs, and no image larger than the source or the output is ever allocated."""
    img, box = _reduced_decode(img, box, size)
    if img.mode not in ("RGB", "L"):  # palette, alpha, 16-bit...: to RGB first, as a decode to RGB would
        img = img.convert("RGB")
    out = img.resize((size, size), resample, box=box)
    return out if out.mode == "RGB" else out.convert("RGB")  # grey: resampling commutes with the replication


class _TrainTransform:
    """Opened image -> augmented HWC uint8: resized crop, flip, RandAugment or colour jitter.

    ``geometry`` (decode, crop, resize) is where unreadable files fail; ``augment`` works on the output."""

    def __init__(self, image_size, aug):
        self.image_size = image_size
        self.resample = _INTERPOLATIONS[aug["interpolation"]]
        self.scale = (aug["scale_min"], 1.0)
        self.hflip = aug["hflip"]
        self.color_jitter = aug["color_jitter"]
        self.rand_augment = None
        if aug["auto_augment"]:
            fill = tuple(min(255, round(255 * m)) for m in aug["mean"])
            self.rand_augment = parse_rand_augment(aug["auto_augment"], fill=fill, resample=self.resample)

    def geometry(self, img, rng):
        # The box needs only the header's size, so it is drawn before decoding.
        box = _random_resized_crop_box(img.width, img.height, self.scale, rng)
        return _resized_rgb(img, box, self.image_size, self.resample)

    def augment(self, img, rng):
        if self.hflip and rng.random() < self.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.rand_augment is not None:
            img = self.rand_augment(img, rng)
        elif self.color_jitter:
            img = _color_jitter(img, self.color_jitter, rng)
        return np.asarray(img, dtype=np.uint8)


class _EvalTransform:
    """Opened image -> HWC uint8: shorter side to ``int(image_size / crop_pct)``, centre crop (torchvision's
    arithmetic, so the released checkpoints see the pixels they were evaluated on), done as one resampling
    of the source region that lands in the crop: the full resized image is never made."""

    def __init__(self, image_size, aug):
        self.image_size = image_size
        self.resize_to = int(image_size / aug["crop_pct"])
        self.resample = _INTERPOLATIONS[aug["interpolation"]]

    def geometry(self, img, rng=None):
        width, height = img.size
        if width <= height:
            size = (self.resize_to, int(self.resize_to * height / width))
        else:
            size = (int(self.resize_to * width / height), self.resize_to)
        top = int(round((size[1] - self.image_size) / 2.0))
        left = int(round((size[0] - self.image_size) / 2.0))
        sx, sy = width / size[0], height / size[1]
        box = (left * sx, top * sy, (left + self.image_size) * sx, (top + self.image_size) * sy)
        return _resized_rgb(img, box, self.image_size, self.resample)

    def augment(self, img, rng=None):
        return np.asarray(img, dtype=np.uint8)


class _RandomErasing:
    """timm RandomErasing (mode 'pixel', one box): erase 2%..1/3 of a normalised CHW image with N(0, 1) noise,
    in place."""

    def __init__(self, probability, seed):
        self.probability, self.seed = probability, seed

    def __call__(self, image, key):
        rng = np.random.default_rng([self.seed, _STREAM_ERASE, int(key)])
        if rng.random() > self.probability:
            return
        channels, height, width = image.shape
        log_ratio = (math.log(0.3), math.log(1 / 0.3))
        for _ in range(10):
            target_area = rng.uniform(0.02, 1 / 3) * height * width
            aspect = math.exp(rng.uniform(*log_ratio))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < width and h < height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                image[:, top:top + h, left:left + w] = rng.standard_normal((channels, h, w), dtype=np.float32)
                return


class MixupCutmix:
    """timm Mixup in 'batch' mode: one lambda per batch, pairs each sample with the reversed batch.

    Produces soft targets ``lam * smooth(y) + (1 - lam) * smooth(y reversed)`` where ``smooth`` puts
    ``1 - smoothing + smoothing / C`` on the class and ``smoothing / C`` elsewhere. For CutMix, ``lam`` is
    corrected to the exact area kept.
    """

    def __init__(self, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0,
                 smoothing=0.1, seed=0):
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.prob, self.smoothing, self.seed = switch_prob, prob, smoothing, seed

    def soft_targets(self, labels, lam):
        off = self.smoothing / self.num_classes
        smooth = np.full((len(labels), self.num_classes), off, np.float32)
        smooth[np.arange(len(labels)), labels] = 1.0 - self.smoothing + off
        return (lam * smooth + (1.0 - lam) * smooth[::-1]).astype(np.float32)

    def draw(self, rng, height, width):
        """-> (lam, box or None); box = (top, bottom, left, right) pasted from the reversed batch."""
        if not (self.mixup_alpha > 0 or self.cutmix_alpha > 0) or rng.random() >= self.prob:
            return 1.0, None
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha) if use_cutmix
                    else rng.beta(self.mixup_alpha, self.mixup_alpha))
        if not use_cutmix:
            return lam, None
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
        left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
        lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
        return lam, (int(top), int(bottom), int(left), int(right))

    def mix(self, x, labels, first_key):
        """Mix the float32 NCHW batch ``x`` in place; -> soft targets. Random draws come from the batch's first
        key, so the result does not depend on which worker built the batch."""
        rng = np.random.default_rng([self.seed, _STREAM_MIX, int(first_key)])
        lam, box = self.draw(rng, x.shape[2], x.shape[3])
        if box is not None:
            top, bottom, left, right = box
            x[:, :, top:bottom, left:right] = x[::-1, :, top:bottom, left:right].copy()
        elif lam < 1.0:
            # Sample i and its partner n-1-i become lam * self + (1 - lam) * partner (timm's batch mode), with
            # half a batch of scratch instead of batch-sized temporaries; the same float32 operations, so the
            # same bits as the out-of-place formula.
            pairs = len(x) // 2
            head, tail = x[:pairs], x[::-1][:pairs]
            tail_partner = head * np.float32(1.0 - lam)
            head *= np.float32(lam)
            head += tail * np.float32(1.0 - lam)
            tail *= np.float32(lam)
            tail += tail_partner
            if len(x) % 2:  # the middle sample of an odd batch is its own partner
                middle = x[pairs]
                x[pairs] = middle * np.float32(lam) + middle * np.float32(1.0 - lam)
        return self.soft_targets(np.asarray(labels, np.int64), lam)


# --------------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------------

class _EpochKeySampler(ds.Sampler):
    """Yields ``epoch * num_images + index`` for this rank's shard, one epoch per ``__iter__``.

    Training: a permutation seeded by (seed, epoch) shared by all ranks, cut to a multiple of the rank
    count so every rank gets as many images (ranks stay in step); rank r takes every rank_size-th entry,
    so shards are disjoint and cover the epoch. Evaluation: the file order, strided the same way.
    MindSpore copies the sampler into each iterator, so every new iterator starts again at epoch 0.
    """

    def __init__(self, num_images, rank_id, rank_size, shuffle, seed):
        self.num_images, self.rank_id, self.rank_size = num_images, rank_id, rank_size
        self.shuffle, self.seed, self._epoch = shuffle, seed, 0
        super().__init__()  # reads len(self)

    def shard(self, epoch):
        if self.shuffle:
            order = np.random.default_rng([self.seed, _STREAM_SHUFFLE, epoch]).permutation(self.num_images)
            order = order[:self.num_images - self.num_images % self.rank_size]
        else:
            order = np.arange(self.num_images)
        return order[self.rank_id::self.rank_size]

    def __iter__(self):
        epoch, self._epoch = self._epoch, self._epoch + 1
        return iter((epoch * self.num_images + self.shard(epoch)).tolist())

    def __len__(self):
        if self.shuffle:
            return self.num_images // self.rank_size
        return len(range(self.rank_id, self.num_images, self.rank_size))


class _ImageSource:
    """Random access ``key -> (HWC uint8 image, int32 label, int64 key)``; runs inside the loader workers."""

    def __init__(self, table, transform, image_size, seed, split, train):
        self.table, self.transform, self.image_size = table, transform, image_size
        self.seed, self.split, self.train = seed, split, train
        self._warned, self._unreadable = set(), set()

    def __len__(self):
        return len(self.table)

    def _open(self, path):
        """The file's bytes opened lazily (header only); refuses sizes above the decode bound."""
        with open(path, "rb") as file:
            img = Image.open(io.BytesIO(file.read()))
        if img.width * img.height > _MAX_DECODE_PIXELS:
            raise ImageTooLarge(f"{img.width} x {img.height} pixels, above the decode bound of "
                                f"{_MAX_DECODE_PIXELS} pixels")
        return img

    def _geometry(self, index, rng, record=True):
        """Decode, crop and resize image ``index`` -> RGB PIL image at the output size, or None if unreadable."""
        path = self.table.path(index)
        try:
            return self.transform.geometry(self._open(path), rng)
        except _DECODE_ERRORS as error:
            if record:
                self._record(path, error)
            return None

    def _sample_rng(self, key):
        return np.random.default_rng([self.seed, _STREAM_SAMPLE, key])

    def seconds_per_sample(self, keys, threads=1):
        """Wall time per sample to read, decode and transform these samples here, in ``threads`` threads
        (the first sample warms up, untimed); failures are not recorded."""
        def run(key):
            rng = self._sample_rng(key)
            img = self._geometry(key % len(self.table), rng, record=False)
            if img is not None:
                self.transform.augment(img, rng)

        if not keys:
            return 0.0
        run(keys[0])
        started = time.perf_counter()
        if threads == 1:
            for key in keys[1:]:
                run(key)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, keys[1:]))
        return (time.perf_counter() - started) / max(1, len(keys) - 1)

    def check_readable(self, indices):
        """ValueError (one line) when none of these images (a rank's shard: reading only its own files keeps
        the ranks' reads disjoint) decodes."""
        for index in indices:
            if self._geometry(int(index), self._sample_rng(0), record=False) is not None:
                return
        raise ValueError(f"none of the {len(indices)} images under {self.table.split_dir} assigned to this rank "
                         f"can be read (first: {self.table.path(int(indices[0]))}): check the files and their "
                         f"permissions")

    def _record(self, path, error):
        if path not in self._warned:  # once per source; the epoch summary counts every occurrence
            self._warned.add(path)
            LOGGER.warning("%s: skipping unreadable image %s (%s: %s)", self.split, path, type(error).__name__,
                           error)
        _record_unreadable(self.split, path)

    def __getitem__(self, key):
        key = int(key)
        index = key % len(self.table)
        rng = self._sample_rng(key)
        img = self._geometry(index, rng)
        label = self.table.labels[index]
        if img is None and not self.train:
            placeholder = np.zeros((self.image_size, self.image_size, 3), np.uint8)
            return placeholder, np.int32(-1), np.int64(key)
        if img is None:
            self._unreadable.add(index)
        tries = 0
        while img is None:  # training: the next readable image in file order takes the place
            tries += 1
            if tries >= len(self.table):  # every file turned unreadable after create_dataset found one
                raise RuntimeError(f"no readable image left under {self.table.split_dir}")
            substitute = (index + tries) % len(self.table)
            if substitute in self._unreadable:  # a run of bad files is decoded once per source, not per sample
                continue
            rng = self._sample_rng(key)  # draws as if the substitute had been the file read first
            img = self._geometry(substitute, rng)
            label = self.table.labels[substitute]
            if img is None:
                self._unreadable.add(substitute)
        return self.transform.augment(img, rng), np.int32(label), np.int64(key)


class _BatchFinisher:
    """A batch of HWC uint8 images -> normalised float32 NCHW, erased and mixed in place (training), in one
    pass over the batch in the loader's batch workers: no per-image C++ round trips, no extra copies."""

    def __init__(self, aug, erasing=None, mixing=None):
        self.mean = np.array([255.0 * m for m in aug["mean"]], np.float32).reshape(1, 3, 1, 1)
        self.std = np.array([255.0 * s for s in aug["std"]], np.float32).reshape(1, 3, 1, 1)
        self.erasing, self.mixing = erasing, mixing

    def __call__(self, images, labels, keys, batch_info=None):
        x = np.empty((len(images), 3, *images[0].shape[:2]), np.float32)
        np.subtract(np.stack(images).transpose(0, 3, 1, 2), self.mean, out=x)
        x /= self.std
        if self.mixing is None:
            return x, np.asarray(labels, np.int32)
        if self.erasing is not None:
            for image, key in zip(x, keys):
                self.erasing(image, key)
        return x, self.mixing.mix(x, labels, keys[0])


def _resolve_aug(aug):
    """Merge ``aug`` over ``DEFAULT_AUG`` and validate every value; unknown keys are errors."""
    if aug is None:
        aug = {}
    if not isinstance(aug, dict):
        raise ValueError(f"aug must be a dict or None, got {type(aug).__name__}")
    unknown = sorted(set(aug) - set(DEFAULT_AUG))
    if unknown:
        raise ValueError(f"unknown aug key(s) {unknown}; known keys: {sorted(DEFAULT_AUG)}")
    merged = dict(DEFAULT_AUG, **aug)

    def number(key, low, high, allow_none=False, low_open=False):
        value = merged[key]
        if value is None and allow_none:
            merged[key] = 0.0
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low < value <= high if low_open else low <= value <= high):
            bounds = f"{'(' if low_open else '['}{low}, {high}]"
            raise ValueError(f"aug[{key!r}] must be a number in {bounds}, got {value!r}")
        merged[key] = float(value)

    for key in ("hflip", "reprob", "mixup_switch_prob", "mixup_prob"):
        number(key, 0.0, 1.0, allow_none=True)
    for key in ("mixup", "cutmix", "color_jitter"):
        number(key, 0.0, math.inf, allow_none=True)
    number("label_smoothing", 0.0, 1.0, allow_none=True)
    if merged["label_smoothing"] >= 1.0:
        raise ValueError(f"aug['label_smoothing'] must be below 1, got {merged['label_smoothing']!r}")
    number("crop_pct", 0.0, 1.0, low_open=True)
    number("scale_min", 0.0, 1.0, low_open=True)
    if merged["interpolation"] not in _INTERPOLATIONS:
        raise ValueError(f"aug['interpolation'] must be one of {sorted(_INTERPOLATIONS)}, "
                         f"got {merged['interpolation']!r}")
    for key in ("mean", "std"):
        value = merged[key]
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"aug[{key!r}] must be 3 numbers (RGB, 0..1 scale), got {value!r}")
        merged[key] = tuple(float(v) for v in value)
    if min(merged["std"]) <= 0:
        raise ValueError(f"aug['std'] must be positive, got {merged['std']!r}")
    spec = merged["auto_augment"]
    if spec is not None and not isinstance(spec, str):
        raise ValueError(f"aug['auto_augment'] must be a string such as 'rand-m9-mstd0.5-inc1' or None, "
                         f"got {spec!r}")
    merged["auto_augment"] = None if spec is None or spec.strip().lower() in ("", "none") else spec.strip()
    if merged["auto_augment"]:
        parse_rand_augment(merged["auto_augment"])  # fail now, not in a worker
    return merged


def default_num_workers(rank_size=1):
    """min(8, CPUs available to this process // ranks), at least 1; assumes all ranks share this host."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // max(1, rank_size)))


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def create_dataset(dataset_path, do_train, batch_size, image_size=224, num_classes=1000, rank_id=0,
                   rank_size=1, num_workers=None, seed=0, aug=None):
    """ImageFolder dataset for training (``do_train=True``, from ``train/``) or evaluation (``val/``).

    Returns a ``mindspore.dataset`` pipeline with columns ``image`` (float32, NCHW batches) and ``label``:
    training gives float32 soft targets ``(B, num_classes)`` (mixup/cutmix and label smoothing), drops the
    last incomplete batch and reshuffles every epoch; evaluation gives int32 labels ``(B,)``, keeps the
    file order and every image (the last batch may be smaller). **Evaluation labels are -1 for unreadable
    images: consumers must ignore rows with ``label < 0``.** Call ``unreadable_report()`` at the end of
    each epoch/evaluation for the summary of skipped files.

    ``rank_id``/``rank_size`` select a disjoint shard for data parallelism (every training shard has the
    same size). ``seed`` fixes shuffling and every augmentation: the same seed gives the same batches
    whatever the worker count. Workers are threads. ``num_workers=None`` times a few samples in one thread
    and in ``default_num_workers(rank_size)`` threads and keeps the faster (1 for tiny images, whose
    hand-over costs more than they do); docs/PERFORMANCE.md says how many cores a rank needs at a given
    images/s. ``aug`` overrides keys of ``DEFAULT_AUG`` (the ImageNet recipe); 0/None switches an effect off.
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("image_size", image_size, 1)
    _check_int("num_classes", num_classes, 1)
    _check_int("rank_size", rank_size, 1)
    _check_int("rank_id", rank_id, 0)
    _check_int("seed", seed, 0)
    if rank_id >= rank_size:
        raise ValueError(f"rank_id must be below rank_size ({rank_size}), got {rank_id}")
    if num_workers is not None:
        _check_int("num_workers", num_workers, 1)
    aug = _resolve_aug(aug)
    split = "train" if do_train else "val"
    table = _scan_split(_split_dir(dataset_path, split))
    if len(table.classes) != num_classes:
        raise ValueError(f"{table.split_dir} has {len(table.classes)} class folders but num_classes is "
                         f"{num_classes}")
    _check_matching_classes(dataset_path, split, table.classes)
    if table.empty_classes:
        listed = ", ".join(table.empty_classes[:5]) + (", ..." if len(table.empty_classes) > 5 else "")
        message = f"{len(table.empty_classes)} class folder(s) of {table.split_dir} hold no image: {listed}"
        if do_train:  # a class without a single example can never be learned
            raise ValueError(f"{message}; add images or remove the folder(s) from train/ and val/")
        LOGGER.warning("%s; those classes are not evaluated", message)

    sampler = _EpochKeySampler(len(table), rank_id, rank_size, shuffle=do_train, seed=seed)
    shard_size = len(sampler)
    if do_train and shard_size < batch_size:
        raise ValueError(f"{table.split_dir}: {shard_size} images per rank (of {len(table)}, {rank_size} ranks) "
                         f"cannot fill one batch of {batch_size}")
    transform = _TrainTransform(image_size, aug) if do_train else _EvalTransform(image_size, aug)
    source = _ImageSource(table, transform, image_size, seed, split, train=do_train)
    if do_train:
        source.check_readable(sampler.shard(0))  # fails here, in one line, not in a worker
    if num_workers is None:
        num_workers = _probe_workers(source, sampler.shard(0)[:_PROBE_SAMPLES].tolist(), rank_size, split)
    # Threads, not processes: decoding, resampling and the PIL augmentations release the GIL, and a thread
    # hands its sample over without pickling it (measured: 2 worker processes were slower than 1 here).
    dataset = ds.GeneratorDataset(source, ["image", "label", "key"], sampler=sampler,
                                  num_parallel_workers=num_workers, python_multiprocessing=False)
    mixing = erasing = None
    if do_train:
        erasing = _RandomErasing(aug["reprob"], seed) if aug["reprob"] > 0 else None
        mixing = MixupCutmix(num_classes, aug["mixup"], aug["cutmix"], aug["mixup_switch_prob"], aug["mixup_prob"],
                             aug["label_smoothing"], seed)
    dataset = dataset.batch(batch_size, drop_remainder=do_train, per_batch_map=_BatchFinisher(aug, erasing, mixing),
                            input_columns=["image", "label", "key"], output_columns=["image", "label"],
                            num_parallel_workers=num_workers, python_multiprocessing=False)
    LOGGER.info("%s: %d images, %d classes; rank %d/%d reads %d in %d batches of %d, workers=%d (threads)",
                split, len(table), len(table.classes), rank_id, rank_size, shard_size,
                dataset.get_dataset_size(), batch_size, num_workers)
    return dataset


def _probe_workers(source, keys, rank_size, split):
    """``default_num_workers(rank_size)`` threads when they load these samples faster than one thread does,
    else 1 (tiny images cost less than handing them between threads)."""
    most = default_num_workers(rank_size)
    if most == 1:
        return 1
    one = source.seconds_per_sample(keys)
    several = source.seconds_per_sample(keys, threads=most)
    chosen = most if several * _PROBE_MIN_GAIN < one else 1
    LOGGER.info("%s: worker probe: %.2f ms per sample in 1 thread, %.2f ms in %d: %d worker(s)", split,
                one * 1e3, several * 1e3, most, chosen)
    return chosen
