"""Building and caching the shared libraries of the aot kernels (LIF scan, fused CPU ops); no MindSpore needed.

A library is compiled on first use into a per-user cache, ``$SNNMLP_HOME/kernels`` (default
``~/.cache/snn_mlp/kernels``). Its file name carries a hash of the sources, the flags and, for
``-march=native`` builds, the CPU: a changed source or flag builds a new file, and a cache shared by different
machines never hands one the other's binary. The CUDA library's name also ends in the nvcc version
(``lif_cuda-<hash>-nvcc12.4.131.so``), whose architecture list decides what is compiled: a host with nvcc
builds and uses its own toolkit's file; a host without nvcc uses one prebuilt elsewhere (e.g. by
``scripts/build_cuda_kernels.sh``) for the same sources, preferring the newest toolkit its driver supports.
The compiler writes to a temporary name that is renamed into place, under a file lock: concurrent processes
(msrun ranks, pytest workers) wait for one build and never load a half-written file.

``RECIPES`` lists every library: the sources stay beside their clients (``src/lif/kernels``,
``src/fast_ops/kernels``); headers they share live in ``include/`` here. The Ascend kernel is an AscendC
operator installed separately (``scripts/build_ascend_kernels.sh``) and called by its name.

This file also runs as a script on a build host: ``python src/kernels/build.py lif_cuda`` builds the CUDA
library into the cache and prints its path.
"""
import argparse
import ctypes
import dataclasses
import fcntl
import hashlib
import importlib.util
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

__all__ = ["KernelBuildError", "KernelRecipe", "LIF_CPU_RECIPE", "LIF_CUDA_RECIPE", "FAST_OPS_CPU_RECIPE",
           "FAST_OPS_CPU_PLAIN_RECIPE", "RECIPES", "INCLUDE_DIR", "onednn_library", "kernel_cache_dir", "library_path",
           "build_library"]

logger = logging.getLogger("snn_mlp")

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
_CLIENTS = Path(__file__).resolve().parent.parent  # src/: lif/kernels, fast_ops/kernels


class KernelBuildError(RuntimeError):
    """A kernel library cannot be had: no compiler, a failed build, or a path MindSpore refuses."""


@dataclass(frozen=True)
class KernelRecipe:
    """How one kernel library is built: ``compiler flags... -I directory -o out directory/source``."""
    name: str
    source: str  # file name in `directory`
    headers: tuple  # file names the source includes, in `directory` or include/ (part of the hash)
    compiler: str
    flags: tuple
    cpu_specific: bool  # built for the CPU it runs on (-march=native): the CPU is part of the hash
    directory: Path  # where `source` lives; the client's kernels/ folder
    # For compilers whose version decides the flags (nvcc): compiler path -> Toolkit; its tag ends the file name.
    toolkit: object = None
    archs: tuple = ()  # what `toolkit` chooses from (part of the hash)
    libraries: tuple = ()  # linker inputs after the source (part of the hash)


@dataclass(frozen=True)
class Toolkit:
    """What one compiler installation adds to a recipe: its version tag and the flags that depend on it."""
    tag: str
    flags: tuple
    summary: str  # one line for people: version and targets


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
        raise KernelBuildError(f"nvcc {version.group(1)} ({nvcc}) is too old: bfloat16 in the CUDA kernels needs "
                               "CUDA 11.0 or newer")
    status, text = output("--list-gpu-arch")
    if status != 0:
        _, text = output("--help")
    known = {int(n) for n in re.findall(r"compute_(\d+)", text)}
    chosen = [arch for arch in CUDA_ARCHS if arch in known]
    if not chosen:
        raise KernelBuildError(f"nvcc {version.group(1)} ({nvcc}) lists none of the architectures the CUDA "
                               f"kernels are built for (compute_{', compute_'.join(map(str, CUDA_ARCHS))})")
    newest = chosen[-1]
    flags = [f for arch in chosen for f in ("-gencode", f"arch=compute_{arch},code=sm_{arch}")]
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}",
              "-DLIF_CUDA_ARCHS=" + "/".join([f"sm_{arch}" for arch in chosen] + [f"compute_{newest}"])]
    summary = f"nvcc {version.group(1)}: {' '.join(f'sm_{arch}' for arch in chosen)} + PTX compute_{newest}"
    return Toolkit(tag=f"nvcc{version.group(1)}", flags=tuple(flags), summary=summary)


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
            f"building the {recipe.name} kernel library needs '{recipe.compiler}' on PATH, and there is none. "
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
            f"building the {recipe.name} kernel library needs '{recipe.compiler}' on PATH, and there is none, nor a "
            f"library prebuilt for these sources ({kernel_cache_dir()}/{stem}-*.so, see "
            f"scripts/build_cuda_kernels.sh). Install the CUDA toolkit, copy a prebuilt library there, or use "
            "backend='primitive'.")
    driver = _cuda_driver_version()
    usable = [v for v in found if driver is None or v[:2] <= driver] or list(found)
    path = found[max(usable)]
    logger.info("no %s on PATH: using the prebuilt %s (CUDA driver %s)", recipe.compiler, path,
                "%d.%d" % driver if driver else "unknown")
    return path


def _header_path(recipe, name):
    """A header the source includes: beside it, else in the shared include/ folder."""
    local = recipe.directory / name
    return local if local.exists() else INCLUDE_DIR / name


def _plan(recipe):
    """``(library path, compiler flags)``; the flags are None for a library that must already exist."""
    digest = hashlib.sha256()
    digest.update(recipe.source.encode())
    digest.update((recipe.directory / recipe.source).read_bytes())
    for name in recipe.headers:
        digest.update(name.encode())
        digest.update(_header_path(recipe, name).read_bytes())
    digest.update("\0".join(recipe.flags + tuple(map(str, recipe.archs)) + recipe.libraries).encode())
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
            f"MS_CUSTOM_AOT_WHITE_LIST={allowed} does not contain the kernel cache {path.parent}; "
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
        cmd = [_find_compiler(recipe), *flags, f"-I{recipe.directory}", f"-I{INCLUDE_DIR}", "-o", str(tmp),
               str(recipe.directory / recipe.source), *recipe.libraries]
        logger.info("building the %s kernel library: %s", recipe.name, " ".join(cmd))
        started = time.perf_counter()
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise KernelBuildError(
                    f"compiling the {recipe.name} kernel library failed (exit {result.returncode}):\n"
                    f"{' '.join(cmd)}\n{result.stderr[-4000:]}")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        logger.info("built %s in %.1f s", path, time.perf_counter() - started)
    return path


LIF_CPU_RECIPE = KernelRecipe(
    name="lif_cpu",
    source="lif_cpu.cc",
    headers=("aot_extra.h", "cpu_parallel.h", "lif_host.h"),
    compiler="g++",
    # -march=native lets the row loops use the widest vectors of this CPU; the hash keys the cache on the
    # CPU, so a cache shared across machines holds one build per CPU model. -fopenmp-simd honours the
    # `omp simd` pragmas without linking an OpenMP runtime.
    flags=("-std=c++17", "-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-pthread",
           "-D_GLIBCXX_USE_CXX11_ABI=0"),
    cpu_specific=True,
    directory=_CLIENTS / "lif" / "kernels",
)

def onednn_library():
    """The oneDNN library inside the installed MindSpore wheel (its CPU back-end's), or None where it has none.
    Found without importing MindSpore."""
    spec = importlib.util.find_spec("mindspore")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.joinpath("lib").glob("libdnnl.so.*"))
    return found[-1] if found else None


_ONEDNN = onednn_library()

FAST_OPS_CPU_RECIPE = KernelRecipe(
    name="fast_ops_cpu",
    source="fast_ops_cpu.cc",
    headers=("cpu_parallel.h",),
    compiler="g++",
    # The flags of lif_cpu: -march=native vectorises for this CPU (and keys the cache on it). The 1x1
    # convolution is compiled in when MindSpore ships oneDNN: its sgemm, linked by path (with an rpath) so
    # the library loads with or without MindSpore imported first.
    flags=LIF_CPU_RECIPE.flags + (("-DSNNMLP_ONEDNN",) if _ONEDNN else ()),
    libraries=(str(_ONEDNN), f"-Wl,-rpath,{_ONEDNN.parent}") if _ONEDNN else (),
    cpu_specific=True,
    directory=_CLIENTS / "fast_ops" / "kernels",
)
# The same library without the convolutions, where linking oneDNN fails: the other kernels do not depend on it.
FAST_OPS_CPU_PLAIN_RECIPE = dataclasses.replace(FAST_OPS_CPU_RECIPE, flags=LIF_CPU_RECIPE.flags, libraries=())

LIF_CUDA_RECIPE = KernelRecipe(
    name="lif_cuda",
    source="lif_cuda.cu",
    headers=("aot_extra.h", "lif_host.h"),
    compiler="nvcc",
    flags=("-std=c++17", "-O3", "--shared", "-Xcompiler", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=0"),
    cpu_specific=False,
    toolkit=nvcc_toolkit,
    archs=CUDA_ARCHS,
    directory=_CLIENTS / "lif" / "kernels",
)


RECIPES = {recipe.name: recipe for recipe in (LIF_CPU_RECIPE, LIF_CUDA_RECIPE, FAST_OPS_CPU_RECIPE)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python src/kernels/build.py",
        description="Build a kernel library into the kernel cache (if it is not there yet) and print its "
                    "path. The cache is $SNNMLP_HOME/kernels, default ~/.cache/snn_mlp/kernels.")
    parser.add_argument("kernel", choices=sorted(RECIPES), help="lif_cpu: lif_cpu.cc with g++; lif_cuda: "
                        "lif_cuda.cu with nvcc (sm_70/75/80/86/89/90 where the toolkit lists them, PTX of the "
                        "newest); fast_ops_cpu: fast_ops_cpu.cc with g++")
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
