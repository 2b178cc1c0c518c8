"""The CUDA LIF kernel bodies (src/lif/kernels/lif_cuda.cu), compiled for the host and run there.

No GPU is needed: ``cuda_host_emulation.h`` turns the kernels into C++ whose CUDA threads are fibers, with
``__syncthreads``/warp shuffles as real barriers and ``__shared__`` arrays shared by the block. The library is
called at its ctypes entry points like on a GPU host and compared with ``src/lif/reference.py``: every
window/axis/storage type, with the tile, the grid and the block shrunk so that small tensors reach every path
(several tiles per block, grid-stride loops, rows too long for a tile, windows longer than a register chunk),
and once more with the sizes the GPU build uses. The emulation itself is checked too: a kernel that forgets a
``__syncthreads`` must give a wrong result here, as it would on a device.
"""
import ctypes
import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pytest

from src.kernels import build
from src.kernels.build import LIF_CUDA_RECIPE, build_library
from src.kernels.standalone import StandaloneKernel
from src.lif.reference import lif_backward_np, lif_forward_np

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on PATH")

EMULATION_FLAGS = ("-x", "c++", "-std=c++17", "-O1", "-fPIC", "-shared", "-D_GLIBCXX_USE_CXX11_ABI=0",
                   "-DLIF_HOST_EMULATION", "-DLIF_CUDA_ARCHS=sm_75/sm_80/compute_90")
# Two blocks of 64 threads at most three blocks, 96-element tiles: a (2, 2, 16, 33) tensor already needs
# several tiles per block, and a row of 130 takes the one-thread-per-window path.
SMALL = ("-DLIF_THREADS=64", "-DLIF_TILE_ELEMENTS=96", "-DLIF_MAX_BLOCKS=3")

SHAPES = [(2, 3, 7, 9), (1, 2, 13, 5), (2, 2, 16, 33), (1, 1, 3, 130), (1, 1, 130, 3)]
WINDOWS = (-1, 0, 1, 2, 3, 4, 5, 8, 17, 40)  # 17 and whole axes of 33/130 exceed the 16-position chunk


def _emulation_library(extra_flags):
    recipe = dataclasses.replace(LIF_CUDA_RECIPE, name="lif_cuda_host", compiler="g++",
                                 headers=LIF_CUDA_RECIPE.headers + ("cuda_host_emulation.h",),
                                 flags=EMULATION_FLAGS + extra_flags, toolkit=None, archs=())
    return build_library(recipe)


@pytest.fixture(scope="module")
def small_kernel():
    return StandaloneKernel(_emulation_library(SMALL))


@pytest.fixture(scope="module")
def gpu_sized_kernel():
    return StandaloneKernel(_emulation_library(()))


def _bf16_bits(values):
    """bfloat16 bits of float32 values, rounded to nearest even (what __float2bfloat16_rn does)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _inputs(rng, shape):
    """Values every storage type holds exactly (bfloat16 mantissas, no float16 subnormals)."""
    values = rng.standard_normal(shape).astype(np.float32)
    values = np.where(np.abs(values) < 2.0 ** -6, np.float32(2.0 ** -6), values)
    return (_bf16_bits(values).astype(np.uint32) << 16).view(np.float32)


STORAGE = {"float32": lambda v: v.astype(np.float32), "float16": lambda v: v.astype(np.float16),
           "bfloat16": _bf16_bits}


def _handle(array, dtype_name):
    return array.ctypes.data, array.shape, dtype_name


def _run(kernel, x, g, tau, vth, window, axis, dtype_name):
    """out, dx (as stored), dtau, dvth of the library on float32 x/g held as `dtype_name`."""
    store = STORAGE[dtype_name]
    xs, gs = store(x), store(g)
    out, dx = np.empty_like(xs), np.empty_like(xs)
    tau_a, vth_a = np.array([tau], np.float32), np.array([vth], np.float32)
    dtau, dvth = np.empty(1, np.float32), np.empty(1, np.float32)
    workspace = np.empty(kernel.workspace_bytes, np.uint8)
    scalars = [_handle(tau_a, "float32"), _handle(vth_a, "float32")]
    kernel.forward(_handle(xs, dtype_name), *scalars, _handle(out, dtype_name), window, axis)
    kernel.backward(_handle(xs, dtype_name), *scalars, _handle(gs, dtype_name), _handle(dx, dtype_name),
                    _handle(dtau, "float32"), _handle(dvth, "float32"), window, axis,
                    workspace=_handle(workspace, "uint8"))
    return out, dx, dtau[0], dvth[0]


def _check_against_reference(kernel, shape, axis, windows, seed):
    rng = np.random.default_rng(seed)
    for window in windows:
        x, g = _inputs(rng, shape), _inputs(rng, shape)
        tau, vth = float(np.float32(rng.uniform(-0.9, 0.9))), float(np.float32(rng.uniform(-1.0, 0.5)))
        ref_out = lif_forward_np(x, tau, vth, window, axis)
        ref_dx, ref_dtau, ref_dvth = lif_backward_np(x, tau, vth, window, axis, g)
        where = f"shape={shape} axis={axis} window={window}"
        out, dx, dtau, dvth = _run(kernel, x, g, tau, vth, window, axis, "float32")
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5, err_msg=f"out {where}")
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5, err_msg=f"dx {where}")
        np.testing.assert_allclose(dtau, ref_dtau[0], rtol=1e-4, atol=1e-4, err_msg=f"dtau {where}")
        np.testing.assert_allclose(dvth, ref_dvth[0], rtol=1e-4, atol=1e-4, err_msg=f"dvth {where}")
        # The same values stored as float16/bfloat16 go through the same float32 math: each result is the
        # float32 result rounded once, and the scalar gradients are identical.
        for name in ("float16", "bfloat16"):
            half_out, half_dx, half_dtau, half_dvth = _run(kernel, x, g, tau, vth, window, axis, name)
            np.testing.assert_array_equal(half_out, STORAGE[name](out), err_msg=f"{name} out {where}")
            np.testing.assert_array_equal(half_dx, STORAGE[name](dx), err_msg=f"{name} dx {where}")
            assert (half_dtau, half_dvth) == (dtau, dvth), f"{name} dtau/dvth {where}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("axis", (2, 3))
def test_matches_reference_on_every_path(small_kernel, shape, axis):
    _check_against_reference(small_kernel, shape, axis, WINDOWS, seed=sum(shape) * axis)


@pytest.mark.parametrize("axis", (2, 3))
def test_matches_reference_with_gpu_sizes(gpu_sized_kernel, axis):
    """256 threads, 2048-element tiles: (2, 4, 20, 56) is two and a half tiles of rows along W. The threads of a
    block run last to first between barriers here (first to last elsewhere), so a race would change results."""
    gpu_sized_kernel.lib.LifEmulationSetOrder(1)
    try:
        _check_against_reference(gpu_sized_kernel, (2, 4, 20, 56), axis, (0, 3, 4, 5, 8), seed=axis)
    finally:
        gpu_sized_kernel.lib.LifEmulationSetOrder(0)


def test_launch_failure_is_one_clear_line(small_kernel, capfd):
    lib = small_kernel.lib
    x = _inputs(np.random.default_rng(0), (1, 2, 4, 8))
    try:
        lib.LifEmulationSetDevice(6, 1, 12040)
        lib.LifEmulationSetLaunchError(209)  # cudaErrorNoKernelImageForDevice
        with pytest.raises(RuntimeError, match="LifScanForwardStandalone returned 1"):
            _run(small_kernel, x, x, 0.5, 0.1, 4, 3, "float32")
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        for part in ("launching the forward kernel failed", "cudaErrorNoKernelImageForDevice",
                     "compute capability 6.1", "driver for CUDA 12.4", "built with CUDA 12.0",
                     "sm_75/sm_80/compute_90", "nvcc --list-gpu-arch"):
            assert part in lines[0], (part, lines[0])
        lib.LifEmulationSetDevice(8, 0, 11080)
        lib.LifEmulationSetLaunchError(35)  # cudaErrorInsufficientDriver
        with pytest.raises(RuntimeError):
            _run(small_kernel, x, x, 0.5, 0.1, 4, 2, "float16")
        line = capfd.readouterr().err.strip()
        assert "driver for CUDA 11.8" in line and "the driver is older than the toolkit" in line, line
    finally:
        lib.LifEmulationSetLaunchError(0)
        lib.LifEmulationSetDevice(9, 0, 12040)
    out, *_ = _run(small_kernel, x, x, 0.5, 0.1, 4, 3, "float32")  # and the next launch works again
    np.testing.assert_allclose(out, lif_forward_np(x, 0.5, 0.1, 4, 3), rtol=1e-5, atol=1e-5)


HARNESS_PROBE = r"""
#include "cuda_host_emulation.h"
// Reverses 64 floats through shared memory, with or without the barrier between writing and reading.
template <bool kSync, int kInstance>  // each instance has its own (zeroed) tile
__global__ void Reverse(const float *in, float *out) {
  __shared__ float tile[64];
  tile[threadIdx.x] = in[threadIdx.x];
  if (kSync) __syncthreads();
  out[threadIdx.x] = tile[63 - threadIdx.x];
}
// Sum of each warp's values by shuffles, written by lane 0.
__global__ void WarpSums(const float *in, float *out) {
  float v = in[threadIdx.x];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if ((threadIdx.x & 31) == 0) out[threadIdx.x / 32] = v;
}
extern "C" void Run(int which, const float *in, float *out, int reverse) {
  LifEmulationSetOrder(reverse);
  const auto synced = Reverse<true, 0>, racy = Reverse<false, 0>, racy_again = Reverse<false, 1>;
  if (which == 0) LIF_LAUNCH(synced, 1, 64, nullptr, in, out);
  if (which == 1) LIF_LAUNCH(racy, 1, 64, nullptr, in, out);
  if (which == 2) LIF_LAUNCH(WarpSums, 1, 64, nullptr, in, out);
  if (which == 3) LIF_LAUNCH(racy_again, 1, 64, nullptr, in, out);
}
"""


def test_emulation_is_faithful_to_barriers(tmp_path):
    source = tmp_path / "probe.cc"
    source.write_text(HARNESS_PROBE)
    library = tmp_path / "probe.so"
    subprocess.run(["g++", "-std=c++17", "-O1", "-fPIC", "-shared", f"-I{LIF_CUDA_RECIPE.directory}", "-o",
                    str(library), str(source)], check=True, capture_output=True)
    run = ctypes.CDLL(str(library)).Run
    values = np.arange(64, dtype=np.float32) + 1
    out = np.zeros(64, np.float32)

    def call(which, reverse=0):
        out[:] = 0
        run(which, ctypes.c_void_p(values.ctypes.data), ctypes.c_void_p(out.ctypes.data), reverse)
        return out.copy()

    for reverse in (0, 1):
        np.testing.assert_array_equal(call(0, reverse), values[::-1])
        np.testing.assert_array_equal(call(2, reverse)[:2], [values[:32].sum(), values[32:].sum()])
    # Without the barrier, threads read slots that others have not written yet: which ones depends on the order.
    forward, backward = call(1), call(3, reverse=1)
    assert (forward[:32] == 0).all() and (forward[32:] == values[::-1][32:]).all()
    assert (backward[32:] == 0).all() and (backward[:32] == values[::-1][:32]).all()


# ----------------------------------------------------------------------------------------------- building

def _fake_nvcc(directory, version, archs, lists=True):
    """An `nvcc` of CUDA `version` knowing compute_<archs>; compiling logs its arguments and writes -o."""
    directory.mkdir(parents=True, exist_ok=True)
    names = " ".join(f"compute_{a}" for a in archs)
    list_answer = f'printf "%s\\n" {names}; exit 0' if lists else 'echo "nvcc fatal: Unknown option" >&2; exit 1'
    script = directory / "nvcc"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --version) echo "Cuda compilation tools, release {version.rsplit('.', 1)[0]}, V{version}"; exit 0;;
  --list-gpu-arch) {list_answer};;
  --help) echo "Allowed values for this option: {names.replace(' ', ',')},sm_xx"; exit 0;;
esac
echo "$@" >> "{directory}/calls.log"
while [ $# -gt 0 ]; do if [ "$1" = -o ]; then shift; echo fake > "$1"; fi; shift; done
""")
    script.chmod(0o755)
    return directory / "calls.log"


@pytest.fixture
def fake_toolkits(tmp_path, monkeypatch):
    """Builds into a private cache with the fake nvcc of `use(version, archs)` alone on PATH."""
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "home"))
    build.nvcc_toolkit.cache_clear()
    # What the build script runs, and nothing else: /usr/bin may hold a real nvcc.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "python3").symlink_to(sys.executable)
    for tool in ("bash", "dirname", "sed"):
        (tools / tool).symlink_to(shutil.which(tool))

    def use(version, archs=(), lists=True):
        directory = tmp_path / f"nvcc-{version}-{lists}"
        log = _fake_nvcc(directory, version, archs, lists) if version else None
        monkeypatch.setenv("PATH", f"{directory}:{tools}")
        return log

    yield use
    build.nvcc_toolkit.cache_clear()


@pytest.mark.parametrize("version, listed, native, ptx, lists", [
    ("13.0.88", (75, 80, 86, 87, 88, 89, 90, 100, 110, 103, 120, 121), (75, 80, 86, 89, 90), 90, True),
    ("11.6.124", (35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87), (70, 75, 80, 86), 86, True),
    ("11.0.221", (35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80), (70, 75, 80), 80, False),  # via --help
])
def test_architectures_come_from_the_toolkit(fake_toolkits, version, listed, native, ptx, lists):
    log = fake_toolkits(version, listed, lists)
    path = build_library(LIF_CUDA_RECIPE)
    assert path.name.endswith(f"-nvcc{version}.so") and path.exists()
    args = log.read_text().split()
    codes = {a for a in args if a.startswith("arch=")}
    assert codes == {f"arch=compute_{a},code=sm_{a}" for a in native} | {f"arch=compute_{ptx},code=compute_{ptx}"}
    assert "-DLIF_CUDA_ARCHS=" + "/".join([f"sm_{a}" for a in native] + [f"compute_{ptx}"]) in args


def test_nvcc_version_keys_the_cache_and_hosts_without_nvcc_find_a_prebuilt(fake_toolkits, monkeypatch):
    fake_toolkits("11.6.124", (70, 75, 80, 86))
    old = build_library(LIF_CUDA_RECIPE)
    fake_toolkits("12.4.131", (70, 75, 80, 86, 89, 90))
    new = build_library(LIF_CUDA_RECIPE)
    assert old != new and old.exists() and new.exists()
    assert old.name.split("-nvcc")[0] == new.name.split("-nvcc")[0]  # same sources, two toolkits
    fake_toolkits(None)  # no nvcc: the newest toolkit the driver supports
    monkeypatch.setattr(build, "_cuda_driver_version", lambda: (12, 2))
    assert build_library(LIF_CUDA_RECIPE) == old
    monkeypatch.setattr(build, "_cuda_driver_version", lambda: (12, 8))
    assert build_library(LIF_CUDA_RECIPE) == new
    monkeypatch.setattr(build, "_cuda_driver_version", lambda: None)
    assert build_library(LIF_CUDA_RECIPE) == new


def test_cuda_build_errors_are_clear(fake_toolkits):
    from src.kernels.build import KernelBuildError

    fake_toolkits(None)
    with pytest.raises(KernelBuildError, match=r"needs 'nvcc' on PATH.*nor a library prebuilt.*build_cuda_kernels"):
        build_library(LIF_CUDA_RECIPE)
    fake_toolkits("10.1.243", (30, 35, 50, 60, 61, 70, 75))
    with pytest.raises(KernelBuildError, match=r"nvcc 10\.1\.243 .* too old: .* needs CUDA 11\.0 or newer"):
        build_library(LIF_CUDA_RECIPE)
    fake_toolkits("11.2.152", (35, 50, 60, 61))  # a toolkit that knew none of the wanted GPUs
    with pytest.raises(KernelBuildError, match=r"nvcc 11\.2\.152 .* lists none of the architectures"):
        build_library(LIF_CUDA_RECIPE)


def test_build_script_reports_the_library(fake_toolkits, tmp_path):
    fake_toolkits("12.4.131", (70, 75, 80, 86, 89, 90))
    script = LIF_CUDA_RECIPE.directory.parents[2] / "scripts" / "build_cuda_kernels.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "nvcc 12.4.131" in result.stdout and "sm_70 sm_75 sm_80 sm_86 sm_89 sm_90 + PTX compute_90" in result.stdout
    assert result.stdout.strip().endswith("-nvcc12.4.131.so")
    fake_toolkits(None)
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "nvcc is not on PATH" in result.stderr


# ----------------------------------------------------------------------------------------------- the GPU check

CHECK_SCRIPT = LIF_CUDA_RECIPE.directory.parents[2] / "scripts" / "check_cuda_kernels.py"


def _check_script(*args):
    return subprocess.run([sys.executable, str(CHECK_SCRIPT), *args], capture_output=True, text=True, check=False,
                          timeout=120)


def test_check_script_help_and_dry_run_need_no_gpu(fake_toolkits, tmp_path):
    result = _check_script("--help")
    assert result.returncode == 0
    for flag in ("--all", "--check", "--bench", "--build-only", "--dry-run", "--lib", "--json", "--bench-shape",
                 "--bench-window", "--repeat"):
        assert flag in result.stdout
    fake_toolkits(None)  # no nvcc and nothing prebuilt: the plan says so
    result = _check_script("--dry-run", "--json", str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stderr
    assert "kernel library:   cannot be had here" in result.stdout and "needs 'nvcc'" in result.stdout
    assert "120 cases x 3 storage types" in result.stdout and "(128, 96, 56, 56), window 4" in result.stdout
    assert not (tmp_path / "out.json").exists()
    fake_toolkits("12.4.131", (70, 75, 80, 86, 89, 90))
    result = _check_script("--dry-run")
    assert "lif_cuda_original-" in result.stdout and "-nvcc12.4.131.so (to be built)" in result.stdout


def test_check_script_errors_are_one_line(fake_toolkits):
    fake_toolkits(None)
    result = _check_script("--all")
    assert result.returncode == 1 and result.stderr.startswith("error: building the lif_cuda kernel library needs")
    fake_toolkits("12.4.131", (70, 75, 80, 86, 89, 90))  # builds (fake libraries), then finds no GPU
    result = _check_script("--check")
    assert result.returncode == 1, result.stdout
    assert "building the lif_cuda kernel library" in result.stderr  # the build shows progress
    assert result.stderr.strip().splitlines()[-1] in (
        "error: no CUDA device visible to PyTorch (torch.cuda.is_available() is False)",
        "error: this check needs PyTorch with CUDA (pip install torch)")
    result = _check_script("--bench-window", "5")
    assert result.returncode == 2 and "must divide H and W" in result.stderr


@pytest.fixture(scope="module")
def check_module():
    """scripts/check_cuda_kernels.py as a module, with its baseline built for the host."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_cuda_kernels", CHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_script_logic_on_the_host(check_module, small_kernel, monkeypatch, capsys):
    """The GPU check's own code, run on CPU tensors with host-emulation builds of the kernel and the baseline:
    its comparisons pass a correct kernel and catch a wrong one, the baseline computes the scan, the bench
    table and JSON rows come out."""
    import torch

    from src.lif import reference

    torch.manual_seed(0)
    original_recipe = dataclasses.replace(check_module._original_recipe(), compiler="g++", toolkit=None,
                                          archs=(), flags=EMULATION_FLAGS + (f"-I{LIF_CUDA_RECIPE.directory}",))
    device = check_module.Device("cpu")
    kernel = check_module.Kernel(small_kernel, device)
    original = check_module.Original(build_library(original_recipe), device)
    monkeypatch.setattr(check_module, "SHAPES", ((2, 3, 7, 9), (1, 1, 2, 130)))
    report = {}
    assert check_module.check_correctness(kernel, reference, report)
    assert report["correctness"] == {"cases": 40, "dtypes": ["float32", "float16", "bfloat16"], "failures": []}

    class OffByOnePerMille(check_module.Kernel):
        def backward(self, *args):
            dx, dtau, dvth = super().backward(*args)
            return dx * 1.001, dtau, dvth

    monkeypatch.setattr(check_module, "SHAPES", ((2, 3, 7, 9),))
    assert not check_module.check_correctness(OffByOnePerMille(small_kernel, device), reference, report)
    assert all("float32 dx off the reference" in " ".join(f["problems"]) for f in report["correctness"]["failures"])
    check_module.check_original(original, reference)  # raises when the baseline is wrong
    check_module.bench(kernel, original, (1, 2, 8, 12), 4, 1, report)
    rows = report["bench"]["rows"]
    assert {(r["what"], r["dtype"]) for r in rows} >= {("device copy", "float16"), ("backward", "float32"),
                                                       ("original forward", "float32")}
    assert sum(r["what"].startswith("speedup") for r in rows) == 4 and all(r["gb_s"] > 0 for r in rows if "gb_s" in r)
    assert "forward axis 3" in capsys.readouterr().out
