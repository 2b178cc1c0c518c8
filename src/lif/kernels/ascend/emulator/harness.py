"""Build the LIF operators against the AscendC CPU emulator and run them from numpy.

    python src/lif/kernels/ascend/emulator/harness.py --shape 2 3 7 9 --window 4 --axis 3 --cores 40

builds (once per source hash, cached under $SNNMLP_EMULATOR_CACHE or the system temp dir), runs forward and
backward on random data and prints the largest difference from ``src/lif/reference.py`` and the counters.
The tests (tests/test_ascend_emulator.py) use :func:`build` and :func:`run`.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ASCEND = Path(__file__).resolve().parents[1]
EMULATOR = ASCEND / "emulator"
KERNELS = ("op_kernel/lif_scan_custom.cpp", "op_kernel/lif_scan_grad_custom.cpp")
HOST = "op_host/lif_scan_custom.cpp"
DTYPES = {"float32": ("float", np.float32), "float16": ("half", np.float16)}
PART_SLOTS = 64


class EmulatorError(RuntimeError):
    """A run stopped: the emulator's rule message (``ascend-emulator: <rule>: ...``) or a build error."""


def _sources():
    files = [ASCEND / HOST, *(ASCEND / k for k in KERNELS), EMULATOR / "driver.cpp"]
    files += sorted((ASCEND / "op_host").glob("*.h")) + sorted((ASCEND / "op_kernel").glob("*.h"))
    files += sorted((EMULATOR / "include").rglob("*.h"))
    files += sorted((EMULATOR / "selftest").glob("*.cpp"))
    return files


def compile_flags():
    """g++ flags that put the emulator in place of CANN's headers (the kernel sources are unchanged)."""
    return ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Wno-unused-parameter",
            f"-I{EMULATOR / 'include'}", f"-I{ASCEND / 'op_host'}", f"-I{ASCEND / 'op_kernel'}",
            "-include", str(ASCEND / "op_host" / "lif_scan_tiling.h"),
            "-DEMU_TILING_STRUCT=optiling::LifScanTilingData"]


def cache_dir():
    root = os.environ.get("SNNMLP_EMULATOR_CACHE") or os.path.join(tempfile.gettempdir(), "snnmlp_ascend_emulator")
    digest = hashlib.sha256(" ".join(compile_flags()).encode())
    for f in _sources():
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    path = Path(root) / digest.hexdigest()[:16]
    path.mkdir(parents=True, exist_ok=True)
    return path


def compile_program(sources, output, dtype="float32", extra=()):
    """Compiles ``sources`` with the emulator flags into ``output`` (whole or not at all); raises EmulatorError
    with g++'s message."""
    output = Path(output)
    tmp = output.with_name(f"{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    cmd = ["g++", *compile_flags(), f"-DDTYPE_X={DTYPES[dtype][0]}", *extra, *map(str, sources), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmulatorError(f"g++ failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    os.replace(tmp, output)
    return output


def build(dtype="float32"):
    """Path of the driver binary for ``dtype`` (float32 or float16), compiled if its sources changed."""
    binary = cache_dir() / f"driver_{dtype}"
    if not binary.exists():
        compile_program([ASCEND / HOST, *(ASCEND / k for k in KERNELS), EMULATOR / "driver.cpp"], binary, dtype)
    return binary


def build_all(dtypes=tuple(DTYPES), extra=()):
    """Builds the drivers for ``dtypes`` (and ``extra``: (sources, output) pairs) side by side."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2 + len(extra)) as pool:
        jobs = [pool.submit(build, d) for d in dtypes]
        jobs += [pool.submit(compile_program, sources, output) for sources, output in extra if not output.exists()]
        return [job.result() for job in jobs]


def run(mode, x, tau, vth, window, axis, cores, dout=None, workdir=None):
    """Runs ``mode`` ("forward" or "backward") on the emulator with ``cores`` AI cores.

    Returns ``(results, info)``: forward ``{"out"}``, backward ``{"dx", "dtau_parts", "dvth_parts"}`` (numpy
    arrays; the parts are the 64 per-core float32 slots), and the driver's JSON line (tiling, counters).
    """
    x = np.ascontiguousarray(x)
    dtype = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}[x.dtype]
    binary = build(dtype)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        x.tofile(os.path.join(tmp, "x.bin"))
        np.asarray([tau], np.float32).reshape(1).tofile(os.path.join(tmp, "tau.bin"))
        np.asarray([vth], np.float32).reshape(1).tofile(os.path.join(tmp, "vth.bin"))
        if mode == "backward":
            np.ascontiguousarray(dout, dtype=x.dtype).tofile(os.path.join(tmp, "dout.bin"))
        args = [str(binary), mode, *map(str, x.shape), str(window), str(axis), str(cores), tmp]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise EmulatorError((proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"))
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        if mode == "forward":
            results = {"out": np.fromfile(os.path.join(tmp, "out.bin"), x.dtype).reshape(x.shape)}
        else:
            results = {
                "dx": np.fromfile(os.path.join(tmp, "dx.bin"), x.dtype).reshape(x.shape),
                "dtau_parts": np.fromfile(os.path.join(tmp, "dtau_parts.bin"), np.float32),
                "dvth_parts": np.fromfile(os.path.join(tmp, "dvth_parts.bin"), np.float32),
            }
    return results, info


def main(argv=None):
    sys.path.insert(0, str(ASCEND.parents[3]))
    from src.lif.reference import lif_backward_np, lif_forward_np  # run as a script: no parent package

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[2, 3, 7, 9], metavar=("N", "C", "H", "W"))
    parser.add_argument("--window", type=int, default=4, help="-1 off, 0 whole axis, else the window length")
    parser.add_argument("--axis", type=int, choices=(2, 3), default=2)
    parser.add_argument("--cores", type=int, default=40, help="vector cores the tiling may use")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=args.shape).astype(DTYPES[args.dtype][1])
    g = rng.normal(size=args.shape).astype(DTYPES[args.dtype][1])
    tau, vth = 0.25, -0.3
    fwd, info_f = run("forward", x, tau, vth, args.window, args.axis, args.cores)
    bwd, info_b = run("backward", x, tau, vth, args.window, args.axis, args.cores, dout=g)
    ref_out = lif_forward_np(x, tau, vth, args.window, args.axis)
    ref_dx, ref_dtau, ref_dvth = lif_backward_np(x, tau, vth, args.window, args.axis, g)
    print(f"out  max |diff| {np.abs(fwd['out'] - ref_out).max():.3g}")
    print(f"dx   max |diff| {np.abs(bwd['dx'] - ref_dx).max():.3g}")
    print(f"dtau {bwd['dtau_parts'].astype(np.float64).sum():.9g} (reference {ref_dtau[0]:.9g})")
    print(f"dvth {bwd['dvth_parts'].astype(np.float64).sum():.9g} (reference {ref_dvth[0]:.9g})")
    print("forward ", json.dumps(info_f))
    print("backward", json.dumps(info_b))


if __name__ == "__main__":
    main()
