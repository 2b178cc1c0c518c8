#!/usr/bin/env python3
"""Check the CUDA LIF kernel on a GPU host, without MindSpore: correctness against src/lif/reference.py and
bandwidth against a device copy.

    python scripts/check_cuda_kernels.py                  # builds/finds the library in the kernel cache
    python scripts/check_cuda_kernels.py --lib /path/to/lif_cuda-<hash>.so --bench-shape 128 96 56 56

The library is called through ctypes at its "Standalone" entry points (the MindSpore entry points with the
window and axis as plain arguments), on PyTorch CUDA tensors and PyTorch's current stream. Needs torch with
CUDA and numpy. Exit status 0 when every correctness case passes (the timings are reported, not judged).
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DTYPES = ("float32", "float16", "bfloat16")
# Tolerances against the float64 reference: float32 computes exactly like it up to rounding; the half types
# round each stored value once (relative 2^-11 / 2^-8) on top.
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def _load_module(name, path):
    """Import one file of src/lif without the package (whose __init__ needs MindSpore)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--lib", type=Path, help="the CUDA LIF library; default: the kernel cache's, built with "
                        "nvcc if missing (src/lif/custom.py cuda)")
    parser.add_argument("--bench-shape", type=int, nargs=4, default=(128, 96, 56, 56), metavar=("N", "C", "H", "W"),
                        help="shape for the bandwidth measurement")
    parser.add_argument("--bench-window", type=int, default=4, help="window for the bandwidth measurement")
    parser.add_argument("--repeat", type=int, default=50, help="timed launches per bandwidth figure")
    parser.add_argument("--skip-bench", action="store_true", help="only check correctness")
    return parser.parse_args(argv)


def _handle(tensor):
    """(pointer, shape, dtype name) of a torch tensor, as StandaloneKernel takes it."""
    return tensor.data_ptr(), tuple(tensor.shape), str(tensor.dtype).replace("torch.", "")


class Kernel:
    """The CUDA library on torch tensors and torch's current stream."""

    def __init__(self, standalone):
        self.standalone = standalone

    def forward(self, x, tau, vth, window, axis):
        import torch

        out = torch.empty_like(x)
        self.standalone.forward(_handle(x), _handle(tau), _handle(vth), _handle(out), window, axis,
                                stream=torch.cuda.current_stream().cuda_stream)
        return out

    def backward(self, x, tau, vth, dout, window, axis):
        import torch

        dx = torch.empty_like(x)
        dtau = torch.empty(1, device=x.device)
        dvth = torch.empty(1, device=x.device)
        workspace = torch.empty(max(1, self.standalone.workspace_bytes), dtype=torch.uint8, device=x.device)
        self.standalone.backward(_handle(x), _handle(tau), _handle(vth), _handle(dout), _handle(dx), _handle(dtau),
                                 _handle(dvth), window, axis, stream=torch.cuda.current_stream().cuda_stream,
                                 workspace=_handle(workspace))
        return dx, dtau, dvth


def check_correctness(kernel, reference):
    import torch

    failures = 0
    cases = 0
    rng = np.random.default_rng(0)
    for dtype_name in DTYPES:
        dtype = getattr(torch, dtype_name)
        tol = TOLERANCE[dtype_name]
        for shape in [(2, 3, 7, 9), (1, 2, 13, 5), (2, 2, 16, 33)]:
            for axis in (2, 3):
                for window in (-1, 0, 1, 2, 3, 4, 5, 8, 40):
                    cases += 1
                    x = torch.tensor(rng.standard_normal(shape), dtype=dtype, device="cuda")
                    g = torch.tensor(rng.standard_normal(shape), dtype=dtype, device="cuda")
                    tau = torch.tensor([rng.uniform(-0.9, 0.9)], dtype=torch.float32, device="cuda")
                    vth = torch.tensor([rng.uniform(-1.0, 0.5)], dtype=torch.float32, device="cuda")
                    out = kernel.forward(x, tau, vth, window, axis)
                    dx, dtau, dvth = kernel.backward(x, tau, vth, g, window, axis)
                    torch.cuda.synchronize()
                    x64 = x.double().cpu().numpy()
                    g64 = g.double().cpu().numpy()
                    t, v = tau.item(), vth.item()
                    ref_out = reference.lif_forward_np(x64, t, v, window, axis)
                    ref_dx, ref_dtau, ref_dvth = reference.lif_backward_np(x64, t, v, window, axis, g64)
                    errors = {
                        "out": np.abs(out.double().cpu().numpy() - ref_out).max() / max(1.0, np.abs(ref_out).max()),
                        "dx": np.abs(dx.double().cpu().numpy() - ref_dx).max() / max(1.0, np.abs(ref_dx).max()),
                        "dtau": abs(dtau.item() - ref_dtau[0]) / max(1.0, abs(ref_dtau[0])),
                        "dvth": abs(dvth.item() - ref_dvth[0]) / max(1.0, abs(ref_dvth[0])),
                    }
                    bad = {name: err for name, err in errors.items() if not err <= tol}
                    if bad:
                        failures += 1
                        print(f"FAIL {dtype_name} shape={shape} axis={axis} window={window}: "
                              + ", ".join(f"{n} rel. error {e:.2e} > {tol:.0e}" for n, e in bad.items()))
    print(f"correctness: {cases - failures}/{cases} cases match src/lif/reference.py")
    return failures == 0


def _time_ms(launch, repeat):
    import torch

    launch()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        launch()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeat


def bench(kernel, shape, window, repeat):
    import torch

    print(f"bandwidth on {torch.cuda.get_device_name()}, shape {tuple(shape)}, window {window}, "
          f"{repeat} launches each:")
    for dtype_name in ("float32", "float16"):
        dtype = getattr(torch, dtype_name)
        x = torch.randn(shape, dtype=dtype, device="cuda")
        g = torch.randn(shape, dtype=dtype, device="cuda")
        tau = torch.tensor([0.25], device="cuda")
        vth = torch.tensor([-1.0], device="cuda")
        copy_out = torch.empty_like(x)
        nbytes = x.numel() * x.element_size()
        copy_ms = _time_ms(lambda: copy_out.copy_(x), repeat)
        rows = [("device copy", copy_ms, 2 * nbytes)]
        for axis in (2, 3):
            rows.append((f"forward axis {axis}", _time_ms(lambda: kernel.forward(x, tau, vth, window, axis), repeat),
                         2 * nbytes))  # reads x, writes out
            rows.append((f"backward axis {axis}",
                         _time_ms(lambda: kernel.backward(x, tau, vth, g, window, axis), repeat),
                         3 * nbytes))  # reads x and dout, writes dx
        for name, ms, moved in rows:
            print(f"  {dtype_name:<8} {name:<16} {ms:8.3f} ms  {moved / ms / 1e6:8.1f} GB/s  {ms / copy_ms:5.2f}x copy")


def main(argv=None):
    args = _parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: this check needs PyTorch with CUDA (pip install torch)", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    custom = _load_module("lif_custom", REPO / "src" / "lif" / "custom.py")
    library = args.lib
    if library is None:
        try:
            library = custom.build_library(custom.CUDA_RECIPE)
        except custom.KernelBuildError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if not Path(library).is_file():
        print(f"error: no library at {library}", file=sys.stderr)
        return 1
    print(f"library: {library}")
    kernel = Kernel(custom.StandaloneKernel(library))
    reference = _load_module("lif_reference", REPO / "src" / "lif" / "reference.py")
    ok = check_correctness(kernel, reference)
    if not args.skip_bench:
        started = time.perf_counter()
        bench(kernel, args.bench_shape, args.bench_window, args.repeat)
        print(f"(bandwidth measured in {time.perf_counter() - started:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
