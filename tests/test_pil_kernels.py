"""The Pillow-exact C++ kernels (src/data/pil_kernels.py): RandAugment's geometric ops byte for byte Pillow's
``Image.transform(..., AFFINE, ...)`` / ``Image.rotate``, the crop resize Pillow's ``Image.resize(..., box)``;
the same draws per seed; Pillow where the kernels cannot be built."""
import logging
import shutil

import numpy as np
import PIL
import pytest
from PIL import Image

from src.data import pil_kernels as pil_kernels_module
from src.data.pil_kernels import affine, pil_kernels, resize, rotate
from src.data.aug import resolve_aug
from src.data.rand_augment import parse_rand_augment
from src.data.transforms import EvalTransform, TrainTransform
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
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler: Pillow does the work")
    assert pil_kernels() is not None, "g++ is there but the kernel library did not build or load (see the log)"
    return pil_kernels()


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
    monkeypatch.setattr(pil_kernels_module, "_library", [None])  # Pillow does the geometric ops
    for seed, (out, next_draw) in enumerate(fast):
        expected, expected_next = run(seed)
        np.testing.assert_array_equal(out, expected, err_msg=f"seed {seed}")
        assert next_draw == expected_next


def test_without_a_compiler_pillow_does_the_work_and_says_so(monkeypatch, caplog):
    def no_compiler(recipe):
        raise KernelBuildError("no g++")

    monkeypatch.setattr(pil_kernels_module, "build_library", no_compiler)
    monkeypatch.setattr(pil_kernels_module, "_library", [])
    img = _images(20, 10)[0]
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        out = affine(img, (1, 0.3, 0, 0, 1, 0), FILL, Image.Resampling.BICUBIC)
        affine(img, (1, 0.3, 0, 0, 1, 0), FILL, Image.Resampling.BICUBIC)
    expected = img.transform(img.size, Image.Transform.AFFINE, (1, 0.3, 0, 0, 1, 0), Image.Resampling.BICUBIC,
                             fillcolor=FILL)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    assert [r.getMessage() for r in caplog.records].count(
        "RandAugment's geometric ops and the crop resize use Pillow (the same result, slower): no g++") == 1


def _boxes(width, height, rng):
    """Crop boxes as the pipeline draws them (integers; fractions after a reduced JPEG decode), the whole
    image, thin strips, boxes on the edges, and boxes smaller than the output (upscaling)."""
    out = [(0, 0, width, height), (0.0, 0.0, width / 3, height / 5), (width - 1.5, 0.25, width, height),
           (0, height - 1, width, height), (0.5, 0.5, 1.75, 1.25)]
    for _ in range(12):
        x0, x1 = np.sort(rng.uniform(0, width - 0.5, 2))
        y0, y1 = np.sort(rng.uniform(0, height - 0.5, 2))
        out.append((x0, y0, x1 + 0.5, y1 + 0.5))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        out.append((x, y, int(rng.integers(x + 1, width + 1)), int(rng.integers(y + 1, height + 1))))
    return out


@pytest.mark.parametrize("resample", FILTERS, ids=lambda r: r.name)
def test_resize_equals_pillow_byte_for_byte(kernel, resample):
    assert pil_kernels_module._checked_resize_order(kernel) is not None  # the kernel resizes, not Pillow
    rng = np.random.default_rng(5)
    for width, height in ((500, 375), (300, 500), (97, 61), (3, 2)):  # (300, 500): Pillow 13 goes y first
        for img in _images(width, height, seed=width):
            for box in _boxes(width, height, rng):
                for size in ((224, 224), (37, 53)):
                    expected = img.resize(size, resample, box=box)
                    np.testing.assert_array_equal(np.asarray(resize(img, size, resample, box)),
                                                  np.asarray(expected), err_msg=f"{img.size} {box} {size}")
    with pytest.raises(ValueError, match="box can't be empty"):  # Pillow's own check, message and all
        resize(img, (224, 224), resample, (2, 1, 1, 2))


def test_a_resize_order_that_disagrees_with_pillow_is_caught(kernel, monkeypatch, caplog):
    """The load-time probe refuses a pass order the installed Pillow does not use: Pillow resizes then."""
    right = pil_kernels_module._pass_order(int(PIL.__version__.split(".")[0]))
    wrong = (pil_kernels_module._vertical_first_pillow13 if right is pil_kernels_module._horizontal_first
             else pil_kernels_module._horizontal_first)
    monkeypatch.setattr(pil_kernels_module, "_pass_order", lambda major: wrong)
    monkeypatch.setattr(pil_kernels_module, "_resize_order", [])
    img = _images(300, 500)[0]
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        out = resize(img, (224, 224), Image.Resampling.BICUBIC, (0, 0, 300, 500))
    assert pil_kernels_module._resize_order == [None] and "the crop resize uses Pillow" in caplog.text
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img.resize((224, 224), Image.Resampling.BICUBIC)))


def test_the_pipelines_geometry_is_pillows_on_jpegs(kernel, monkeypatch, tmp_path):
    """Train (random crops, DCT-scaled decodes included) and eval geometry on JPEGs: the kernel's bytes are
    Pillow's, for every sample."""
    train, evaluate = TrainTransform(224, resolve_aug(None)), EvalTransform(224, resolve_aug(None))
    blobs = []
    for width, height in ((640, 480), (1400, 900), (300, 500)):
        data = tmp_path / f"{width}.jpg"
        _images(width, height)[1].save(data, "JPEG", quality=90)
        blobs.append(data)

    def run():
        out = []
        for path in blobs:
            for seed in range(8):
                out.append(np.asarray(train.geometry(Image.open(path), np.random.default_rng(seed))))
            out.append(np.asarray(evaluate.geometry(Image.open(path))))
        return out

    assert pil_kernels_module._checked_resize_order(kernel) is not None
    fast = run()
    monkeypatch.setattr(pil_kernels_module, "_library", [None])
    for got, expected in zip(fast, run()):
        np.testing.assert_array_equal(got, expected)


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
