"""RandAugment's geometric ops (Shear, Translate, Rotate) on RGB images, byte for byte what Pillow's
``Image.transform(..., AFFINE, ...)`` and ``Image.rotate`` return, faster for bilinear and bicubic resampling
(measured per 224x224 op: Shear and Translate ~2.5x, Rotate ~1.2x; docs/PERFORMANCE.md).

Pillow's generic transform evaluates the full 4x4 bicubic neighbourhood per pixel and channel through a
function pointer; a shear or translation along one axis needs one 1-D cubic per channel. The C++ kernel
``kernels/affine_u8.cc`` (built on first use into the kernel cache, like the network's aot kernels) does
Pillow's arithmetic in the same order and skips the axis whose offset is exactly 0. Without a C++ compiler,
or for other modes and filters (nearest is already fast in Pillow), the same calls go to Pillow: the result
is the same either way. ctypes releases the GIL during the call, as Pillow does: worker threads overlap.

Byte-identity is verified on x86-64, where Pillow's wheels cannot fuse multiply-adds (not in the baseline
ISA). On aarch64 (Kunpeng hosts) a Pillow build compiled with GCC's default contraction may fuse them and
then differ from x86 by a level on rare pixels; the kernel keeps the unfused x86 arithmetic everywhere.
"""
import ctypes
import logging
import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..kernels.build import KernelBuildError, KernelRecipe, build_library

__all__ = ["AFFINE_RECIPE", "affine", "rotate", "affine_kernel"]

logger = logging.getLogger("snn_mlp")

AFFINE_RECIPE = KernelRecipe(
    name="affine_u8",
    source="affine_u8.cc",
    headers=(),
    compiler="g++",
    # -ffp-contract=off: no fused multiply-add, or the last bit (and after truncation a level) would differ
    # from Pillow's build. Portable flags: the kernel is scalar code, -march=native would gain nothing.
    flags=("-std=c++17", "-O3", "-ffp-contract=off", "-fPIC", "-shared"),
    cpu_specific=False,
    directory=Path(__file__).resolve().parent / "kernels",
)

_FAST_FILTERS = {Image.Resampling.BILINEAR: 0, Image.Resampling.BICUBIC: 1}
_lock = threading.Lock()
_kernel = []  # [function or None], filled once


def affine_kernel():
    """The ctypes function of the kernel, or None where it cannot be built (then Pillow does the work)."""
    with _lock:
        if not _kernel:
            function = None
            try:
                function = ctypes.CDLL(str(build_library(AFFINE_RECIPE))).snnmlp_affine_rgb
                function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                     ctypes.c_int, ctypes.c_char_p]
                function.restype = None
            except (KernelBuildError, OSError) as err:
                logger.warning("RandAugment's geometric ops use Pillow (the same result, slower): %s", err)
            _kernel.append(function)
        return _kernel[0]


def affine(img, matrix, fill, resample):
    """``img.transform(img.size, AFFINE, matrix, resample, fillcolor=fill)``."""
    kernel = affine_kernel() if img.mode == "RGB" and resample in _FAST_FILTERS and len(fill) == 3 else None
    if kernel is None:
        return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=fill)
    src = np.asarray(img)
    out = np.empty_like(src)
    coefficients = np.array(matrix[:6], np.float64)
    kernel(src.ctypes.data, out.ctypes.data, img.width, img.height, coefficients.ctypes.data,
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
