"""RandAugment's geometric ops through the C++ kernel (src/data/affine.py): byte for byte Pillow's
``Image.transform(..., AFFINE, ...)`` / ``Image.rotate``, the same draws per seed, Pillow where it cannot build."""
import logging

import numpy as np
import pytest
from PIL import Image

from src.data import affine as affine_module
from src.data.affine import affine, affine_kernel, rotate
from src.data.aug import resolve_aug
from src.data.rand_augment import parse_rand_augment
from src.data.transforms import TrainTransform
from src.kernels.build import KernelBuildError

FILL = (124, 116, 104)  # the recipe's: the ImageNet mean in bytes
FILTERS = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.NEAREST)


def _images(width, height, seed=0):
    """Noise (every tap differs), a smooth ramp with overshooting edges, and flat fields (exact results)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    smooth = np.clip(np.cumsum(rng.integers(-40, 41, (height, width, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    flat = np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
    flat[: height // 2] = 255
    return [Image.fromarray(a) for a in (noise, smooth, flat)]


def _matrices(width, height):
    """RandAugment's shear (max 0.3) and translate (max 0.45 of the side) matrices, both signs, sub-pixel ones."""
    out = []
    for s in (0.3, -0.3, 0.27, -0.1234, 0.0071, 0.0):
        out += [(1, s, 0, 0, 1, 0), (1, 0, 0, s, 1, 0)]
    for p in (0.45, -0.45, 0.333, -0.0123, 0.5 / width, 1.0 / width):
        out += [(1, 0, p * width, 0, 1, 0), (1, 0, 0, 0, 1, p * height)]
    return out


@pytest.fixture(scope="module")
def kernel():
    if affine_kernel() is None:
        pytest.skip("no C++ compiler: the affine ops run in Pillow")
    return affine_kernel()


@pytest.mark.parametrize("size", [(224, 224), (223, 197), (1, 5), (5, 1), (2, 3)])
@pytest.mark.parametrize("resample", FILTERS, ids=lambda r: r.name)
def test_affine_and_rotate_equal_pillow_byte_for_byte(kernel, size, resample):
    for img in _images(*size):
        for matrix in _matrices(*size):
            expected = img.transform(img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=FILL)
            np.testing.assert_array_equal(np.asarray(affine(img, matrix, FILL, resample)), np.asarray(expected),
                                          err_msg=f"{size} {resample.name} {matrix}")
        for degrees in (30.0, -30.0, 13.5, -27.13, 359.9, 0.0, 90.0, 180.0, -90.0):
            expected = img.rotate(degrees, resample=resample, fillcolor=FILL)
            np.testing.assert_array_equal(np.asarray(rotate(img, degrees, FILL, resample)), np.asarray(expected),
                                          err_msg=f"{size} {resample.name} rotate {degrees}")


def test_the_comparison_sees_a_half_pixel_off(kernel):
    """The images above tell a correct kernel from one whose sample points are off by half a pixel."""
    img = _images(64, 48)[1]
    expected = img.transform(img.size, Image.Transform.AFFINE, (1, 0.27, 0, 0, 1, 0), Image.Resampling.BICUBIC,
                             fillcolor=FILL)
    half_off = affine(img, (1, 0.27, 0.5, 0, 1, 0), FILL, Image.Resampling.BICUBIC)
    assert (np.asarray(half_off) != np.asarray(expected)).mean() > 0.5


def test_rand_augment_draws_and_outputs_match_the_pillow_path(kernel, monkeypatch):
    """The whole RandAugment, seed by seed: the kernel changes neither the rng draws nor a byte."""
    ra = parse_rand_augment("rand-m9-mstd0.5-inc1", fill=FILL)
    img = _images(96, 80, seed=3)[1]

    def run(seed):
        rng = np.random.default_rng(seed)
        return np.asarray(ra(img, rng)), rng.random()  # the output, and the draw after the last one used

    fast = [run(seed) for seed in range(60)]
    monkeypatch.setattr(affine_module, "_kernel", [None])  # Pillow does the geometric ops
    for seed, (out, next_draw) in enumerate(fast):
        expected, expected_next = run(seed)
        np.testing.assert_array_equal(out, expected, err_msg=f"seed {seed}")
        assert next_draw == expected_next


def test_without_a_compiler_pillow_does_the_work_and_says_so(monkeypatch, caplog):
    def no_compiler(recipe):
        raise KernelBuildError("no g++")

    monkeypatch.setattr(affine_module, "build_library", no_compiler)
    monkeypatch.setattr(affine_module, "_kernel", [])
    img = _images(20, 10)[0]
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        out = affine(img, (1, 0.3, 0, 0, 1, 0), FILL, Image.Resampling.BICUBIC)
        affine(img, (1, 0.3, 0, 0, 1, 0), FILL, Image.Resampling.BICUBIC)
    expected = img.transform(img.size, Image.Transform.AFFINE, (1, 0.3, 0, 0, 1, 0), Image.Resampling.BICUBIC,
                             fillcolor=FILL)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    assert [r.getMessage() for r in caplog.records].count(
        "RandAugment's geometric ops use Pillow (the same result, slower): no g++") == 1


def test_lanczos_interpolation_keeps_rand_augment_working():
    """Pillow's affine transforms refuse LANCZOS: the crop keeps it, RandAugment's geometry uses bicubic."""
    transform = TrainTransform(32, resolve_aug({"interpolation": "lanczos"}))
    assert transform.resample == Image.Resampling.LANCZOS
    assert transform.rand_augment.resample == Image.Resampling.BICUBIC
    img = _images(32, 32)[1]
    for seed in range(40):  # every op is drawn at least once
        assert transform.augment(img, np.random.default_rng(seed)).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="resample must be one of"):
        parse_rand_augment("rand-m9", resample=Image.Resampling.LANCZOS)
