"""The AscendC LIF kernels, run on the CPU emulator of the AscendC API (src/lif/kernels/ascend/emulator).

The real op_kernel/*.cpp and the real op_host tiling function are compiled with g++ against the emulator's
headers (once per source hash, cached) and checked against the loop-by-loop numpy reference on 1, 3, 40 and
48 cores, both axes, every kind of window, float32 and float16 storage. The emulator's own rules are checked
with deliberately wrong kernels (emulator/selftest/bad_kernels.cpp).
"""
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from src.lif.reference import lif_backward_np, lif_forward_np

ASCEND = Path(__file__).resolve().parents[1] / "src" / "lif" / "kernels" / "ascend"

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulator needs g++")

TAU, VTH = 0.25, -0.3
TOLERANCE = {np.float32: 1e-5, np.float16: 1e-3}
CORES = (1, 3, 40, 48)


def _load_harness():
    spec = importlib.util.spec_from_file_location("ascend_emulator_harness", ASCEND / "emulator" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def emu():
    harness = _load_harness()
    harness.build_all(extra=[([ASCEND / "emulator" / "selftest" / "bad_kernels.cpp"], _bad_kernels_path(harness))])
    return harness


def _bad_kernels_path(harness):
    return harness.cache_dir() / "bad_kernels"


def _inputs(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    g = rng.normal(size=shape).astype(dtype)
    return x, g


def _check_case(emu, shape, dtype, window, axis, cores, seed=0):
    x, g = _inputs(shape, dtype, seed)
    tol = TOLERANCE[dtype]
    fwd, info_f = emu.run("forward", x, TAU, VTH, window, axis, cores)
    bwd, info_b = emu.run("backward", x, TAU, VTH, window, axis, cores, dout=g)
    ref_out = lif_forward_np(x, TAU, VTH, window, axis)
    ref_dx, ref_dtau, ref_dvth = lif_backward_np(x, TAU, VTH, window, axis, g)
    case = f"{shape} {np.dtype(dtype).name} window={window} axis={axis} cores={cores}"
    np.testing.assert_allclose(fwd["out"].astype(np.float64), ref_out, rtol=tol, atol=tol, err_msg=f"out {case}")
    np.testing.assert_allclose(bwd["dx"].astype(np.float64), ref_dx, rtol=tol, atol=tol, err_msg=f"dx {case}")
    blocks = info_b["block_dim"]
    assert 1 <= blocks <= min(cores, 64)
    # Slots of cores that did not run are zeroed by core 0 (the driver pre-fills them with NaN).
    assert np.all(bwd["dtau_parts"][blocks:] == 0) and np.all(bwd["dvth_parts"][blocks:] == 0), case
    scale = np.abs(g.astype(np.float64)).sum() * (1 + abs(TAU)) + 1
    for name, parts, ref in (("dtau", bwd["dtau_parts"], ref_dtau), ("dvth", bwd["dvth_parts"], ref_dvth)):
        got = parts.astype(np.float64).sum()
        assert abs(got - ref[0]) <= tol * max(1.0, abs(ref[0])) + 1e-7 * scale, f"{name} {case}: {got} vs {ref[0]}"
    return info_f, info_b


WINDOWS = (-1, 0, 2, 3, 4, 5, 40)  # 40: longer than every axis below (identity)
SHAPES = ((2, 3, 7, 9), (1, 2, 13, 70))


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("axis", [2, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernels_match_reference(emu, shape, axis, dtype):
    for i, window in enumerate(WINDOWS):
        _check_case(emu, shape, dtype, window, axis, CORES[i % len(CORES)], seed=i)


@pytest.mark.parametrize("cores", CORES)
def test_every_core_count(emu, cores):
    _check_case(emu, (3, 5, 11, 6), np.float32, 3, 2, cores, seed=cores)
    _check_case(emu, (3, 5, 11, 6), np.float16, 0, 3, cores, seed=cores)


@pytest.mark.parametrize("axis,window", [(2, 4), (3, 4), (3, 0), (2, 0)])
def test_large_plane(emu, axis, window):
    """1x1x7x8192: wider than one tile along W (axis 2), a window of 8192 along W (axis 3)."""
    info_f, info_b = _check_case(emu, (1, 1, 7, 8192), np.float32, window, axis, 48)
    if axis == 3 and window == 0:
        assert info_b["tiles_per_window"] > 1  # the window walks tiles, carrying its state
    if axis == 2:
        assert info_f["lane_tile"] < 8192  # the row walks tiles


@pytest.mark.parametrize("shape,axis,window", [
    ((1, 1, 400, 7), 2, 0),      # old tiling: lif=0 with H > 384 returned GRAPH_FAILED
    ((1, 2, 3, 6200), 3, 2),     # old tiling: W > 6144 returned GRAPH_FAILED
    ((1, 1, 1000, 65), 2, 0),    # a window of 1000 rows spans tiles
    ((2, 1, 3, 301), 3, 300),    # a window of 300 positions along W spans tiles, with a tail
])
def test_any_size_walks_tiles(emu, shape, axis, window):
    dtype = np.float16 if shape[3] == 301 else np.float32
    info_f, info_b = _check_case(emu, shape, dtype, window, axis, 40)
    if window in (0, 300) and shape[axis] >= 300:
        assert info_b["tiles_per_window"] > 1


@pytest.mark.parametrize("shape", [(0, 3, 7, 9), (2, 3, 0, 9), (2, 3, 7, 0)])
def test_empty_tensors(emu, shape):
    x = np.zeros(shape, np.float32)
    for axis in (2, 3):
        assert emu.run("forward", x, TAU, VTH, 2, axis, 40)[0]["out"].shape == shape
        bwd, info = emu.run("backward", x, TAU, VTH, 2, axis, 40, dout=x)
        assert info["block_dim"] == 1 and not bwd["dtau_parts"].any() and not bwd["dvth_parts"].any()


def test_no_atomics_and_partials_per_core(emu):
    """dtau/dvth come as one float32 per core; nothing relies on an output's initial value or atomics."""
    x, g = _inputs((4, 6, 9, 10), np.float32, 7)
    sums = set()
    for cores in CORES:
        bwd, info = emu.run("backward", x, TAU, VTH, 3, 2, cores, dout=g)
        assert info["need_atomic"] is False
        assert 1 <= info["block_dim"] <= min(cores, info["items"])
        assert np.isfinite(bwd["dtau_parts"]).all() and np.isfinite(bwd["dvth_parts"]).all()
        sums.add(round(float(bwd["dtau_parts"].astype(np.float64).sum()), 4))
    assert len(sums) == 1


def test_dtau_dvth_sums_are_accurate(emu):
    """131072 elements on one core: within 1e-6 of float64, where a serial float32 sum is not."""
    shape = (1, 2, 256, 256)
    x, _ = _inputs(shape, np.float32, 11)
    g = np.random.default_rng(12).uniform(0.5, 1.5, size=shape).astype(np.float32)  # sums grow as they go
    bwd, info = emu.run("backward", x, TAU, VTH, 4, 2, 1, dout=g)
    assert info["block_dim"] == 1
    _, ref_dtau, ref_dvth = lif_backward_np(x, TAU, VTH, 4, 2, g)
    out = lif_forward_np(x, TAU, VTH, 4, 2)
    silent = (out <= VTH).astype(np.float32)  # fire <=> out > vth (no tail here)
    serial_dvth = np.cumsum((g * silent).ravel(), dtype=np.float32)[-1]  # one float, element after element
    for parts, ref in ((bwd["dtau_parts"], ref_dtau[0]), (bwd["dvth_parts"], ref_dvth[0])):
        assert abs(parts.astype(np.float64).sum() - ref) <= 1e-6 * abs(ref)
    assert abs(float(serial_dvth) - ref_dvth[0]) > 1e-6 * abs(ref_dvth[0])  # the test can tell the two apart


def test_scalar_accesses_grow_with_tiles_not_elements(emu):
    """The hot path is vector code: per-element scalar GetValue/SetValue would scale with the element count."""
    small, _ = _inputs((1, 1, 8, 64), np.float32, 1)
    wide, _ = _inputs((1, 1, 8, 1024), np.float32, 1)
    for mode in ("forward", "backward"):
        runs = [emu.run(mode, x, TAU, VTH, 4, 2, 1, dout=x)[1] for x in (small, wide)]
        assert runs[0]["items"] == runs[1]["items"] == 1  # one tile each, 16x the elements
        assert runs[0]["scalar"] == runs[1]["scalar"] <= 4  # tau and vth, once per core
        assert runs[0]["vector"] == runs[1]["vector"]  # one instruction per row covers every lane
        assert runs[1]["repeats"] > runs[0]["repeats"]
    many, _ = _inputs((6, 5, 8, 64), np.float32, 2)
    info = emu.run("forward", many, TAU, VTH, 4, 2, 48)[1]
    assert info["scalar"] <= 2 * info["block_dim"] + info["items"]


def test_ub_stays_within_capacity(emu):
    for shape, axis, window, dtype in (((1, 1, 7, 8192), 2, 4, np.float32), ((2, 3, 56, 56), 3, 4, np.float16),
                                       ((1, 1, 3, 5000), 3, 0, np.float32)):
        x, g = _inputs(shape, dtype, 3)
        info = emu.run("backward", x, TAU, VTH, window, axis, 40, dout=g)[1]
        assert 64 * 1024 < info["ub_peak"] <= (192 - 8) * 1024  # big tiles, within the tiling's budget


def test_bytes_moved_match_accounting(emu):
    """Forward reads x and writes out once (8 B/elem fp32); backward reads x, dout and writes dx (12 B/elem)."""
    x, g = _inputs((2, 4, 16, 24), np.float32, 5)
    n = x.size
    for axis in (2, 3):
        f = emu.run("forward", x, TAU, VTH, 4, axis, 40)[1]
        b = emu.run("backward", x, TAU, VTH, 4, axis, 40, dout=g)[1]
        assert f["gm_bytes"] == 8 * n
        assert b["gm_bytes"] == 12 * n + 8 * b["block_dim"] + 2 * 4 * (64 - b["block_dim"])


RULES = {
    "unaligned_copy": "copy-align", "ub_overflow": "ub-capacity", "gm_out_of_bounds": "gm-bounds",
    "gm_scalar_out_of_bounds": "gm-bounds", "ub_out_of_bounds": "ub-bounds", "ub_unaligned": "ub-align",
    "copy_rows_beyond_limit": "copy-params", "compare_count": "compare-count", "queue_missing_free": "queue",
    "queue_empty_deque": "queue", "queue_over_alloc": "queue", "two_pipes": "pipe", "tbuf_unset": "tbuf",
    "select_mode": "select", "cast_mode": "cast", "gather_outside": "ub-bounds", "gather_misaligned": "gather",
    "queue_depth": "queue", "three_buffers": "pipe", "missing_sync_read": "sync", "missing_sync_overwrite": "sync",
}


@pytest.fixture(scope="session")
def bad_kernels(emu):
    return _bad_kernels_path(emu)


def test_bad_kernel_cases_cover_the_rules(bad_kernels):
    listed = subprocess.run([str(bad_kernels), "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listed) == sorted(["good", *RULES])
    ok = subprocess.run([str(bad_kernels), "good"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("case", sorted(RULES))
def test_emulator_rejects_wrong_kernel(bad_kernels, case):
    proc = subprocess.run([str(bad_kernels), case], capture_output=True, text=True)
    assert proc.returncode == 3, (case, proc.stderr)
    assert proc.stderr.startswith(f"ascend-emulator: {RULES[case]}:"), proc.stderr


@pytest.mark.parametrize("mode,source,entry", [
    ("forward", "lif_scan_custom.cpp", "lif_scan_custom"),
    ("backward", "lif_scan_grad_custom.cpp", "lif_scan_grad_custom"),
])
def test_kernel_parameters_follow_the_registered_op(emu, mode, source, entry):
    """CANN calls the kernel with the OpDef's inputs, then outputs, then workspace and tiling, in that order."""
    x = np.zeros((1, 1, 2, 3), np.float32)
    info = emu.run(mode, x, TAU, VTH, 2, 2, 1, dout=x)[1]
    text = (ASCEND / "op_kernel" / source).read_text()
    params = re.search(rf"void {entry}\(([^)]*)\)", text).group(1)
    names = [p.split()[-1] for p in params.split(",")]
    assert names == info["inputs"] + info["outputs"] + ["workspace", "tiling"]
    assert info["attrs"] == ["window", "axis"]


def test_kernel_sources_have_no_lambdas_and_mark_device_functions():
    """AscendC compiles device code only from __aicore__ functions; a plain lambda handed to a helper is not."""
    for path in sorted((ASCEND / "op_kernel").glob("*")):
        text = path.read_text()
        code = re.sub(r"//.*", "", text)
        assert not re.search(r"\[[&=]?[\w\s,&*]*\]\s*\([^)]*\)\s*(mutable\s*)?\{", code), f"lambda in {path.name}"
        for line in code.splitlines():
            if re.search(r"\binline\b", line):
                assert "__aicore__" in line, f"{path.name}: {line.strip()}"
