"""timm's RandAugment in PIL, driven by an explicit numpy Generator (every draw reproducible from the
sample's seed). The geometric ops go through ``pil_kernels`` (Pillow's bytes, faster).
"""
from PIL import Image, ImageEnhance, ImageOps

from .pil_kernels import affine, rotate

__all__ = ["RandAugment", "parse_rand_augment", "AFFINE_RESAMPLES"]

# The filters Pillow's affine transforms accept (LANCZOS and the like raise in Image.transform).
AFFINE_RESAMPLES = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


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


def _enhance(enhancer):
    return lambda img, factor, fill, resample: enhancer(img).enhance(factor)


def _enhance_level(magnitude, rng):
    return magnitude / 10 * 1.8 + 0.1


def _enhance_increasing_level(magnitude, rng):
    return max(0.1, 1.0 + _negate_half(magnitude / 10 * 0.9, rng))


# name -> (apply(img, arg, fill, resample), level(magnitude, rng) -> arg or None). Levels follow timm's
# RandAugment on a 0..10 scale; the "Increasing" variants grow stronger with the magnitude.
_RAND_OPS = {
    "AutoContrast": (lambda img, arg, fill, rs: ImageOps.autocontrast(img), None),
    "Equalize": (lambda img, arg, fill, rs: ImageOps.equalize(img), None),
    "Invert": (lambda img, arg, fill, rs: ImageOps.invert(img), None),
    "Rotate": (rotate, lambda m, rng: _negate_half(m / 10 * 30.0, rng)),
    "Posterize": (lambda img, bits, fill, rs: _posterize(img, bits),
                  lambda m, rng: int(m / 10 * 4)),
    "PosterizeIncreasing": (lambda img, bits, fill, rs: _posterize(img, bits),
                            lambda m, rng: 4 - int(m / 10 * 4)),
    "Solarize": (lambda img, thr, fill, rs: ImageOps.solarize(img, thr), lambda m, rng: int(m / 10 * 256)),
    "SolarizeIncreasing": (lambda img, thr, fill, rs: ImageOps.solarize(img, thr),
                           lambda m, rng: 256 - int(m / 10 * 256)),
    "SolarizeAdd": (lambda img, add, fill, rs: _solarize_add(img, add), lambda m, rng: int(m / 10 * 110)),
    "Color": (_enhance(ImageEnhance.Color), _enhance_level),
    "ColorIncreasing": (_enhance(ImageEnhance.Color), _enhance_increasing_level),
    "Contrast": (_enhance(ImageEnhance.Contrast), _enhance_level),
    "ContrastIncreasing": (_enhance(ImageEnhance.Contrast), _enhance_increasing_level),
    "Brightness": (_enhance(ImageEnhance.Brightness), _enhance_level),
    "BrightnessIncreasing": (_enhance(ImageEnhance.Brightness), _enhance_increasing_level),
    "Sharpness": (_enhance(ImageEnhance.Sharpness), _enhance_level),
    "SharpnessIncreasing": (_enhance(ImageEnhance.Sharpness), _enhance_increasing_level),
    "ShearX": (lambda img, s, fill, rs: affine(img, (1, s, 0, 0, 1, 0), fill, rs),
               lambda m, rng: _negate_half(m / 10 * 0.3, rng)),
    "ShearY": (lambda img, s, fill, rs: affine(img, (1, 0, 0, s, 1, 0), fill, rs),
               lambda m, rng: _negate_half(m / 10 * 0.3, rng)),
    "TranslateXRel": (lambda img, pct, fill, rs: affine(img, (1, 0, pct * img.size[0], 0, 1, 0), fill, rs),
                      lambda m, rng: _negate_half(m / 10 * 0.45, rng)),
    "TranslateYRel": (lambda img, pct, fill, rs: affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), fill, rs),
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
        if resample not in AFFINE_RESAMPLES:
            raise ValueError(f"RandAugment resample must be one of {[r.name for r in AFFINE_RESAMPLES]} (what "
                             f"Pillow's affine transforms take), got {resample!r}")
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
