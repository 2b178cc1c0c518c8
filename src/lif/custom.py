"""The LIF scan as ``ops.Custom(func_type="aot")`` kernels, and building/caching their shared libraries.

A library is compiled on first use into a per-user cache, ``$SNNMLP_HOME/kernels`` (default
``~/.cache/snn_mlp/kernels``). Its file name carries a hash of the sources, the flags and, for
``-march=native`` builds, the CPU: a changed source or flag builds a new file, and a cache shared by different
machines never hands one the other's binary. The CUDA library's name also ends in the nvcc version
(``lif_cuda-<hash>-nvcc12.4.131.so``), whose architecture list decides what is compiled: a host with nvcc
builds and uses its own toolkit's file; a host without nvcc uses one prebuilt elsewhere (e.g. by
``scripts/build_cuda_kernels.sh``) for the same sources, preferring the newest toolkit its driver supports.
The compiler writes to a temporary name that is renamed into place, under a file lock: concurrent processes
(msrun ranks, pytest workers) wait for one build and never load a half-written file.

Kernels: ``kernels/lif_cpu.cc`` (g++, CPU) and ``kernels/lif_cuda.cu`` (nvcc, GPU). The Ascend kernel is an
AscendC operator installed separately (``scripts/build_ascend_kernels.sh``) and called by its name.

Building needs no MindSpore (it is imported only to make the ops), so this file also runs as a script on a
build host: ``python src/lif/custom.py cuda`` builds the CUDA library into the cache and prints its path.
"""
import argparse
import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["KernelBuildError", "KernelRecipe", "CPU_RECIPE", "CUDA_RECIPE", "ASCEND_OP_NAME", "KERNEL_DTYPES", "kernel_cache_dir",
           "library_path", "build_library", "find_ascend_op", "ascend_opp_search_dirs", "ascend_op_missing_message",
           "make_custom_ops", "StandaloneKernel"]

logger = logging.getLogger("snn_mlp")

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
FORWARD_SYMBOL = "LifScanForward"
BACKWARD_SYMBOL = "LifScanBackward"
ASCEND_OP_NAME = "LifScanCustom"
ASCEND_GRAD_OP_NAME = "LifScanGradCustom"
ASCEND_OP_NAMES = (ASCEND_OP_NAME, ASCEND_GRAD_OP_NAME)
# Tensor inputs and outputs of the kernels, in call order; the attributes follow the inputs in every call.
FORWARD_IO = (("x", "tau", "vth"), ("out",))
HOST_BACKWARD_IO = (("x", "tau", "vth", "dout"), ("dx", "dtau", "dvth"))
ASCEND_BACKWARD_IO = (("dout", "x", "tau", "vth"), ("dx", "dtau_parts", "dvth_parts"))
ATTR_NAMES = ("window", "axis")
# Length of dtau_parts/dvth_parts of LifScanGradCustom: one float32 slot per AI core (op_host kPartSlots).
ASCEND_PART_SLOTS = 64
SCALAR_NAMES = ("tau", "vth", "dtau", "dvth", "dtau_parts", "dvth_parts")
# Storage types of x each kernel takes (tau/vth are always float32).
KERNEL_DTYPES = {"CPU": ("float32", "float16", "bfloat16"), "GPU": ("float32", "float16", "bfloat16"),
                 "Ascend": ("float32", "float16")}


class KernelBuildError(RuntimeError):
    """A kernel library cannot be had: no compiler, a failed build, or a path MindSpore refuses."""


@dataclass(frozen=True)
class KernelRecipe:
    """How one kernel library is built: ``compiler flags... -I directory -o out directory/source``."""
    name: str
    source: str  # file name under kernels/
    headers: tuple  # file names under kernels/ the source includes (part of the hash)
    compiler: str
    flags: tuple
    cpu_specific: bool  # built for the CPU it runs on (-march=native): the CPU is part of the hash
    directory: Path = KERNEL_DIR
    # For compilers whose version decides the flags (nvcc): compiler path -> Toolkit; its tag ends the file name.
    toolkit: object = None
    archs: tuple = ()  # what `toolkit` chooses from (part of the hash)


@dataclass(frozen=True)
class Toolkit:
    """What one compiler installation adds to a recipe: its version tag and the flags that depend on it."""
    tag: str
    flags: tuple
    summary: str  # one line for people: version and targets


CPU_RECIPE = KernelRecipe(
    name="lif_cpu",
    source="lif_cpu.cc",
    headers=("aot_extra.h", "lif_host.h"),
    compiler="g++",
    # -march=native lets the row loops use the widest vectors of this CPU; the hash keys the cache on the
    # CPU, so a cache shared across machines holds one build per CPU model. -fopenmp-simd honours the
    # `omp simd` pragmas without linking an OpenMP runtime.
    flags=("-std=c++17", "-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-pthread",
           "-D_GLIBCXX_USE_CXX11_ABI=0"),
    cpu_specific=True,
)

# GPUs the CUDA kernel is compiled for when the toolkit lists them: V100, T4/RTX 20, A100, RTX 30/A10,
# RTX 40/L4, H100/H200.
CUDA_ARCHS = (70, 75, 80, 86, 89, 90)


@lru_cache(maxsize=None)
def nvcc_toolkit(nvcc):
    """The nvcc at path ``nvcc``: tag ``nvcc<version>`` and ``-gencode`` flags for the ``CUDA_ARCHS`` it lists.

    Native code for each of those architectures the toolkit knows, and PTX of the newest of them, which the
    driver compiles for any newer GPU. The list is the toolkit's own (``--list-gpu-arch``, or the
    ``compute_NN`` names of ``--help`` for toolkits without that option), so an old nvcc builds what it can;
    CUDA 11.0 at least, for ``cuda_bf16.h``.
    """
    def output(*args):
        try:
            result = subprocess.run([nvcc, *args], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise KernelBuildError(f"running '{nvcc} {' '.join(args)}' failed: {err}") from err
        return result.returncode, result.stdout + result.stderr

    _, text = output("--version")
    version = re.search(r"release \d+\.\d+, V(\d+\.\d+\.\d+)", text)
    if version is None:
        raise KernelBuildError(f"cannot read the CUDA version from '{nvcc} --version': {text.strip()[-300:]!r}")
    if tuple(map(int, version.group(1).split(".")[:2])) < (11, 0):
        raise KernelBuildError(f"nvcc {version.group(1)} ({nvcc}) is too old: the LIF kernel needs CUDA 11.0 or newer "
                               "(for bfloat16)")
    status, text = output("--list-gpu-arch")
    if status != 0:
        _, text = output("--help")
    known = {int(n) for n in re.findall(r"compute_(\d+)", text)}
    chosen = [arch for arch in CUDA_ARCHS if arch in known]
    if not chosen:
        raise KernelBuildError(f"nvcc {version.group(1)} ({nvcc}) lists none of the architectures the LIF kernel "
                               f"is built for (compute_{', compute_'.join(map(str, CUDA_ARCHS))})")
    newest = chosen[-1]
    flags = [f for arch in chosen for f in ("-gencode", f"arch=compute_{arch},code=sm_{arch}")]
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}",
              "-DLIF_CUDA_ARCHS=" + "/".join([f"sm_{arch}" for arch in chosen] + [f"compute_{newest}"])]
    summary = f"nvcc {version.group(1)}: {' '.join(f'sm_{arch}' for arch in chosen)} + PTX compute_{newest}"
    return Toolkit(tag=f"nvcc{version.group(1)}", flags=tuple(flags), summary=summary)


CUDA_RECIPE = KernelRecipe(
    name="lif_cuda",
    source="lif_cuda.cu",
    headers=("aot_extra.h", "lif_host.h"),
    compiler="nvcc",
    flags=("-std=c++17", "-O3", "--shared", "-Xcompiler", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=0"),
    cpu_specific=False,
    toolkit=nvcc_toolkit,
    archs=CUDA_ARCHS,
)


def kernel_cache_dir():
    """``$SNNMLP_HOME/kernels``, else ``~/.cache/snn_mlp/kernels``."""
    home = os.environ.get("SNNMLP_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "snn_mlp"
    return root / "kernels"


def _cpu_fingerprint():
    """Model and feature flags of this CPU: what -march=native compiles for."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    # One CPU's lines are enough (all cores of a machine match); fall back to what Python knows.
    return "\n".join(dict.fromkeys(wanted)) or f"{platform.machine()} {platform.processor()}"


def _find_compiler(recipe):
    path = shutil.which(recipe.compiler)
    if path is None:
        raise KernelBuildError(
            f"building the {recipe.name} LIF kernel needs '{recipe.compiler}' on PATH, and there is none. "
            f"Install it (e.g. 'apt-get install g++' or the CUDA toolkit), or use backend='primitive'.")
    return path


def _cuda_driver_version():
    """(major, minor) of the CUDA version the installed driver supports, None without a driver."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if driver.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return version.value // 1000, version.value % 1000 // 10


def _prebuilt(recipe, stem):
    """A library of ``stem`` built elsewhere, for a host without ``recipe.compiler``: of the toolkits found,
    the newest the CUDA driver supports (the newest of all when that cannot be told)."""
    found = {}
    for path in kernel_cache_dir().glob(f"{stem}-*.so"):
        version = re.fullmatch(r"[a-z]+(\d+)\.(\d+)\.(\d+)", path.name[len(stem) + 1:-3])
        if version:
            found[tuple(map(int, version.groups()))] = path
    if not found:
        raise KernelBuildError(
            f"building the {recipe.name} LIF kernel needs '{recipe.compiler}' on PATH, and there is none, nor a "
            f"library prebuilt for these sources ({kernel_cache_dir()}/{stem}-*.so, see "
            f"scripts/build_cuda_kernels.sh). Install the CUDA toolkit, copy a prebuilt library there, or use "
            "backend='primitive'.")
    driver = _cuda_driver_version()
    usable = [v for v in found if driver is None or v[:2] <= driver] or list(found)
    path = found[max(usable)]
    logger.info("no %s on PATH: using the prebuilt %s (CUDA driver %s)", recipe.compiler, path,
                "%d.%d" % driver if driver else "unknown")
    return path


def _plan(recipe):
    """``(library path, compiler flags)``; the flags are None for a library that must already exist."""
    digest = hashlib.sha256()
    for name in (recipe.source,) + tuple(recipe.headers):
        digest.update(name.encode())
        digest.update((recipe.directory / name).read_bytes())
    digest.update("\0".join(recipe.flags + tuple(map(str, recipe.archs))).encode())
    if recipe.cpu_specific:
        digest.update(_cpu_fingerprint().encode())
    stem = f"{recipe.name}-{digest.hexdigest()[:16]}"
    if recipe.toolkit is None:
        return kernel_cache_dir() / f"{stem}.so", recipe.flags
    compiler = shutil.which(recipe.compiler)
    if compiler is None:
        return _prebuilt(recipe, stem), None
    toolkit = recipe.toolkit(compiler)
    return kernel_cache_dir() / f"{stem}-{toolkit.tag}.so", recipe.flags + toolkit.flags


def library_path(recipe):
    """Where the library of ``recipe`` lives in the cache (it may not exist yet)."""
    return _plan(recipe)[0]


def _check_white_list(path):
    """MindSpore loads aot libraries only from under MS_CUSTOM_AOT_WHITE_LIST when that is set."""
    allowed = os.environ.get("MS_CUSTOM_AOT_WHITE_LIST")
    if not allowed:
        return
    allowed = os.path.realpath(allowed)
    if os.path.commonpath([os.path.realpath(path), allowed]) != allowed:
        raise KernelBuildError(
            f"MS_CUSTOM_AOT_WHITE_LIST={allowed} does not contain the LIF kernel cache {path.parent}; "
            "set SNNMLP_HOME to a directory inside the white list, or extend the white list.")


def build_library(recipe):
    """Path of the library of ``recipe``, compiling it first if the cache lacks it."""
    path, flags = _plan(recipe)
    _check_white_list(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{recipe.name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():  # another process built it while we waited
            return path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        cmd = [_find_compiler(recipe), *flags, f"-I{recipe.directory}", "-o", str(tmp),
               str(recipe.directory / recipe.source)]
        logger.info("building the %s LIF kernel: %s", recipe.name, " ".join(cmd))
        started = time.perf_counter()
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise KernelBuildError(
                    f"compiling the {recipe.name} LIF kernel failed (exit {result.returncode}):\n"
                    f"{' '.join(cmd)}\n{result.stderr[-4000:]}")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        logger.info("built %s in %.1f s", path, time.perf_counter() - started)
    return path


def ascend_opp_search_dirs():
    """The operator package directories MindSpore 2.10 searches for an aclnn header, in its order.

    Each directory of ``ASCEND_CUSTOM_OPP_PATH`` (':'-separated), then the vendors that
    ``$ASCEND_OPP_PATH/vendors/config.ini`` lists in ``load_priority`` (where ``install.sh`` of a custom OPP
    records an installed package), as ``CustomInfoGenerator`` of ``mindspore/ops/operations/_custom_ops_utils.py``
    does. (MindSpore then tries CANN's built-in ``aclnnop`` headers, which never hold these operators.)
    """
    dirs = [Path(p) for p in os.environ.get("ASCEND_CUSTOM_OPP_PATH", "").split(":") if p]
    opp = os.environ.get("ASCEND_OPP_PATH")
    if opp:
        config = Path(opp) / "vendors" / "config.ini"
        if config.is_file():
            dirs += [config.parent / vendor for vendor in _load_priority(config)]
    return dirs


def _load_priority(config):
    """The vendor names of the ``load_priority=a,b,...`` line of a vendors/config.ini."""
    for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() == "load_priority":
            return [name.strip() for name in value.split(",") if name.strip()]
    return []


def find_ascend_op():
    """The operator package directory that provides both AscendC LIF operators, else None.

    Searched where MindSpore looks (``ascend_opp_search_dirs``); ``ascend_op_missing_message`` words a miss.
    """
    for root in ascend_opp_search_dirs():
        # custom_compiler installs op_api/include/aclnn_<snake_name>.h for every operator it builds.
        if all((root / "op_api" / "include" / aclnn_header_name(op)).is_file() for op in ASCEND_OP_NAMES):
            return root
    return None


def ascend_op_missing_message():
    """Why no AscendC LIF operator package was found, naming every directory searched."""
    searched = ", ".join(str(d) for d in ascend_opp_search_dirs()) or "none: ASCEND_CUSTOM_OPP_PATH is unset " \
        "and $ASCEND_OPP_PATH/vendors/config.ini lists no vendor"
    headers = " and ".join(f"op_api/include/{aclnn_header_name(op)}" for op in ASCEND_OP_NAMES)
    return (f"the AscendC LIF operators are not installed: no directory holds {headers} (searched: {searched}). "
            "Build them with scripts/build_ascend_kernels.sh and add the printed directory to "
            "ASCEND_CUSTOM_OPP_PATH")


def aclnn_header_name(op_name):
    """File name of the aclnn header of ``op_name``: ``LifScanCustom`` -> ``aclnn_lif_scan_custom.h``.

    How CANN names the header it generates, and MindSpore the file it looks for."""
    return "aclnn_" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", op_name).lower() + ".h"


def _reg_info(op_name, target, inputs, outputs):
    from mindspore.ops import CustomRegOp, DataType

    reg = CustomRegOp(op_name)
    for index, name in enumerate(inputs):
        reg = reg.input(index, name)
    for index, name in enumerate(outputs):
        reg = reg.output(index, name)
    names = inputs + outputs
    if target == "Ascend":
        # The AscendC operators are built for these combinations only: x-like tensors in float16 or float32,
        # tau/vth and the partial sums always float32.
        for x_type in (DataType.F16_Default, DataType.F32_Default):
            reg = reg.dtype_format(*[DataType.F32_Default if n in SCALAR_NAMES else x_type for n in names])
    else:
        reg = reg.dtype_format(*([DataType.None_None] * len(names)))
    # No value: window and axis are call inputs after the tensors (the aclnn signature's order). MindSpore
    # hands them to the CPU/GPU kernels as attributes and to aclnn as int64_t arguments.
    for attr in ATTR_NAMES:
        reg = reg.attr(attr, "required", "int")
    return reg.target(target).get_op_info()


def _same_as_x(x_shape, *_):
    return x_shape


def _ascend_backward_shapes(_dout_shape, x_shape, *_):
    return x_shape, [ASCEND_PART_SLOTS], [ASCEND_PART_SLOTS]


def _ascend_backward_dtypes(_dout_dtype, x_dtype, *_):
    from mindspore import dtype as mstype

    return x_dtype, mstype.float32, mstype.float32


def _backward_dtypes(x_dtype, tau_dtype, vth_dtype, *_):
    return x_dtype, tau_dtype, vth_dtype


def make_custom_ops(target):
    """``(forward, backward)`` of the LIF scan on ``target`` ("CPU", "GPU", "Ascend").

    ``forward(x, tau, vth, window, axis) -> out`` is an ``ops.Custom`` with its bprop attached;
    ``backward(x, tau, vth, dout, window, axis) -> (dx, dtau, dvth)`` calls the backward kernel in the
    argument order of ``target`` (Ascend: ``dout, x, tau, vth, window, axis``, as the aclnn signature that CANN
    generates from op_host/lif_scan_custom.cpp; CPU/GPU: ``x, tau, vth, dout, window, axis``) and, on Ascend,
    adds up the per-core partial sums. ``tau``/``vth`` are float32 of shape (1,); ``window``/``axis`` Python
    ints. CPU/GPU compile their library on first use (``KernelBuildError`` when that is impossible); their
    output shapes come from the C++ ``...InferShape`` functions of the library, so dynamic shapes work in
    GRAPH mode.
    """
    from mindspore import ops

    if target == "Ascend":
        # The AscendC operators are called by name (aclnn<name>); their shapes are inferred here in Python.
        grad_op = ops.Custom(ASCEND_GRAD_OP_NAME, out_shape=_ascend_backward_shapes,
                             out_dtype=_ascend_backward_dtypes, func_type="aot",
                             reg_info=_reg_info(ASCEND_GRAD_OP_NAME, target, *ASCEND_BACKWARD_IO))
        sum_parts = ops.ReduceSum(keep_dims=True)

        def backward(x, tau, vth, dout, window, axis):
            dx, dtau_parts, dvth_parts = grad_op(dout, x, tau, vth, window, axis)
            # One slot per core (unused ones zero), added in a fixed order: deterministic, no atomics.
            return dx, sum_parts(dtau_parts, 0), sum_parts(dvth_parts, 0)

        fwd_func, fwd_shape, fwd_name = ASCEND_OP_NAME, _same_as_x, ASCEND_OP_NAME
    elif target in ("CPU", "GPU"):
        library = build_library(CPU_RECIPE if target == "CPU" else CUDA_RECIPE)
        grad_op = ops.Custom(f"{library}:{BACKWARD_SYMBOL}", out_shape=None, out_dtype=_backward_dtypes,
                             func_type="aot",
                             reg_info=_reg_info(f"lif_scan_grad_{target.lower()}", target, *HOST_BACKWARD_IO))

        def backward(x, tau, vth, dout, window, axis):
            return grad_op(x, tau, vth, dout, window, axis)

        fwd_func, fwd_shape, fwd_name = f"{library}:{FORWARD_SYMBOL}", None, f"lif_scan_{target.lower()}"
    else:
        raise KernelBuildError(f"no LIF kernel for device target {target!r}")

    def bprop(x, tau, vth, window, axis, out, dout):
        dx, dtau, dvth = backward(x, tau, vth, dout, window, axis)
        return dx, dtau, dvth, window, axis  # window/axis are constants: MindSpore drops their "gradients"

    forward = ops.Custom(fwd_func, out_shape=fwd_shape, out_dtype=_same_as_x, func_type="aot", bprop=bprop,
                         reg_info=_reg_info(fwd_name, target, *FORWARD_IO))
    return forward, backward


class StandaloneKernel:
    """A kernel library called through ctypes at its ``...Standalone`` entry points, outside MindSpore.

    Tensors are given as ``(data_pointer, shape, dtype_name)``; the CUDA library also takes the stream (an
    int handle) and, after the backward's outputs, a workspace of ``workspace_bytes`` (see lif_host.h).
    Used by ``python -m src.lif.bench`` (kernel-only timings) and ``scripts/check_cuda_kernels.py``.
    """

    _SIGNATURE = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int),
                  ctypes.POINTER(ctypes.POINTER(ctypes.c_int64)), ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p,
                  ctypes.c_int64, ctypes.c_int64]

    def __init__(self, path):
        self.lib = ctypes.CDLL(str(path))
        for name in ("LifScanForwardStandalone", "LifScanBackwardStandalone"):
            getattr(self.lib, name).argtypes = self._SIGNATURE
            getattr(self.lib, name).restype = ctypes.c_int
        self.lib.LifScanWorkspaceBytes.restype = ctypes.c_int64
        self.workspace_bytes = self.lib.LifScanWorkspaceBytes()

    def _call(self, function, tensors, window, axis, stream):
        count = len(tensors)
        shapes = [(ctypes.c_int64 * max(1, len(shape)))(*shape) for _, shape, _ in tensors]
        status = function(count, (ctypes.c_void_p * count)(*[ptr for ptr, _, _ in tensors]),
                          (ctypes.c_int * count)(*[len(shape) for _, shape, _ in tensors]),
                          (ctypes.POINTER(ctypes.c_int64) * count)(
                              *[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes]),
                          (ctypes.c_char_p * count)(*[dtype.encode() for _, _, dtype in tensors]),
                          ctypes.c_void_p(stream), window, axis)
        if status != 0:
            raise RuntimeError(f"{function.__name__} returned {status} (the reason is on stderr)")

    def forward(self, x, tau, vth, out, window, axis, stream=0):
        self._call(self.lib.LifScanForwardStandalone, [x, tau, vth, out], window, axis, stream)

    def backward(self, x, tau, vth, dout, dx, dtau, dvth, window, axis, stream=0, workspace=None):
        tensors = [x, tau, vth, dout, dx, dtau, dvth] + ([workspace] if workspace is not None else [])
        self._call(self.lib.LifScanBackwardStandalone, tensors, window, axis, stream)


RECIPES = {"cpu": CPU_RECIPE, "cuda": CUDA_RECIPE}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python src/lif/custom.py",
        description="Build a LIF kernel library into the kernel cache (if it is not there yet) and print its "
                    "path. The cache is $SNNMLP_HOME/kernels, default ~/.cache/snn_mlp/kernels.")
    parser.add_argument("kernel", choices=sorted(RECIPES), help="cpu: lif_cpu.cc with g++; cuda: lif_cuda.cu "
                        "with nvcc (sm_70/75/80/86/89/90 where the toolkit lists them, PTX of the newest)")
    parser.add_argument("--path-only", action="store_true", help="print where the library goes, build nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recipe = RECIPES[args.kernel]
    try:
        print(library_path(recipe) if args.path_only else build_library(recipe))
    except KernelBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
