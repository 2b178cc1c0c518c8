"""The augmentation settings: the ImageNet recipe's defaults (``DEFAULT_AUG``, the one place they are
declared) and their validation.
"""
import math

from PIL import Image

from .rand_augment import parse_rand_augment

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_AUG", "INTERPOLATIONS", "resolve_aug"]

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

INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                   "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def resolve_aug(aug):
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
    if merged["interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"aug['interpolation'] must be one of {sorted(INTERPOLATIONS)}, "
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
