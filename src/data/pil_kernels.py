"""Two of Pillow's resamplings on RGB images through a small C++ kernel, every output byte equal to Pillow's:
the affine transform behind RandAugment's geometric ops (``affine``, ``rotate``) and the box resize of the
random-resized crop and the eval crop (``resize``). Measured per 224x224 output (docs/PERFORMANCE.md): Shear
and Translate ~2.5x faster than Pillow, Rotate ~1.2x, the crop resize ~2x.

Where they gain: Pillow's transform evaluates the full 4x4 bicubic neighbourhood per pixel and channel
through a function pointer, while a shear or translation along one axis needs one 1-D cubic per channel; its
resize loops over the taps of each output pixel, while integer sums may run in any order, so both passes here
filter whole rows at a time (the horizontal one on transposed pixels) and vectorise. ``kernels/pil_kernels.cc``
(built on first use into the kernel cache, like the network's aot kernels) does Pillow's arithmetic in the
same order. Without a C++ compiler, or for other modes and filters (nearest is already cheap in Pillow), the
same calls go to Pillow: the result is the same either way. ctypes releases the GIL during the call, as
Pillow does: worker threads overlap.

Byte-identity is verified on x86-64, where Pillow's wheels cannot fuse multiply-adds (not in the baseline
ISA). On aarch64 (Kunpeng hosts) a Pillow build compiled with GCC's default contraction may fuse them and
then differ from x86 by a level on rare pixels; the kernel keeps the unfused x86 arithmetic everywhere. The
resize also follows Pillow's pass order, which Pillow 13 changed: ``_pass_order`` knows Pillow <= 13, and a
probe at first use checks it against the installed Pillow (Pillow resizes otherwise).
"""
import ctypes
import logging
import math
import threading
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from ..kernels.build import KernelBuildError, KernelRecipe, build_library

__all__ = ["PIL_KERNELS_RECIPE", "pil_kernels", "affine", "rotate", "resize"]

logger = logging.getLogger("snn_mlp")

PIL_KERNELS_RECIPE = KernelRecipe(
    name="pil_kernels",
    source="pil_kernels.cc",
    headers=(),
    compiler="g++",
    # -ffp-contract=off: no fused multiply-add, or the last bit (and after truncation a level) would differ
    # from Pillow's build. -march=native widens the resize's integer row sums (and keys the cache on the CPU).
    flags=("-std=c++17", "-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared"),
    cpu_specific=True,
    directory=Path(__file__).resolve().parent / "kernels",
)

_FAST_FILTERS = {Image.Resampling.BILINEAR: 0, Image.Resampling.BICUBIC: 1}
_P, _INT = ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {
    "snnmlp_affine_rgb": ([_P, _P, _INT, _INT, _P, _INT, ctypes.c_char_p], None),
    "snnmlp_resize_region": ([_INT, _INT, _P, _INT, _INT, _INT, _P], _INT),
    "snnmlp_resize_rgbx": ([_P, ctypes.c_ssize_t, _INT, _INT, _INT, _INT, _INT, _P, _INT, _INT, _INT, _INT, _P],
                           _INT),
}
_lock = threading.Lock()
_library = []  # [ctypes library or None], filled once


def pil_kernels():
    """The kernel library (ctypes), or None where it cannot be built (then Pillow does the work)."""
    with _lock:
        if not _library:
            library = None
            try:
                library = ctypes.CDLL(str(build_library(PIL_KERNELS_RECIPE)))
                for name, (argtypes, restype) in _SIGNATURES.items():
                    getattr(library, name).argtypes = argtypes
                    getattr(library, name).restype = restype
            except (KernelBuildError, OSError) as err:
                library = None
                logger.warning("RandAugment's geometric ops and the crop resize use Pillow (the same result, "
                               "slower): %s", err)
            _library.append(library)
        return _library[0]


def _kernels_for(img, resample):
    return pil_kernels() if img.mode == "RGB" and resample in _FAST_FILTERS else None


def affine(img, matrix, fill, resample):
    """``img.transform(img.size, AFFINE, matrix, resample, fillcolor=fill)``."""
    kernels = _kernels_for(img, resample) if len(fill) == 3 else None
    if kernels is None:
        return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=fill)
    src = np.asarray(img)
    out = np.empty_like(src)
    coefficients = np.array(matrix[:6], np.float64)
    kernels.snnmlp_affine_rgb(src.ctypes.data, out.ctypes.data, img.width, img.height, coefficients.ctypes.data,
                              _FAST_FILTERS[resample], bytes(fill))
    return Image.fromarray(out, "RGB")


def rotate(img, degrees, fill, resample):
    """``img.rotate(degrees, resample, fillcolor=fill)``: Pillow's rotation matrix, then ``affine``."""
    angle = degrees % 360.0
    if angle in (0.0, 90.0, 180.0, 270.0):  # Pillow's exact transposes (or a transform, for 90 off-square)
        return img.rotate(degrees, resample=resample, fillcolor=fill)
    # Pillow's arithmetic, operation for operation: about the centre, coefficients rounded to 15 digits.
    radians = -math.radians(angle)
    cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
    matrix = [cos, sin, 0.0, round(-math.sin(radians), 15), cos, 0.0]
    cx, cy = img.width / 2, img.height / 2
    matrix[2] = matrix[0] * -cx + matrix[1] * -cy + matrix[2] + cx
    matrix[5] = matrix[3] * -cx + matrix[4] * -cy + matrix[5] + cy
    return affine(img, matrix, fill, resample)


def _vertical_first_pillow13(in_w, in_h, out_w, out_h):
    # Pillow 13 resamples along y first when the height shrinks by more than twice what the width does.
    return 0 < in_h - out_h and in_h - out_h > (in_w - out_w) * 2


def _horizontal_first(in_w, in_h, out_w, out_h):  # Pillow up to 12
    return False


def _pass_order(major):
    """Pillow's resize pass order by its major version; None for one this module has not been checked on."""
    return _horizontal_first if major <= 12 else _vertical_first_pillow13 if major == 13 else None


_resize_order = []  # [order function or None], filled once


def _checked_resize_order(kernels):
    """The pass order of the installed Pillow, checked on probe images of both orders; None (Pillow does the
    resize) for a Pillow whose order is not known here or that disagrees with the kernel."""
    with _lock:
        if not _resize_order:
            order = _pass_order(int(PIL.__version__.split(".")[0]))
            if order is None or not _agrees_with_pillow(kernels, order):
                order = None
                logger.warning("the crop resize uses Pillow: Pillow %s resizes in an order this project does not "
                               "know (src/data/pil_kernels.py)", PIL.__version__)
            _resize_order.append(order)
        return _resize_order[0]


def _agrees_with_pillow(kernels, order):
    rng = np.random.default_rng(0)
    for width, height, box in ((300, 500, (3.5, 7.25, 290, 480)), (500, 300, (7, 2.5, 480, 299))):
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for resample in _FAST_FILTERS:
            got = _kernel_resize(kernels, order, img, (224, 224), resample, box)
            if not np.array_equal(np.asarray(got), np.asarray(img.resize((224, 224), resample, box))):
                return False
    return True


def _kernel_resize(kernels, order, img, size, resample, box):
    width, height = img.size
    box = np.array(box, np.float64)
    region = np.empty(4, np.intc)
    flag = _FAST_FILTERS[resample]
    if kernels.snnmlp_resize_region(width, height, box.ctypes.data, size[0], size[1], flag, region.ctypes.data):
        return img.resize(size, resample, box=tuple(box))
    x0, y0, x1, _ = region.tolist()
    src = img.crop(tuple(region.tolist())).tobytes("raw", "RGBX")  # Pillow's own 4-byte pixels, not repacked
    out = bytearray(size[0] * size[1] * 4)
    if kernels.snnmlp_resize_rgbx(src, x1 - x0, x0, y0, x1, width, height, box.ctypes.data, size[0], size[1], flag,
                                  int(order(width, height, *size)), (ctypes.c_char * len(out)).from_buffer(out)):
        return img.resize(size, resample, box=tuple(box))
    return Image.frombytes("RGB", size, out, "raw", "RGBX")


def resize(img, size, resample, box):
    """``img.resize(size, resample, box=box)``; decodes (and copies) only the region the box reads."""
    kernels = _kernels_for(img, resample)
    width, height = img.size
    # Pillow skips a pass whose axis is unchanged (its own test, box edge against the output size).
    both_passes = (size[0] != width or box[0] or box[2] != size[0]) and (size[1] != height or box[1]
                                                                         or box[3] != size[1])
    valid = 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height  # else Pillow's own error
    order = _checked_resize_order(kernels) if kernels is not None and both_passes and valid else None
    if order is None:
        return img.resize(size, resample, box=box)
    return _kernel_resize(kernels, order, img, size, resample, box)
