"""Time the LIF scan back-ends against a plain copy of the same tensor.

    python -m src.lif.bench                      # (8, 96, 56, 56) float32, window 4, both axes, CPU
    python -m src.lif.bench --shape 128 96 56 56 --dtype float16 --device GPU

Reports the wall time per call of: numpy ``x.copy()``, MindSpore ``x.copy()`` (PYNATIVE), a MindSpore copy op
(``ops.deepcopy``) in the chosen mode, per axis the forward and backward ops of each back-end, and on CPU the
kernel alone (called through ctypes on numpy arrays, without the framework's per-op cost). Each figure is the
median over 5 batches of the mean time of ``--repeat`` back-to-back calls, waiting for the last one.
The copy is the floor for a scan that must read x once and write out once; the kernels aim to stay within 2x
of it. On a busy machine the figures vary: compare rows of one run, not runs.
"""
import argparse
import statistics
import sys
import time

import numpy as np


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m src.lif.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=4, default=(8, 96, 56, 56), metavar=("N", "C", "H", "W"),
                        help="input shape (NCHW)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="input dtype (tau/vth stay float32)")
    parser.add_argument("--window", type=int, default=4, help="LIF window (-1 off, 0 whole axis)")
    parser.add_argument("--axes", type=int, nargs="+", choices=(2, 3), default=(2, 3), help="scan axes to time")
    parser.add_argument("--backends", nargs="+", choices=("custom", "primitive"), default=("custom",),
                        help="back-ends to time")
    parser.add_argument("--device", choices=("CPU", "GPU", "Ascend"), default="CPU", help="MindSpore device target")
    parser.add_argument("--mode", choices=("graph", "pynative"), default="graph",
                        help="MindSpore execution mode of the timed ops")
    parser.add_argument("--repeat", type=int, default=20, help="calls per timed batch (after one warm-up batch)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if min(args.shape) < 1:
        parser.error("--shape needs positive sizes")
    if args.window < -1:
        parser.error("--window must be -1, 0 or positive")
    return args


def _time_ms(call, wait, repeat, batches=5):
    """Median over batches of the mean time per call of ``repeat`` calls, waiting for the last; milliseconds."""
    wait(call())
    means = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(repeat):
            result = call()
        wait(result)
        means.append((time.perf_counter() - start) * 1e3 / repeat)
    return statistics.median(means)


def _kernel_only_rows(kernel, x, args):
    """The CPU library on numpy arrays: the kernel's own time, threads included."""
    def handle(array):
        return array.ctypes.data, array.shape, str(array.dtype)

    grad_out = np.ascontiguousarray(x[::-1])
    out, dx = np.empty_like(x), np.empty_like(x)
    tau, vth = np.array([0.25], np.float32), np.array([-1.0], np.float32)
    dtau, dvth = np.zeros(1, np.float32), np.zeros(1, np.float32)
    rows = []
    for axis in args.axes:
        rows.append((f"kernel only, forward axis {axis}", _time_ms(
            lambda: kernel.forward(handle(x), handle(tau), handle(vth), handle(out), args.window, axis),
            lambda _: None, args.repeat)))
        rows.append((f"kernel only, backward axis {axis}", _time_ms(
            lambda: kernel.backward(handle(x), handle(tau), handle(vth), handle(grad_out), handle(dx), handle(dtau),
                                    handle(dvth), args.window, axis), lambda _: None, args.repeat)))
    return rows


def main(argv=None):
    args = _parse_args(argv)
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from . import LIFScan
    from .custom import make_custom_ops
    from ..kernels.build import LIF_CPU_RECIPE, build_library
    from ..kernels.standalone import StandaloneKernel

    class Timed(nn.Cell):
        """One op as a Cell, so that GRAPH mode compiles it once."""

        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def construct(self, *inputs):
            return self.fn(*inputs)

    ms.set_device(args.device)
    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE)
    dtype = getattr(ms, args.dtype)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(args.shape).astype(np.float32)
    x = Tensor(x_np, dtype)
    grad_out = Tensor(rng.standard_normal(args.shape).astype(np.float32), dtype)
    tau = Tensor(np.array([0.25], np.float32))
    vth = Tensor(np.array([-1.0], np.float32))

    def wait(result):
        # Ops may run asynchronously; reading the (last) result waits for it.
        (result[0] if isinstance(result, tuple) else result).asnumpy()

    def timed(fn, *inputs):
        cell = fn if isinstance(fn, nn.Cell) else Timed(fn)
        return _time_ms(lambda: cell(*inputs), wait, args.repeat)

    def tensor_copy():
        with_mode = ms.get_context("mode")
        ms.set_context(mode=ms.PYNATIVE_MODE)
        try:
            return _time_ms(x.copy, wait, args.repeat)
        finally:
            ms.set_context(mode=with_mode)

    rows = [("numpy x.copy()", _time_ms(x_np.copy, lambda _: None, args.repeat)),
            ("MindSpore x.copy()", tensor_copy()),
            (f"MindSpore copy op ({args.mode})", timed(ops.deepcopy, x))]
    for backend in args.backends:
        for axis in args.axes:
            if backend == "custom":
                forward, backward = make_custom_ops(args.device)
                rows.append((f"custom forward, axis {axis}", timed(forward, x, tau, vth, args.window, axis)))
                rows.append((f"custom backward, axis {axis}",
                             timed(backward, x, tau, vth, grad_out, args.window, axis)))
            else:
                rows.append((f"primitive forward, axis {axis}",
                             timed(LIFScan(args.window, axis, "primitive"), x, tau, vth)))
    if args.device == "CPU" and "custom" in args.backends and args.dtype != "bfloat16":  # numpy has no bfloat16
        rows += _kernel_only_rows(StandaloneKernel(build_library(LIF_CPU_RECIPE)), x_np.astype(args.dtype), args)
    numpy_copy = rows[0][1]
    print(f"LIF scan, shape {tuple(args.shape)} {args.dtype}, window {args.window}, {args.device}, "
          f"{args.mode} mode, {args.repeat} calls per batch")
    for name, ms_time in rows:
        print(f"  {name:<28} {ms_time:8.3f} ms   {ms_time / numpy_copy:5.2f}x numpy copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
