"""Per-image transforms (decode, crop, resize, flip, RandAugment or colour jitter) and the per-batch pass
(normalisation, HWC->CHW, random erasing, then mixing, in timm's order).

Decoding is lazy: the random-resized-crop box is drawn from the header's size, a JPEG is decoded at
1/2..1/8 scale (libjpeg DCT scaling) when the box stays at least the output size at that scale, and the
box is resampled to the output in one step; evaluation likewise resamples the source region of its
centre crop once instead of resizing the whole image then cropping.
"""
import math

import numpy as np
from PIL import Image, ImageEnhance

from .aug import INTERPOLATIONS
from .pil_kernels import resize
from .rand_augment import AFFINE_RESAMPLES, parse_rand_augment
from .seeding import STREAM_ERASE

__all__ = ["random_resized_crop_box", "TrainTransform", "EvalTransform", "RandomErasing", "BatchFinisher"]

_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def _color_jitter(img, strength, rng):
    # torchvision ColorJitter(b, c, s) without hue: factors in [1-s, 1+s], applied in random order.
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for which in rng.permutation(len(enhancers)):
        img = enhancers[which](img).enhance(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))
    return img


def random_resized_crop_box(width, height, scale, rng):
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
    out = resize(img, (size, size), resample, box)  # Pillow's bytes; faster for RGB bicubic/bilinear
    return out if out.mode == "RGB" else out.convert("RGB")  # grey: resampling commutes with the replication


class TrainTransform:
    """Opened image -> augmented HWC uint8: resized crop, flip, RandAugment or colour jitter.

    ``geometry`` (decode, crop, resize) is where unreadable files fail; ``augment`` works on the output."""

    def __init__(self, image_size, aug):
        self.image_size = image_size
        self.resample = INTERPOLATIONS[aug["interpolation"]]
        self.scale = (aug["scale_min"], 1.0)
        self.hflip = aug["hflip"]
        self.color_jitter = aug["color_jitter"]
        self.rand_augment = None
        if aug["auto_augment"]:
            fill = tuple(min(255, round(255 * m)) for m in aug["mean"])
            # Pillow's affine transforms take nearest/bilinear/bicubic only: a lanczos crop keeps bicubic here.
            resample = self.resample if self.resample in AFFINE_RESAMPLES else Image.Resampling.BICUBIC
            self.rand_augment = parse_rand_augment(aug["auto_augment"], fill=fill, resample=resample)

    def geometry(self, img, rng):
        # The box needs only the header's size, so it is drawn before decoding.
        box = random_resized_crop_box(img.width, img.height, self.scale, rng)
        return _resized_rgb(img, box, self.image_size, self.resample)

    def augment(self, img, rng):
        if self.hflip and rng.random() < self.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.rand_augment is not None:
            img = self.rand_augment(img, rng)
        elif self.color_jitter:
            img = _color_jitter(img, self.color_jitter, rng)
        return np.asarray(img, dtype=np.uint8)


class EvalTransform:
    """Opened image -> HWC uint8: shorter side to ``int(image_size / crop_pct)``, centre crop (torchvision's
    arithmetic, so the released checkpoints see the pixels they were evaluated on), done as one resampling
    of the source region that lands in the crop: the full resized image is never made."""

    def __init__(self, image_size, aug):
        self.image_size = image_size
        self.resize_to = int(image_size / aug["crop_pct"])
        self.resample = INTERPOLATIONS[aug["interpolation"]]

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


class RandomErasing:
    """timm RandomErasing (mode 'pixel', one box): erase 2%..1/3 of a normalised CHW image with N(0, 1) noise,
    in place."""

    def __init__(self, probability, seed):
        self.probability, self.seed = probability, seed

    def __call__(self, image, key):
        rng = np.random.default_rng([self.seed, STREAM_ERASE, int(key)])
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


class BatchFinisher:
    """A batch of HWC uint8 images -> normalised float32 NCHW, erased and mixed in place (training), in one
    pass over the batch in the loader thread: no per-image C++ round trips, no extra copies."""

    def __init__(self, aug, erasing=None, mixing=None):
        self.mean = np.array([255.0 * m for m in aug["mean"]], np.float32).reshape(1, 3, 1, 1)
        self.std = np.array([255.0 * s for s in aug["std"]], np.float32).reshape(1, 3, 1, 1)
        self.erasing, self.mixing = erasing, mixing

    def __call__(self, images, labels, keys):
        x = np.empty((len(images), 3, *images[0].shape[:2]), np.float32)
        np.subtract(np.stack(images).transpose(0, 3, 1, 2), self.mean, out=x)
        x /= self.std
        if self.mixing is None:
            return x, np.asarray(labels, np.int32)
        if self.erasing is not None:
            for image, key in zip(x, keys):
                self.erasing(image, key)
        return x, self.mixing.mix(x, labels, keys[0])
