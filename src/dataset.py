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

How it is built, and why (the parts live in ``src/data/``: ``layout``, ``unreadable``, ``aug``,
``rand_augment``, ``pil_kernels``, ``transforms``, ``mixup``, ``sampler``, ``seeding``; this module puts them
together):

* The file list is scanned by ``data.layout`` rather than by ``ImageFolderDataset``, because reporting an
  unreadable file by its path, sharding and counting all need it.
* A sampler yields keys ``epoch * num_images + index``. Every random choice made for a sample is drawn
  from a generator seeded by ``(seed, key)``, and mixup's from ``(seed, first key of the batch)``, so a
  batch depends on the seed alone, not on worker count or scheduling.
* The ``GeneratorDataset`` source gives whole batches: reading, decoding, cropping and the augmentations of
  a batch's samples run in a pool of threads of its own (Pillow and the C++ kernels release the GIL, and a
  thread hands a sample over without pickling it; worker processes were slower than one worker on 2 cores),
  which queues the next batch while this one is finished in one numpy pass and handed to MindSpore once.
  ``num_workers=None`` times a few samples in 1 thread and in ``default_num_workers()`` threads and keeps
  the faster.
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
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

import mindspore.dataset as ds

from .data.aug import DEFAULT_AUG, IMAGENET_MEAN, IMAGENET_STD, resolve_aug
from .data.layout import IMAGE_EXTENSIONS, check_matching_classes, get_num_classes, scan_split, split_folder
from .data.mixup import MixupCutmix
from .data.rand_augment import RandAugment, parse_rand_augment
from .data.sampler import EpochBatchSampler, EpochKeySampler
from .data.seeding import STREAM_SAMPLE
from .data.transforms import BatchFinisher, EvalTransform, RandomErasing, TrainTransform
from .data.unreadable import (DECODE_ERRORS, MAX_DECODE_PIXELS, ImageTooLarge, UnreadableSummary, record_unreadable,
                              unreadable_report)

__all__ = ["create_dataset", "get_num_classes", "unreadable_report", "UnreadableSummary",
           "DEFAULT_AUG", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "default_num_workers",
           "RandAugment", "parse_rand_augment", "MixupCutmix", "ImageTooLarge"]

LOGGER = logging.getLogger("snn_mlp")

# The worker probe: samples timed in one thread, then in the candidate number of threads.
_PROBE_SAMPLES = 9
# More threads must beat one by this factor to be chosen (the probe is short; the machine may be loaded).
_PROBE_MIN_GAIN = 1.1


class _ImageSource:
    """Random access ``key -> (HWC uint8 image, int32 label, int64 key)``; runs in the threads of ``_BatchSource``."""

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
        if img.width * img.height > MAX_DECODE_PIXELS:
            raise ImageTooLarge(f"{img.width} x {img.height} pixels, above the decode bound of "
                                f"{MAX_DECODE_PIXELS} pixels")
        return img

    def _geometry(self, index, rng, record=True):
        """Decode, crop and resize image ``index`` -> RGB PIL image at the output size, or None if unreadable."""
        path = self.table.path(index)
        try:
            return self.transform.geometry(self._open(path), rng)
        except DECODE_ERRORS as error:
            if record:
                self._record(path, error)
            return None

    def _sample_rng(self, key):
        return np.random.default_rng([self.seed, STREAM_SAMPLE, key])

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
        record_unreadable(self.split, path)

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


class _BatchSource:
    """Random access ``batch id -> finished batch``: the batch's samples loaded by ``workers`` threads of this
    source's own pool, then normalised, erased and mixed (``BatchFinisher``) in the calling thread.

    MindSpore calls it from one loader thread, so the per-batch Python work and the hand-over to MindSpore
    happen once per batch, and the pool loads the next batch of the epoch meanwhile. (Handing single samples
    from several MindSpore worker threads made 2 workers slower than 1 on 2 cores, 307 against 416 images/s,
    with about one core busy: they serialised on the GIL.) Calls may overlap (two iterators of one dataset):
    the bookkeeping of queued batches is locked, and a call only cancels batches nobody waits for.
    """

    def __init__(self, source, sampler, finisher, workers):
        self.source, self.sampler, self.finisher, self.workers = source, sampler, finisher, workers
        self._pool, self._ahead, self._lock = None, {}, threading.Lock()

    def __len__(self):
        return len(self.sampler)

    def _submit(self, batch_id):
        return [self._pool.submit(self.source.__getitem__, key) for key in self.sampler.keys(batch_id)]

    def _load(self, batch_id):
        with self._lock:
            if self._pool is None:  # made on first use, in the process that iterates; shut down with the source
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="snn_mlp_loader")
                weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
            futures = self._ahead.pop(batch_id, None) or self._submit(batch_id)
            for stale in self._ahead.values():  # the loader jumped: drop what was queued for elsewhere
                for future in stale:
                    future.cancel()
            following = batch_id + 1  # queued behind this batch; never past the epoch's end
            self._ahead = {following: self._submit(following)} if following % len(self) else {}
        return [future.result() for future in futures]

    def __getitem__(self, batch_id):
        images, labels, keys = zip(*self._load(int(batch_id)))
        return self.finisher(list(images), np.array(labels), np.array(keys))


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
    aug = resolve_aug(aug)
    split = "train" if do_train else "val"
    table = scan_split(split_folder(dataset_path, split))
    if len(table.classes) != num_classes:
        raise ValueError(f"{table.split_dir} has {len(table.classes)} class folders but num_classes is "
                         f"{num_classes}")
    check_matching_classes(dataset_path, split, table.classes)
    if table.empty_classes:
        listed = ", ".join(table.empty_classes[:5]) + (", ..." if len(table.empty_classes) > 5 else "")
        message = f"{len(table.empty_classes)} class folder(s) of {table.split_dir} hold no image: {listed}"
        if do_train:  # a class without a single example can never be learned
            raise ValueError(f"{message}; add images or remove the folder(s) from train/ and val/")
        LOGGER.warning("%s; those classes are not evaluated", message)

    sampler = EpochKeySampler(len(table), rank_id, rank_size, shuffle=do_train, seed=seed)
    shard_size = len(sampler)
    if do_train and shard_size < batch_size:
        raise ValueError(f"{table.split_dir}: {shard_size} images per rank (of {len(table)}, {rank_size} ranks) "
                         f"cannot fill one batch of {batch_size}")
    transform = TrainTransform(image_size, aug) if do_train else EvalTransform(image_size, aug)
    source = _ImageSource(table, transform, image_size, seed, split, train=do_train)
    if do_train:
        source.check_readable(sampler.shard(0))  # fails here, in one line, not in a worker
    if num_workers is None:
        num_workers = _probe_workers(source, sampler.shard(0)[:_PROBE_SAMPLES].tolist(), rank_size, split)
    mixing = erasing = None
    if do_train:
        erasing = RandomErasing(aug["reprob"], seed) if aug["reprob"] > 0 else None
        mixing = MixupCutmix(num_classes, aug["mixup"], aug["cutmix"], aug["mixup_switch_prob"], aug["mixup_prob"],
                             aug["label_smoothing"], seed)
    # Threads, not processes: decoding, resampling and the C++ augmentations release the GIL, and a thread hands
    # its sample over without pickling it (measured: 2 worker processes were slower than 1 here).
    batches = EpochBatchSampler(sampler, batch_size, drop_remainder=do_train)
    source_of_batches = _BatchSource(source, batches, BatchFinisher(aug, erasing, mixing), num_workers)
    dataset = ds.GeneratorDataset(source_of_batches, ["image", "label"], sampler=batches, num_parallel_workers=1,
                                  python_multiprocessing=False)
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
