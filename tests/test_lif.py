"""The LIF scan: every back-end against the loop-by-loop numpy reference, and the reference against calculus.

Back-ends: the CPU aot kernel ("custom") and the MindSpore-primitive scan ("primitive"), in PYNATIVE and
GRAPH mode, forward and backward (dx, dtau, dvth), odd shapes, every kind of window, both axes; dynamic
shapes; float16/bfloat16; bad input; the kernel cache (rebuild on change, one build under concurrency, clear
errors). The CUDA source is compiled when nvcc is on PATH.
"""
import dataclasses
import logging
import os
import shutil
import threading

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

import src.lif as lif
from src.kernels import custom_op
from src.lif import LIFScan
from src.kernels.build import LIF_CPU_RECIPE, LIF_CUDA_RECIPE, KernelBuildError, build_library, library_path
from src.lif.reference import lif_backward_np, lif_forward_np

SHAPES = [(2, 3, 7, 9), (1, 2, 13, 5)]
# -1 off, 0 whole axis, 2/3/4 vectorised kernel paths, 5 the generic path, 20 longer than every axis here.
WINDOWS = [-1, 0, 2, 3, 4, 5, 20]
TAU, VTH = 0.3, -0.2
ATOL = 1e-5


@pytest.fixture
def mode(request):
    previous = ms.get_context("mode")
    ms.set_context(mode=request.param)
    yield request.param
    ms.set_context(mode=previous)


def _scalar(value):
    return Tensor(np.array([value], np.float32))


class _Loss(nn.Cell):
    """sum(scan(x) * grad_out): its gradients are the vector-Jacobian products against grad_out."""

    def __init__(self, scan):
        super().__init__()
        self.scan = scan

    def construct(self, x, tau, vth, grad_out):
        # Summed in float32: CPU has no bfloat16 reduction.
        return (ops.cast(self.scan(x, tau, vth), ms.float32) * ops.cast(grad_out, ms.float32)).sum()


def _run(scan, x, grad_out, tau=TAU, vth=VTH):
    """(out, dx, dtau, dvth) of ``scan`` as numpy arrays."""
    args = (Tensor(x), _scalar(tau), _scalar(vth))
    out = scan(*args).asnumpy()
    grads = ms.grad(_Loss(scan), grad_position=(0, 1, 2))(*args, Tensor(grad_out))
    return (out,) + tuple(g.asnumpy() for g in grads)


def _check(got, x, grad_out, window, axis, tau=TAU, vth=VTH):
    out, dx, dtau, dvth = got
    np.testing.assert_allclose(out, lif_forward_np(x, tau, vth, window, axis), rtol=0, atol=ATOL)
    ref_dx, ref_dtau, ref_dvth = lif_backward_np(x, tau, vth, window, axis, grad_out)
    np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=ATOL)
    np.testing.assert_allclose(dtau, ref_dtau, rtol=ATOL, atol=ATOL)
    np.testing.assert_allclose(dvth, ref_dvth, rtol=ATOL, atol=ATOL)


def _data(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ the reference itself


def test_reference_by_hand():
    # One row along W, window 2, tau 0.5, vth 0: (1, -4) fires then leaks, (-1, 3) leaks then fires,
    # the tail (7) passes through.
    x = np.array([1.0, -4.0, -1.0, 3.0, 7.0]).reshape(1, 1, 1, 5)
    out = lif_forward_np(x, 0.5, 0.0, 2, 3)
    # u: 1 (fire, o=0) | -4 (no fire -> out 0); -1 (no fire, o=-1) | 0.5*-1+3=2.5 (fire); 7 copied.
    np.testing.assert_array_equal(out.ravel(), [1.0, 0.0, 0.0, 2.5, 7.0])
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(x.shape)
    dx, dtau, dvth = lif_backward_np(x, 0.5, 0.0, 2, 3, g)
    # Window 2: gu1 = g1*fire = 4, gu0 = 0 + gu1*tau = 2; the tail gets its gradient unchanged.
    np.testing.assert_array_equal(dx.ravel(), [1.0, 0.0, 2.0, 4.0, 5.0])
    np.testing.assert_array_equal(dtau, [4.0 * -1.0])  # gu1 * o1 with o1 = -1
    np.testing.assert_array_equal(dvth, [2.0 + 3.0])  # the two positions that did not fire


@pytest.mark.parametrize("axis", [2, 3])
@pytest.mark.parametrize("window", [0, 3])
def test_reference_backward_is_the_derivative(window, axis):
    """Central differences of the reference forward (fire held fixed where it does not flip) match its backward."""
    x, g = (a.astype(np.float64) for a in _data((1, 2, 5, 6), seed=window + axis))
    tau, vth, eps = -0.7, -0.3, 1e-6

    def loss(x_, tau_, vth_):
        return float((lif_forward_np(x_, tau_, vth_, window, axis) * g).sum())

    dx, dtau, dvth = lif_backward_np(x, tau, vth, window, axis, g)
    numeric_dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        numeric_dx[idx] = (loss(x + step, tau, vth) - loss(x - step, tau, vth)) / (2 * eps)
    np.testing.assert_allclose(dx, numeric_dx, atol=1e-6)
    np.testing.assert_allclose(dtau, [(loss(x, tau + eps, vth) - loss(x, tau - eps, vth)) / (2 * eps)], atol=1e-6)
    np.testing.assert_allclose(dvth, [(loss(x, tau, vth + eps) - loss(x, tau, vth - eps)) / (2 * eps)], atol=1e-6)


# ------------------------------------------------------------------ back-ends against the reference


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE], indirect=True)
@pytest.mark.parametrize("backend", ["custom", "primitive"])
@pytest.mark.parametrize("axis", [2, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_backends_match_reference_pynative(mode, backend, axis, shape):
    for window in WINDOWS:
        x, g = _data(shape, seed=window + 7 * axis)
        _check(_run(LIFScan(window, axis, backend), x, g), x, g, window, axis)


# GRAPH mode compiles a graph per case (the primitive's grows with the window), so fewer, smaller cases.
GRAPH_CASES = {"custom": [(0, SHAPES[0]), (4, SHAPES[1]), (5, SHAPES[0])], "primitive": [(0, (1, 2, 5, 6))]}


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE], indirect=True)
@pytest.mark.parametrize("backend", ["custom", "primitive"])
@pytest.mark.parametrize("axis", [2, 3])
def test_backends_match_reference_graph(mode, backend, axis):
    for window, shape in GRAPH_CASES[backend]:
        x, g = _data(shape, seed=window + axis)
        _check(_run(LIFScan(window, axis, backend), x, g), x, g, window, axis)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE], indirect=True)
@pytest.mark.parametrize("backend", ["custom", "primitive"])
def test_negative_tau_and_wide_planes(mode, backend):
    # Planes wider than a vector and windows that tile them exactly (the kernel's long-run paths).
    for axis, window in [(2, 8), (3, 8), (3, 2)]:
        x, g = _data((2, 2, 16, 24), seed=window)
        _check(_run(LIFScan(window, axis, backend), x, g, tau=-0.6, vth=0.1), x, g, window, axis, tau=-0.6, vth=0.1)


def test_export_switch_builds_the_primitive_scan():
    from src.kernels.export_mode import exporting

    with exporting():
        with exporting():
            assert LIFScan(4, 2, "custom").backend == "primitive"  # export wins over an explicit request
        assert LIFScan(4, 3).backend == "primitive"
    assert LIFScan(4, 3).backend == "custom"


@pytest.mark.parametrize("axis", [2, 3])
def test_cpu_kernel_split_over_threads_matches_reference(axis, monkeypatch):
    """Tensors large enough to be shared out in several chunks (cpu_parallel.h): the reference's values, and the
    same bits whatever SNNMLP_NUM_THREADS says (the kernel reads it per call)."""
    from src.kernels.standalone import StandaloneKernel

    kernel = StandaloneKernel(build_library(LIF_CPU_RECIPE))
    x, g = _data((3, 5, 48, 48), seed=axis)  # 34560 elements, 15 planes: two chunks or more above one thread

    def handle(array):
        return array.ctypes.data, array.shape, str(array.dtype)

    tau, vth = np.array([TAU], np.float32), np.array([VTH], np.float32)
    results = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("SNNMLP_NUM_THREADS", threads)
        out, dx, dtau, dvth = np.empty_like(x), np.empty_like(x), np.zeros(1, np.float32), np.zeros(1, np.float32)
        for _ in range(3):  # repeated calls reuse the pool's threads
            kernel.forward(handle(x), handle(tau), handle(vth), handle(out), 4, axis)
            kernel.backward(*map(handle, (x, tau, vth, g, dx, dtau, dvth)), 4, axis)
        results[threads] = (out, dx, dtau, dvth)
    _check(results["3"], x, g, 4, axis)
    for threads in ("1", "2"):
        for got, expected in zip(results[threads], results["3"]):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE], indirect=True)
def test_windows_are_per_cell_in_one_graph(mode):
    """Two kernel cells with different windows and axes in one graph keep their own attributes."""

    class Two(nn.Cell):
        def __init__(self):
            super().__init__()
            self.along_w = LIFScan(2, 3, "custom")
            self.along_h = LIFScan(0, 2, "custom")

        def construct(self, x, tau, vth):
            return self.along_w(x, tau, vth), self.along_h(x, tau, vth)

    x, _ = _data(SHAPES[0], seed=3)
    out_w, out_h = Two()(Tensor(x), _scalar(TAU), _scalar(VTH))
    np.testing.assert_allclose(out_w.asnumpy(), lif_forward_np(x, TAU, VTH, 2, 3), atol=ATOL)
    np.testing.assert_allclose(out_h.asnumpy(), lif_forward_np(x, TAU, VTH, 0, 2), atol=ATOL)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], indirect=True)
def test_window_and_axis_are_call_inputs(mode):
    """One pair of kernel ops serves every window and axis: they come with each call, as aclnn takes them."""
    forward, backward = lif.make_custom_ops("CPU")

    class Calls(nn.Cell):
        def construct(self, x, tau, vth, dout):
            return (forward(x, tau, vth, 2, 3), forward(x, tau, vth, 0, 2)) + backward(x, tau, vth, dout, 3, 2)

    x, g = _data(SHAPES[1], seed=11)
    out_w, out_h, dx, dtau, dvth = (t.asnumpy() for t in Calls()(Tensor(x), _scalar(TAU), _scalar(VTH), Tensor(g)))
    np.testing.assert_allclose(out_w, lif_forward_np(x, TAU, VTH, 2, 3), atol=ATOL)
    np.testing.assert_allclose(out_h, lif_forward_np(x, TAU, VTH, 0, 2), atol=ATOL)
    ref_dx, ref_dtau, ref_dvth = lif_backward_np(x, TAU, VTH, 3, 2, g)
    np.testing.assert_allclose(dx, ref_dx, atol=ATOL)
    np.testing.assert_allclose(dtau, ref_dtau, rtol=ATOL, atol=ATOL)
    np.testing.assert_allclose(dvth, ref_dvth, rtol=ATOL, atol=ATOL)


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE], indirect=True)
@pytest.mark.parametrize("backend", ["custom", "primitive"])
def test_dynamic_shapes_graph(mode, backend):
    for axis in (2, 3):
        scan = LIFScan(3, axis, backend)
        loss = _Loss(scan)
        dynamic = Tensor(shape=[None, 3, None, None], dtype=ms.float32)
        scan.set_inputs(dynamic, _scalar(TAU), _scalar(VTH))
        loss.set_inputs(dynamic, _scalar(TAU), _scalar(VTH), dynamic)
        grad = ms.grad(loss, grad_position=(0, 1, 2))
        for shape in [(2, 3, 7, 9), (1, 3, 6, 10)]:
            x, g = _data(shape, seed=shape[2])
            args = (Tensor(x), _scalar(TAU), _scalar(VTH))
            got = (scan(*args).asnumpy(),) + tuple(t.asnumpy() for t in grad(*args, Tensor(g)))
            _check(got, x, g, 3, axis)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE], indirect=True)
def test_non_contiguous_views(mode):
    base, _ = _data((2, 3, 9, 7), seed=1)
    view = Tensor(base).transpose(0, 1, 3, 2)
    for backend in ("custom", "primitive"):
        out = LIFScan(3, 3, backend)(view, _scalar(TAU), _scalar(VTH)).asnumpy()
        np.testing.assert_allclose(out, lif_forward_np(base.transpose(0, 1, 3, 2), TAU, VTH, 3, 3), atol=ATOL)


# ------------------------------------------------------------------ reduced precision


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE], indirect=True)
@pytest.mark.parametrize("backend", ["custom", "primitive"])
@pytest.mark.parametrize("dtype", [ms.float16, ms.bfloat16])
def test_half_precision_is_computed_in_float32(mode, backend, dtype):
    x32, g32 = _data(SHAPES[0], seed=5)
    x, g = Tensor(x32, dtype), Tensor(g32, dtype)
    x_exact, g_exact = x.float().asnumpy(), g.float().asnumpy()  # what the kernel sees
    for axis in (2, 3):
        scan = LIFScan(4, axis, backend)
        out = scan(x, _scalar(TAU), _scalar(VTH))
        assert out.dtype == dtype
        grads = ms.grad(_Loss(scan), grad_position=(0, 1, 2))(x, _scalar(TAU), _scalar(VTH), g)
        # Only the final rounding to the storage type is allowed: within one unit in the last place.
        ulp = 2.0 ** -10 if dtype == ms.float16 else 2.0 ** -7
        ref_out = lif_forward_np(x_exact, TAU, VTH, 4, axis)
        np.testing.assert_allclose(out.float().asnumpy(), ref_out, rtol=ulp, atol=1e-3)
        ref_dx, ref_dtau, ref_dvth = lif_backward_np(x_exact, TAU, VTH, 4, axis, g_exact)
        np.testing.assert_allclose(grads[0].float().asnumpy(), ref_dx, rtol=ulp, atol=1e-3)
        np.testing.assert_allclose(grads[1].asnumpy(), ref_dtau, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(grads[2].asnumpy(), ref_dvth, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE], indirect=True)
def test_float16_conversions_of_the_kernel(mode):
    scan = LIFScan(4, 3, "custom")
    # Every half value survives the float32 round trip: with tau 0 and vth -inf everything fires, the membrane
    # stays 0 and out = 0*0 + x (which turns -0 into +0). NaN and -inf do not fire, so they are left out.
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    halves = halves[~np.isnan(halves) & (halves != -np.inf)]
    halves = halves[: halves.size // 64 * 64].reshape(1, 1, 64, -1)
    out = scan(Tensor(halves), _scalar(0.0), _scalar(-np.inf)).asnumpy()
    np.testing.assert_array_equal(out.view(np.uint16), (np.float16(0) + halves).view(np.uint16))
    # Rounding float32 -> half (where nothing fires the output is vth): round to nearest even, like numpy.
    never_fires = Tensor(np.full((1, 1, 1, 8), -np.inf, np.float16))
    for vth in [1 / 3, -0.1, 65519.99, 65520.0, 1e-8, 2.0 ** -25, 3e-8, 6.1e-5, 1.0 + 2.0 ** -11, 3.0e38]:
        out = scan(never_fires, _scalar(0.0), _scalar(vth)).asnumpy()
        with np.errstate(over="ignore"):  # 65520 and up round to inf
            expected = np.float32(vth).astype(np.float16)
        assert out.view(np.uint16)[0, 0, 0, 0] == expected.view(np.uint16), vth


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE], indirect=True)
def test_input_types_the_kernel_lacks_take_the_primitive(mode, monkeypatch):
    # As on Ascend, whose operator has no bfloat16: such inputs must not reach the kernel.
    monkeypatch.setitem(lif.KERNEL_DTYPES, "CPU", ("float32",))
    scan = LIFScan(4, 3, "custom")

    def kernel_must_not_run(*_):
        raise AssertionError("the kernel got an input type it does not take")

    scan.kernel = kernel_must_not_run
    x32, _ = _data(SHAPES[0], seed=9)
    x = Tensor(x32, ms.float16)
    out = scan(x, _scalar(TAU), _scalar(VTH)).float().asnumpy()
    np.testing.assert_allclose(out, lif_forward_np(x.float().asnumpy(), TAU, VTH, 4, 3), rtol=2.0 ** -10, atol=1e-3)
    with pytest.raises(AssertionError, match="does not take"):
        scan(Tensor(x32), _scalar(TAU), _scalar(VTH))


# ------------------------------------------------------------------ errors and back-end choice


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], indirect=True)
def test_bad_input_is_refused_clearly(mode):
    tau, vth = _scalar(TAU), _scalar(VTH)
    for backend in ("custom", "primitive"):
        scan = LIFScan(4, 3, backend)
        with pytest.raises(ValueError, match="4-D"):
            scan(Tensor(np.zeros((2, 3, 4), np.float32)), tau, vth)
        with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
            scan(Tensor(np.zeros((1, 2, 3, 4), np.int32)), tau, vth)
        with pytest.raises(ValueError, match="one element"):
            scan(Tensor(np.zeros((1, 2, 3, 4), np.float32)), Tensor(np.zeros(2, np.float32)), vth)


def test_bad_construction_is_refused_clearly():
    with pytest.raises(ValueError, match="window"):
        LIFScan(-2, 2)
    with pytest.raises(ValueError, match="window"):
        LIFScan(2.5, 2)
    with pytest.raises(ValueError, match="axis"):
        LIFScan(4, 1)
    with pytest.raises(ValueError, match="backend"):
        LIFScan(4, 2, backend="cuda")


def test_backend_choice_falls_back_and_logs_once(monkeypatch, caplog):
    def no_kernel(*_):
        raise KernelBuildError("no compiler here")

    monkeypatch.setattr(lif, "make_custom_ops", no_kernel)
    monkeypatch.setattr(custom_op, "_logged", set())
    with caplog.at_level(logging.INFO, logger="snn_mlp"):
        scans = [LIFScan(4, axis, "auto") for axis in (2, 3, 2)]
    assert all(s.backend == "primitive" and s.kernel is None for s in scans)
    fallbacks = [r for r in caplog.records if "no compiler here" in r.getMessage()]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING
    with pytest.raises(KernelBuildError, match="no compiler here"):
        LIFScan(4, 2, "custom")
    assert LIFScan(-1, 2, "custom").backend == "identity"  # the identity needs no kernel


# ------------------------------------------------------------------ the kernel cache


def _probe_recipe(directory, body="1"):
    (directory / "probe.h").write_text(f"#define PROBE_VALUE {body}\n")
    (directory / "probe.cc").write_text('#include "probe.h"\nextern "C" int Probe() { return PROBE_VALUE; }\n')
    return dataclasses.replace(LIF_CPU_RECIPE, name="probe", source="probe.cc", headers=("probe.h",),
                               flags=("-O1", "-shared", "-fPIC"), directory=directory)


def test_cache_rebuilds_on_change_only(tmp_path, monkeypatch):
    import ctypes

    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MS_CUSTOM_AOT_WHITE_LIST", raising=False)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    recipe = _probe_recipe(src_dir, "1")
    first = build_library(recipe)
    assert first.parent == tmp_path / "home" / "kernels"
    assert ctypes.CDLL(str(first)).Probe() == 1
    stamp = first.stat().st_mtime_ns
    assert build_library(recipe) == first and first.stat().st_mtime_ns == stamp  # cached, not rebuilt

    changed = _probe_recipe(src_dir, "2")  # the header changes
    second = build_library(changed)
    assert second != first and ctypes.CDLL(str(second)).Probe() == 2
    reflagged = build_library(dataclasses.replace(changed, flags=("-O2", "-shared", "-fPIC")))
    assert reflagged not in (first, second)
    assert not list((tmp_path / "home" / "kernels").glob("*.tmp"))


def test_concurrent_builds_compile_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "home"))
    recipe = _probe_recipe(tmp_path, "3")
    results = []
    with caplog.at_level(logging.INFO, logger="snn_mlp"):
        workers = [threading.Thread(target=lambda: results.append(build_library(recipe))) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert len(results) == 3 and len(set(results)) == 1 and results[0].exists()
    assert sum("building the probe" in r.getMessage() for r in caplog.records) == 1


def test_build_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "home"))
    recipe = _probe_recipe(tmp_path)
    with pytest.raises(KernelBuildError, match="needs 'no-such-compiler-x' on PATH"):
        build_library(dataclasses.replace(recipe, compiler="no-such-compiler-x"))
    (tmp_path / "probe.cc").write_text("this is not C++\n")
    with pytest.raises(KernelBuildError, match="compiling the probe kernel library failed"):
        build_library(recipe)
    monkeypatch.setenv("MS_CUSTOM_AOT_WHITE_LIST", str(tmp_path / "elsewhere"))
    with pytest.raises(KernelBuildError, match="MS_CUSTOM_AOT_WHITE_LIST"):
        build_library(_probe_recipe(tmp_path))


def test_library_name_is_keyed_on_the_cpu(monkeypatch):
    import src.kernels.build as build

    portable_recipe = dataclasses.replace(LIF_CPU_RECIPE, cpu_specific=False)
    native, portable = library_path(LIF_CPU_RECIPE), library_path(portable_recipe)
    monkeypatch.setattr(build, "_cpu_fingerprint", lambda: "some other CPU")
    assert library_path(LIF_CPU_RECIPE) != native
    assert library_path(portable_recipe) == portable


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_cuda_kernel_compiles(tmp_path, monkeypatch):
    """The CUDA source builds with the flags the GPU back-end uses (running it needs a GPU: see docs/KERNELS.md)."""
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path))
    path = build_library(LIF_CUDA_RECIPE)
    assert path.exists() and os.path.getsize(path) > 0
