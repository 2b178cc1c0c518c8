#!/usr/bin/env python3
"""Check the CUDA LIF kernel on a GPU host, without MindSpore: correctness against src/lif/reference.py, and
bandwidth against a device copy and against the original SNN-MLP algorithm.

    python scripts/check_cuda_kernels.py --all                # build, every correctness case, bandwidth (< 10 min)
    python scripts/check_cuda_kernels.py --check              # correctness only
    python scripts/check_cuda_kernels.py --dry-run            # what would run; needs no GPU, torch or nvcc
    python scripts/check_cuda_kernels.py --build-only         # compile both libraries (a host with nvcc, no GPU)

The library (built with nvcc into the kernel cache if missing, or --lib) is called through ctypes at its
"Standalone" entry points on PyTorch CUDA tensors and PyTorch's current stream. The baseline "original" is this
script's own CUDA rendering of the original algorithm (described in src/lif/reference.py): one thread per
window, the forward storing the output, the fire flags and the membrane, the backward reading them and writing
dx and per-element dtau/dvth terms that are then summed. Prints a table and writes JSON (--json). Exit status
0 when every correctness case passes; the bandwidth goals are reported, not enforced.
"""
import argparse
import dataclasses
import importlib.util
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from src.kernels import build  # noqa: E402  (no MindSpore needed)
from src.kernels.standalone import StandaloneKernel  # noqa: E402
DTYPES = ("float32", "float16", "bfloat16")
# Small odd shapes, rows longer than the kernel's shared-memory tile (2048), several tiles of rows, a window
# chunked by the backward (whole axes of 56 and 130).
SHAPES = ((2, 3, 7, 9), (1, 2, 13, 5), (2, 2, 16, 33), (2, 4, 20, 56), (1, 1, 2, 2100), (1, 1, 130, 3))
WINDOWS = (-1, 0, 1, 2, 3, 4, 5, 8, 17, 40)
# Goals of the issue: forward >= 80 % of the copy's bandwidth, backward >= 70 %, >= 2x the original's fwd+bwd.
GOALS = {"forward": 0.8, "backward": 0.7, "speedup": 2.0}

ORIGINAL_SOURCE = r"""
// The original SNN-MLP algorithm, written from the description in src/lif/reference.py, as the baseline of
// scripts/check_cuda_kernels.py: one thread per window, flags and membrane stored by the forward.
#ifdef LIF_HOST_EMULATION  // tests run it on the CPU, like the kernel
#include "cuda_host_emulation.h"
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define LIF_LAUNCH(kernel, grid, threads, stream, ...) kernel<<<(grid), (threads), 0, (stream)>>>(__VA_ARGS__)
#endif
#include <cstdint>

__device__ float Load(const float *p, int64_t i) { return p[i]; }
__device__ float Load(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ void Store(float *p, int64_t i, float v) { p[i] = v; }
__device__ void Store(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// Whole window `index` of all (plane, line, window): its first element and the step along the axis.
__device__ void WindowOf(int64_t index, int64_t rows, int64_t cols, int64_t k, int axis, int64_t *base,
                         int64_t *step) {
  const int64_t length = axis == 2 ? rows : cols, across = axis == 2 ? cols : rows, whole = length / k;
  const int64_t window = index % whole, line = index / whole % across, plane = index / whole / across;
  *step = axis == 2 ? cols : 1;
  *base = plane * rows * cols + (axis == 2 ? line : line * cols) + window * k * *step;
}

template <typename T>
__global__ void Forward(const T *x, T *out, T *fire, T *membrane, const float *tau_p, const float *vth_p,
                        int64_t windows, int64_t rows, int64_t cols, int64_t k, int axis) {
  const int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (index >= windows) return;
  int64_t base, step;
  WindowOf(index, rows, cols, k, axis, &base, &step);
  const float tau = *tau_p, vth = *vth_p;
  float o = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t at = base + j * step;
    Store(membrane, at, o);
    const float u = tau * o + Load(x, at);
    const bool f = u > vth;
    Store(fire, at, f ? 1.0f : 0.0f);
    Store(out, at, f ? u : vth);
    o = f ? 0.0f : u;
  }
}

template <typename T>
__global__ void Backward(const T *dout, const T *fire, const T *membrane, T *dx, float *dtau_terms,
                         float *dvth_terms, const float *tau_p, int64_t windows, int64_t rows, int64_t cols,
                         int64_t k, int axis) {
  const int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (index >= windows) return;
  int64_t base, step;
  WindowOf(index, rows, cols, k, axis, &base, &step);
  const float tau = *tau_p;
  float t = 0.0f;  // forward-mode d u / d tau
  for (int64_t j = 0; j < k; ++j) {
    const int64_t at = base + j * step;
    if (j > 0) t = t * tau * (1.0f - Load(fire, at - step)) + Load(membrane, at);
    const float g = Load(dout, at), f = Load(fire, at);
    dtau_terms[at] = g * f * t;
    dvth_terms[at] = g * (1.0f - f);
  }
  float carry = 0.0f;
  for (int64_t j = k - 1; j >= 0; --j) {
    const int64_t at = base + j * step;
    const float f = Load(fire, at);
    carry = Load(dout, at) * f + carry * tau * (1.0f - f);
    Store(dx, at, carry);
  }
}

extern "C" int OriginalForward(int half, const void *x, void *out, void *fire, void *membrane, const float *tau,
                               const float *vth, int64_t planes, int64_t rows, int64_t cols, int64_t k, int axis,
                               void *stream) {
  const int64_t windows = planes * (axis == 2 ? cols : rows) * ((axis == 2 ? rows : cols) / k);
  const int blocks = (int)((windows + 255) / 256);
  auto s = static_cast<cudaStream_t>(stream);
  if (half) {
    const auto kernel = Forward<__half>;
    LIF_LAUNCH(kernel, blocks, 256, s, (const __half *)x, (__half *)out, (__half *)fire, (__half *)membrane, tau,
               vth, windows, rows, cols, k, axis);
  } else {
    const auto kernel = Forward<float>;
    LIF_LAUNCH(kernel, blocks, 256, s, (const float *)x, (float *)out, (float *)fire, (float *)membrane, tau, vth,
               windows, rows, cols, k, axis);
  }
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}

extern "C" int OriginalBackward(int half, const void *dout, const void *fire, const void *membrane, void *dx,
                                float *dtau_terms, float *dvth_terms, const float *tau, int64_t planes,
                                int64_t rows, int64_t cols, int64_t k, int axis, void *stream) {
  const int64_t windows = planes * (axis == 2 ? cols : rows) * ((axis == 2 ? rows : cols) / k);
  const int blocks = (int)((windows + 255) / 256);
  auto s = static_cast<cudaStream_t>(stream);
  if (half) {
    const auto kernel = Backward<__half>;
    LIF_LAUNCH(kernel, blocks, 256, s, (const __half *)dout, (const __half *)fire, (const __half *)membrane,
               (__half *)dx, dtau_terms, dvth_terms, tau, windows, rows, cols, k, axis);
  } else {
    const auto kernel = Backward<float>;
    LIF_LAUNCH(kernel, blocks, 256, s, (const float *)dout, (const float *)fire, (const float *)membrane,
               (float *)dx, dtau_terms, dvth_terms, tau, windows, rows, cols, k, axis);
  }
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
"""


def _load_module(name, path):
    """Import one file of src/lif without the package (whose __init__ needs MindSpore)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--all", action="store_true", help="build, check every case, measure bandwidth (default)")
    mode.add_argument("--check", action="store_true", help="only the correctness cases")
    mode.add_argument("--bench", action="store_true", help="only the bandwidth measurement (its window must divide "
                      "H and W of --bench-shape, as the baseline scans whole windows only)")
    mode.add_argument("--build-only", action="store_true", help="only compile the kernel and the baseline (nvcc, "
                      "no GPU needed)")
    mode.add_argument("--dry-run", action="store_true", help="print what would run and where the libraries are, "
                      "touching no GPU")
    parser.add_argument("--lib", type=Path, help="the CUDA LIF library; default: the kernel cache's, built with "
                        "nvcc if missing (src/kernels/build.py lif_cuda)")
    parser.add_argument("--json", type=Path, default=Path("cuda_kernel_check.json"), help="where the results go")
    parser.add_argument("--bench-shape", type=int, nargs=4, default=(128, 96, 56, 56), metavar=("N", "C", "H", "W"),
                        help="shape for the bandwidth measurement")
    parser.add_argument("--bench-window", type=int, default=4, help="window for the bandwidth measurement")
    parser.add_argument("--repeat", type=int, default=20, help="launches per timing sample (5 samples, median)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.bench_window < 1 or min(args.bench_shape) < 1:
        parser.error("--repeat, --bench-window and every --bench-shape size must be positive")
    if args.bench_shape[2] % args.bench_window or args.bench_shape[3] % args.bench_window:
        parser.error(f"--bench-window {args.bench_window} must divide H and W of --bench-shape (the baseline "
                     "scans whole windows only)")
    args.all = not (args.check or args.bench or args.build_only or args.dry_run)
    return args


def _original_recipe():
    """The baseline's source, written into the kernel cache, built like the kernel (same architectures)."""
    directory = build.kernel_cache_dir() / "check_sources"
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "lif_cuda_original.cu"
    if not source.exists() or source.read_text() != ORIGINAL_SOURCE:
        source.write_text(ORIGINAL_SOURCE)
    return dataclasses.replace(build.LIF_CUDA_RECIPE, name="lif_cuda_original", source=source.name, headers=(),
                               directory=directory)


def _cases():
    return [(shape, axis, window) for shape in SHAPES for axis in (2, 3) for window in WINDOWS]


class Device:
    """Where the tensors live: "cuda" for the check; "cpu" for tests, with host-emulation builds of the libraries
    (src/lif/kernels/cuda_host_emulation.h), so that this script's own logic is tested without a GPU."""

    def __init__(self, kind="cuda"):
        self.kind = kind

    def name(self):
        import torch

        return torch.cuda.get_device_name() if self.kind == "cuda" else "CPU (host emulation)"

    def stream(self):
        import torch

        return torch.cuda.current_stream().cuda_stream if self.kind == "cuda" else 0

    def time_ms(self, launch, repeat, samples=5):
        """Median and spread (max - min) of `samples` timings, each the mean over `repeat` launches, in ms."""
        import torch

        launch()
        times = []
        for _ in range(samples):
            if self.kind == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(repeat):
                    launch()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / repeat)
            else:
                begin = time.perf_counter()
                for _ in range(repeat):
                    launch()
                times.append((time.perf_counter() - begin) * 1e3 / repeat)
        return statistics.median(times), max(times) - min(times)


def _handle(tensor):
    """(pointer, shape, dtype name) of a torch tensor, as StandaloneKernel takes it."""
    return tensor.data_ptr(), tuple(tensor.shape), str(tensor.dtype).replace("torch.", "")


class Kernel:
    """The CUDA library on torch tensors and torch's current stream."""

    def __init__(self, standalone, device):
        import torch

        self.standalone = standalone
        self.device = device
        self.workspace = torch.empty(max(1, standalone.workspace_bytes), dtype=torch.uint8, device=device.kind)

    def forward(self, x, tau, vth, window, axis):
        import torch

        out = torch.empty_like(x)
        self.standalone.forward(_handle(x), _handle(tau), _handle(vth), _handle(out), window, axis,
                                stream=self.device.stream())
        return out

    def backward(self, x, tau, vth, dout, window, axis):
        import torch

        dx = torch.empty_like(x)
        dtau = torch.empty(1, device=x.device)
        dvth = torch.empty(1, device=x.device)
        self.standalone.backward(_handle(x), _handle(tau), _handle(vth), _handle(dout), _handle(dx), _handle(dtau),
                                 _handle(dvth), window, axis, stream=self.device.stream(),
                                 workspace=_handle(self.workspace))
        return dx, dtau, dvth


class Original:
    """The baseline library: the forward keeps (fire, membrane) for the backward, as the original did. It scans
    whole windows only (an axis the window divides, as in the measured shape)."""

    def __init__(self, path, device):
        import ctypes

        self.device = device
        self.lib = ctypes.CDLL(str(path))
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self.lib.OriginalForward.argtypes = [ctypes.c_int] + [ptr] * 6 + [i64] * 4 + [ctypes.c_int, ptr]
        self.lib.OriginalBackward.argtypes = [ctypes.c_int] + [ptr] * 7 + [i64] * 4 + [ctypes.c_int, ptr]

    @staticmethod
    def _dims(x, window, axis):
        n, c, h, w = x.shape
        if window < 1 or x.shape[axis] % window:
            raise ValueError(f"the baseline needs a window dividing the axis, got {window} for {x.shape[axis]}")
        return n * c, h, w, window, axis

    def forward(self, x, tau, vth, window, axis):
        import torch

        out, fire, membrane = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        status = self.lib.OriginalForward(int(x.dtype == torch.float16), x.data_ptr(), out.data_ptr(),
                                          fire.data_ptr(), membrane.data_ptr(), tau.data_ptr(), vth.data_ptr(),
                                          *self._dims(x, window, axis), self.device.stream())
        if status:
            raise RuntimeError("the baseline forward failed to launch")
        return out, (fire, membrane)

    def backward(self, saved, tau, dout, window, axis):
        import torch

        fire, membrane = saved
        dx = torch.empty_like(dout)
        terms = torch.empty((2,) + tuple(dout.shape), device=dout.device)  # per-element dtau, dvth
        status = self.lib.OriginalBackward(int(dout.dtype == torch.float16), dout.data_ptr(), fire.data_ptr(),
                                           membrane.data_ptr(), dx.data_ptr(), terms[0].data_ptr(),
                                           terms[1].data_ptr(), tau.data_ptr(), *self._dims(dout, window, axis),
                                           self.device.stream())
        if status:
            raise RuntimeError("the baseline backward failed to launch")
        return dx, terms[0].sum(), terms[1].sum()


def _exact_inputs(rng, shape):
    """float32 values that float16 and bfloat16 hold exactly, so every storage type sees the same numbers."""
    values = rng.standard_normal(shape).astype(np.float32)
    values = np.where(np.abs(values) < 2.0 ** -6, np.float32(2.0 ** -6), values)
    return (values.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def check_correctness(kernel, reference, report):
    """Every case against the float64 reference (float32, 1e-5), and float16/bfloat16 as the float32 result
    rounded once with the same dtau/dvth; the backward twice, bit for bit (deterministic sums)."""
    import torch

    failures = []
    rng = np.random.default_rng(0)
    cases = _cases()
    started = time.perf_counter()
    for number, (shape, axis, window) in enumerate(cases, 1):
        x_np, g_np = _exact_inputs(rng, shape), _exact_inputs(rng, shape)
        tau_v, vth_v = float(np.float32(rng.uniform(-0.9, 0.9))), float(np.float32(rng.uniform(-1.0, 0.5)))
        tau = torch.tensor([tau_v], device=kernel.device.kind)
        vth = torch.tensor([vth_v], device=kernel.device.kind)
        ref_out = reference.lif_forward_np(x_np, tau_v, vth_v, window, axis)
        ref_dx, ref_dtau, ref_dvth = reference.lif_backward_np(x_np, tau_v, vth_v, window, axis, g_np)
        problems = []
        results = {}
        for name in DTYPES:
            dtype = getattr(torch, name)
            x = torch.from_numpy(x_np).to(kernel.device.kind).to(dtype)
            g = torch.from_numpy(g_np).to(kernel.device.kind).to(dtype)
            out = kernel.forward(x, tau, vth, window, axis)
            dx, dtau, dvth = kernel.backward(x, tau, vth, g, window, axis)
            dx_again, dtau_again, dvth_again = kernel.backward(x, tau, vth, g, window, axis)
            results[name] = (out, dx, dtau.item(), dvth.item())
            if not (torch.equal(dx, dx_again) and torch.equal(dtau, dtau_again) and torch.equal(dvth, dvth_again)):
                problems.append(f"{name} backward differs between two calls")
        out, dx, dtau, dvth = results["float32"]
        for label, got, want in (("out", out, ref_out), ("dx", dx, ref_dx)):
            error = np.abs(got.double().cpu().numpy() - want) - 1e-5 * (1 + np.abs(want))
            if error.max() > 0:
                problems.append(f"float32 {label} off the reference by up to {error.max() + 1e-5:.2e}")
        for label, got, want in (("dtau", dtau, ref_dtau[0]), ("dvth", dvth, ref_dvth[0])):
            if abs(got - want) > 1e-4 * (1 + abs(want)):
                problems.append(f"{label} {got:.6g} vs reference {want:.6g}")
        for name in ("float16", "bfloat16"):
            h_out, h_dx, h_dtau, h_dvth = results[name]
            dtype = getattr(torch, name)
            if not (torch.equal(h_out, out.to(dtype)) and torch.equal(h_dx, dx.to(dtype))):
                problems.append(f"{name} out/dx are not the float32 results rounded")
            if (h_dtau, h_dvth) != (dtau, dvth):
                problems.append(f"{name} dtau/dvth differ from float32's")
        if problems:
            failures.append({"shape": shape, "axis": axis, "window": window, "problems": problems})
            print(f"FAIL shape={shape} axis={axis} window={window}: " + "; ".join(problems))
        if number % 20 == 0:
            print(f"  {number}/{len(cases)} cases checked ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"correctness: {len(cases) - len(failures)}/{len(cases)} cases x {len(DTYPES)} storage types match "
          "src/lif/reference.py")
    report["correctness"] = {"cases": len(cases), "dtypes": list(DTYPES), "failures": failures}
    return not failures


def check_original(original, reference):
    """The baseline computes the same scan (a slow strawman that is wrong would prove nothing)."""
    import torch

    rng = np.random.default_rng(1)
    x_np, g_np = _exact_inputs(rng, (2, 3, 8, 12)), _exact_inputs(rng, (2, 3, 8, 12))
    device = original.device.kind
    tau, vth = torch.tensor([0.5], device=device), torch.tensor([-0.2], device=device)
    for axis in (2, 3):
        out, saved = original.forward(torch.from_numpy(x_np).to(device), tau, vth, 4, axis)
        dx, dtau, _ = original.backward(saved, tau, torch.from_numpy(g_np).to(device), 4, axis)
        ref_dx, ref_dtau, _ = reference.lif_backward_np(x_np, 0.5, -0.2, 4, axis, g_np)
        ok = (np.allclose(out.cpu().numpy(), reference.lif_forward_np(x_np, 0.5, -0.2, 4, axis), atol=1e-5)
              and np.allclose(dx.cpu().numpy(), ref_dx, atol=1e-5) and abs(dtau.item() - ref_dtau[0]) < 1e-3)
        if not ok:
            raise RuntimeError(f"the baseline disagrees with src/lif/reference.py along axis {axis}")


def bench(kernel, original, shape, window, repeat, report):
    import torch

    rows = []
    device = kernel.device
    print(f"\nbandwidth on {device.name()}, shape {tuple(shape)}, window {window}, median of 5 x "
          f"{repeat} launches (GB/s counts the bytes each must move: x in and out for a copy and the forward; "
          "x, dout in and dx out for the backward)")
    print(f"{'dtype':<8} {'what':<26} {'ms':>8} {'spread':>7} {'GB/s':>7} {'of copy':>8}  goal")
    for dtype_name in ("float32", "float16"):
        dtype = getattr(torch, dtype_name)
        x = torch.randn(shape, device=device.kind).to(dtype)
        g = torch.randn(shape, device=device.kind).to(dtype)
        tau, vth = torch.tensor([0.25], device=device.kind), torch.tensor([-1.0], device=device.kind)
        copy_out = torch.empty_like(x)
        nbytes = x.numel() * x.element_size()
        copy_ms, copy_spread = device.time_ms(lambda: copy_out.copy_(x), repeat)
        copy_bw = 2 * nbytes / copy_ms / 1e6
        measured = [("device copy", None, copy_ms, copy_spread, 2 * nbytes, None)]
        speedups = []
        for axis in (2, 3):
            fwd = device.time_ms(lambda: kernel.forward(x, tau, vth, window, axis), repeat)
            bwd = device.time_ms(lambda: kernel.backward(x, tau, vth, g, window, axis), repeat)
            _, saved = original.forward(x, tau, vth, window, axis)
            o_fwd = device.time_ms(lambda: original.forward(x, tau, vth, window, axis), repeat)
            o_bwd = device.time_ms(lambda: original.backward(saved, tau, g, window, axis), repeat)
            measured += [("forward", axis, *fwd, 2 * nbytes, GOALS["forward"]),
                         ("backward", axis, *bwd, 3 * nbytes, GOALS["backward"]),
                         ("original forward", axis, *o_fwd, 2 * nbytes, None),
                         ("original backward", axis, *o_bwd, 3 * nbytes, None)]
            speedup = (o_fwd[0] + o_bwd[0]) / (fwd[0] + bwd[0])
            speedups.append({"dtype": dtype_name, "what": "speedup fwd+bwd vs original", "axis": axis,
                             "ratio": speedup, "goal": GOALS["speedup"], "met": speedup >= GOALS["speedup"]})
        for what, axis, ms, spread, moved, goal in measured:
            bw = moved / ms / 1e6
            row = {"dtype": dtype_name, "what": what, "axis": axis, "ms": ms, "spread_ms": spread, "gb_s": bw,
                   "of_copy": bw / copy_bw}
            if goal is not None:
                row.update(goal=goal, met=bw / copy_bw >= goal)
            rows.append(row)
        rows += speedups
    for row in rows:
        label = row["what"] + (f" axis {row['axis']}" if row.get("axis") else "")
        if "ratio" in row:
            print(f"{row['dtype']:<8} {label:<34} {row['ratio']:24.2f}x  {'ok' if row['met'] else 'MISS'} "
                  f">= {row['goal']:.0f}x")
        else:
            goal = f"{'ok' if row['met'] else 'MISS'} >= {row['goal']:.0%}" if "goal" in row else ""
            print(f"{row['dtype']:<8} {label:<26} {row['ms']:8.3f} {row['spread_ms']:7.3f} {row['gb_s']:7.1f} "
                  f"{row['of_copy']:8.0%}  {goal}")
    report["bench"] = {"device": device.name(), "shape": list(shape), "window": window,
                       "repeat": repeat, "rows": rows}


def _describe_library(recipe, given=None):
    if given is not None:
        return str(given)
    try:
        path = build.library_path(recipe)
    except build.KernelBuildError as err:
        return f"cannot be had here: {err}"
    return f"{path} ({'present' if path.exists() else 'to be built'})"


def dry_run(args):
    print(f"kernel library:   {_describe_library(build.LIF_CUDA_RECIPE, args.lib)}")
    print(f"baseline library: {_describe_library(_original_recipe())}")
    cases = _cases()
    print(f"correctness: {len(cases)} cases x {len(DTYPES)} storage types ({', '.join(DTYPES)}): shapes "
          f"{', '.join(map(str, SHAPES))}; windows {WINDOWS}; axes 2 and 3")
    print(f"bandwidth: shape {tuple(args.bench_shape)}, window {args.bench_window}, float32 and float16: copy, "
          f"forward/backward and the original's, both axes, 5 samples x {args.repeat} launches")
    print(f"results would go to {args.json}")
    return 0


def main(argv=None):
    args = _parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the kernel builds say what they compile
    started = time.perf_counter()
    try:
        library = args.lib or build.build_library(build.LIF_CUDA_RECIPE)
        original_library = None if args.check else build.build_library(_original_recipe())
    except build.KernelBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not Path(library).is_file():
        print(f"error: no library at {library}", file=sys.stderr)
        return 1
    print(f"library: {library}\nbaseline: {original_library}")
    if args.build_only:
        return 0
    try:
        import torch
    except ImportError:
        print("error: this check needs PyTorch with CUDA (pip install torch)", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch (torch.cuda.is_available() is False)", file=sys.stderr)
        return 1
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "library": str(library),
              "device": torch.cuda.get_device_name(), "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    ok = False
    try:
        kernel = Kernel(StandaloneKernel(library), Device("cuda"))
        reference = _load_module("lif_reference", REPO / "src" / "lif" / "reference.py")
        ok = check_correctness(kernel, reference, report) if args.all or args.check else True
        if args.all or args.bench:
            original = Original(original_library, kernel.device)
            check_original(original, reference)
            bench(kernel, original, args.bench_shape, args.bench_window, args.repeat, report)
    except RuntimeError as err:  # a failed launch: the library printed the reason on stderr
        print(f"error: {err}", file=sys.stderr)
        ok = False
        report["error"] = str(err)
    finally:  # what was measured is kept, whatever stopped the run
        report["seconds"] = time.perf_counter() - started
        report["passed"] = ok
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{'all correctness cases pass' if ok else 'FAILED'}; {report['seconds']:.0f} s; results in {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
