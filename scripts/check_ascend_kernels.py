#!/usr/bin/env python3
"""Check the AscendC LIF operators on an Ascend (910B) host: build and install them, compare them with the
numpy reference through LIFScan(backend="custom") in PYNATIVE and GRAPH mode, and time them against a copy.

    python scripts/check_ascend_kernels.py                       # build, install, check, time
    python scripts/check_ascend_kernels.py --skip-build          # use the operators MindSpore finds already
    python scripts/check_ascend_kernels.py --skip-bench --modes pynative

Build: scripts/build_ascend_kernels.sh (MindSpore's custom_compiler and the CANN toolkit); its output goes to
--build-log, which is kept and named when the build fails. The installed package is put first on
ASCEND_CUSTOM_OPP_PATH for this process.
Check: out, dx, dtau and dvth of every case (float32 and float16, odd shapes, windows -1/0/2/3/4/5 and longer
than the axis, both axes, a 1x1x7x8192 plane) against src/lif/reference.py, relative to the largest
reference magnitude (at least 1): 1e-5 for float32, 1e-3 for float16.
Timing: forward and backward operators alone on --bench-shape, against a device copy of the same tensor
(median and range over --samples samples of --repeat calls each).
Prints a table, then one JSON line with everything (also written to --json). Exit status 0 when the build and
every case pass; timings are reported, not judged.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUILD_SCRIPT = REPO / "scripts" / "build_ascend_kernels.sh"
TOLERANCE = {"float32": 1e-5, "float16": 1e-3}
SHAPES = ((2, 3, 7, 9), (1, 2, 13, 5), (2, 5, 33, 17))
LARGE_PLANE = (1, 1, 7, 8192)
WINDOWS = (-1, 0, 2, 3, 4, 5, 40)  # 40: longer than every axis of SHAPES
MODES = ("pynative", "graph")


@dataclass(frozen=True)
class Case:
    shape: tuple
    axis: int
    window: int
    dtype: str

    def __str__(self):
        return f"{self.dtype} {'x'.join(map(str, self.shape))} axis={self.axis} window={self.window}"


def correctness_cases():
    """Every case checked in each mode: the grid of SHAPES x axes x WINDOWS x dtypes, plus the large plane."""
    cases = [Case(shape, axis, window, dtype) for dtype in TOLERANCE for shape in SHAPES for axis in (2, 3)
             for window in WINDOWS]
    # A plane wider than any one tile: windows along W that cross tile boundaries, and the whole axis along H.
    cases += [Case(LARGE_PLANE, axis, window, dtype) for dtype in TOLERANCE for axis, window in
              ((3, 5), (3, 0), (2, 3), (2, 0))]
    return cases


def relative_errors(got, reference):
    """``{name: max |got - ref| / max(1, max |ref|)}`` for the arrays of two ``{name: array}`` dicts."""
    errors = {}
    for name, ref in reference.items():
        ref = np.asarray(ref, np.float64)
        diff = np.abs(np.asarray(got[name], np.float64) - ref)
        errors[name] = float(diff.max() / max(1.0, float(np.abs(ref).max()))) if ref.size else 0.0
    return errors


def failed_outputs(errors, tolerance):
    """The entries of ``errors`` above ``tolerance`` (NaN counts as failed)."""
    return {name: err for name, err in errors.items() if not err <= tolerance}


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    build = parser.add_argument_group("build (scripts/build_ascend_kernels.sh)")
    build.add_argument("--skip-build", action="store_true",
                       help="do not build; use the operators installed where MindSpore looks")
    build.add_argument("--install-path", type=Path,
                       help="install the operator package here (default: the build script's, "
                            "$SNNMLP_HOME/ascend_opp)")
    build.add_argument("--soc-version", help="target SoCs, ';'-separated (default: the compiler's list)")
    build.add_argument("--cann", type=Path, help="CANN toolkit (default: the build script's, $ASCEND_HOME_PATH)")
    build.add_argument("--vendor", default="snn_mlp", help="vendor name of the package (default: %(default)s)")
    build.add_argument("--build-log", type=Path,
                       help="write the build output here and keep it (default: a temporary file, kept and "
                            "named only when the build fails)")
    check = parser.add_argument_group("check")
    check.add_argument("--modes", default=",".join(MODES),
                       help="comma-separated MindSpore modes to check and time in (default: %(default)s)")
    check.add_argument("--skip-bench", action="store_true", help="only check correctness")
    check.add_argument("--bench-shape", type=int, nargs=4, default=(128, 96, 56, 56), metavar=("N", "C", "H", "W"),
                       help="float32 tensor the timings use (default: 128 96 56 56)")
    check.add_argument("--bench-window", type=int, default=4, help="window of the timings (default: %(default)s)")
    check.add_argument("--repeat", type=int, default=20, help="calls per timing sample (default: %(default)s)")
    check.add_argument("--samples", type=int, default=5, help="timing samples per row (default: %(default)s)")
    check.add_argument("--json", type=Path, help="also write the JSON summary to this file")
    args = parser.parse_args(argv)
    args.modes = [m.strip().lower() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes takes a comma-separated subset of {','.join(MODES)}, got {','.join(unknown) or 'none'}")
    if args.repeat < 1 or args.samples < 1:
        parser.error("--repeat and --samples must be at least 1")
    return args


def build_command(args):
    """The scripts/build_ascend_kernels.sh command line for ``args``."""
    cmd = ["bash", str(BUILD_SCRIPT), "--vendor", args.vendor]
    if args.install_path is not None:
        cmd += ["--install-path", str(args.install_path)]
    if args.soc_version:
        cmd += ["--soc-version", args.soc_version]
    if args.cann is not None:
        cmd += ["--cann", str(args.cann)]
    return cmd


def build_operators(cmd, log_path=None):
    """Run the build ``cmd``, its output into a log file; returns ``(package dir or None, log path)``.

    The log is removed after a successful build unless ``log_path`` names it; after a failure it is kept, and
    the caller names it. The package directory is the one the build script prints last ("Installed in DIR").
    """
    keep = log_path is not None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="snn_mlp_ascend_build_", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    print(f"building the AscendC LIF operators: {' '.join(cmd)}\n  (output: {log_path})", flush=True)
    started = time.perf_counter()
    package = None
    with open(log_path, "w", encoding="utf-8") as log:
        # One line of output at a time: the log is complete up to a crash, and a hung build shows progress.
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO) as proc:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if line.startswith("Installed in "):
                    package = Path(line[len("Installed in "):].strip())
        status = proc.returncode
    print(f"  build finished in {time.perf_counter() - started:.0f} s (exit {status})")
    if status != 0 or package is None:
        return None, log_path
    if not keep:
        log_path.unlink()
    return package, log_path


def _log_tail(path, lines=30):
    text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def check_cases(cases, mode_name, run_case, reference):
    """Run every case in one mode; returns the list of failures as dicts."""
    failures = []
    for number, case in enumerate(cases, 1):
        rng = np.random.default_rng(number)
        x = rng.standard_normal(case.shape).astype(case.dtype)
        grad_out = rng.standard_normal(case.shape).astype(case.dtype)
        tau, vth = float(rng.uniform(-0.9, 0.9)), float(rng.uniform(-1.0, 0.5))
        try:
            got = run_case(case, x, grad_out, tau, vth)
        except Exception as err:  # pylint: disable=broad-except  (one failing case must not hide the others)
            failures.append({"mode": mode_name, "case": str(case), "error": f"{type(err).__name__}: {err}"})
            print(f"FAIL {mode_name} {case}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            continue
        x64, g64 = x.astype(np.float64), grad_out.astype(np.float64)
        ref_dx, ref_dtau, ref_dvth = reference.lif_backward_np(x64, tau, vth, case.window, case.axis, g64)
        ref = {"out": reference.lif_forward_np(x64, tau, vth, case.window, case.axis), "dx": ref_dx,
               "dtau": ref_dtau, "dvth": ref_dvth}
        bad = failed_outputs(relative_errors(got, ref), TOLERANCE[case.dtype])
        if bad:
            failures.append({"mode": mode_name, "case": str(case), "errors": bad})
            print(f"FAIL {mode_name} {case}: " + ", ".join(f"{n} rel. error {e:.2e}" for n, e in bad.items()))
        if number % 20 == 0:
            print(f"  {mode_name}: {number}/{len(cases)} cases", flush=True)
    print(f"{mode_name}: {len(cases) - len(failures)}/{len(cases)} cases match src/lif/reference.py", flush=True)
    return failures


def timing_summary(name, mode, times_s, nbytes, copy_median_s=None):
    """One row of the timing table: median/min/max in ms, GB/s at the median, ratio to the copy."""
    median = statistics.median(times_s)
    return {"name": name, "mode": mode, "median_ms": 1e3 * median, "min_ms": 1e3 * min(times_s),
            "max_ms": 1e3 * max(times_s), "bytes": nbytes, "gb_per_s": nbytes / median / 1e9,
            "ratio_vs_copy": None if copy_median_s is None else median / copy_median_s}


def format_table(rows):
    lines = [f"{'mode':<9} {'operation':<22} {'median ms':>10} {'range ms':>17} {'GB/s':>8} {'x copy':>7}"]
    for r in rows:
        ratio = "" if r["ratio_vs_copy"] is None else f"{r['ratio_vs_copy']:.2f}"
        lines.append(f"{r['mode']:<9} {r['name']:<22} {r['median_ms']:>10.3f} "
                     f"{r['min_ms']:>8.3f}-{r['max_ms']:<8.3f} {r['gb_per_s']:>8.1f} {ratio:>7}")
    return "\n".join(lines)


def _mindspore_runner(mode_name):
    """``run_case(case, x, grad_out, tau, vth) -> {out, dx, dtau, dvth}`` through LIFScan(backend="custom")."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from src.lif import LIFScan

    ms.set_context(mode=ms.GRAPH_MODE if mode_name == "graph" else ms.PYNATIVE_MODE)

    class Loss(nn.Cell):
        def __init__(self, scan):
            super().__init__()
            self.scan = scan

        def construct(self, x, tau, vth, grad_out):
            return (ops.cast(self.scan(x, tau, vth), ms.float32) * ops.cast(grad_out, ms.float32)).sum()

    def run_case(case, x, grad_out, tau, vth):
        scan = LIFScan(case.window, case.axis, backend="custom")
        args = (Tensor(x), Tensor([tau], ms.float32), Tensor([vth], ms.float32))
        out = scan(*args).asnumpy()
        dx, dtau, dvth = ms.grad(Loss(scan), grad_position=(0, 1, 2))(*args, Tensor(grad_out))
        return {"out": out, "dx": dx.asnumpy(), "dtau": dtau.asnumpy(), "dvth": dvth.asnumpy()}

    return run_case


def time_operators(mode_name, shape, window, repeat, samples):
    """Timing rows of the copy and, per axis, the forward and backward operators alone."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from src.lif.custom import make_custom_ops

    ms.set_context(mode=ms.GRAPH_MODE if mode_name == "graph" else ms.PYNATIVE_MODE)

    class Call(nn.Cell):
        def __init__(self, op):
            super().__init__()
            self.op = op

        def construct(self, *inputs):
            return self.op(*inputs)

    def sample_times(cell, *inputs):
        cell(*inputs)  # compile / warm up
        ms.runtime.synchronize()
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            for _ in range(repeat):
                cell(*inputs)
            ms.runtime.synchronize()
            times.append((time.perf_counter() - started) / repeat)
        return times

    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    dout = Tensor(rng.standard_normal(shape).astype(np.float32))
    tau, vth = Tensor([0.25], ms.float32), Tensor([-0.2], ms.float32)
    nbytes = int(np.prod(shape)) * 4
    forward, backward = make_custom_ops("Ascend")
    copy_times = sample_times(Call(ops.deepcopy), x)
    copy_median = statistics.median(copy_times)
    rows = [timing_summary("copy", mode_name, copy_times, 2 * nbytes)]
    for axis in (2, 3):
        rows.append(timing_summary(f"forward axis {axis}", mode_name,  # reads x, writes out
                                   sample_times(Call(forward), x, tau, vth, window, axis), 2 * nbytes, copy_median))
        rows.append(timing_summary(f"backward axis {axis}", mode_name,  # reads x and dout, writes dx
                                   sample_times(Call(backward), x, tau, vth, dout, window, axis), 3 * nbytes,
                                   copy_median))
    return rows


def main(argv=None):
    args = _parse_args(argv)
    summary = {"check": "ascend_lif_kernels", "build": None, "cases": 0, "failures": [], "timings": []}
    if args.skip_build:
        summary["build"] = "skipped"
    else:
        package, log_path = build_operators(build_command(args), args.build_log)
        if package is None:
            print(f"error: building the operators failed; the full log is kept at {log_path}. Its end:\n"
                  f"{_log_tail(log_path)}", file=sys.stderr)
            summary.update(build="failed", build_log=str(log_path), ok=False)
            print(json.dumps(summary))
            return 1
        os.environ["ASCEND_CUSTOM_OPP_PATH"] = os.pathsep.join(
            filter(None, [str(package), os.environ.get("ASCEND_CUSTOM_OPP_PATH")]))
        summary["build"] = str(package)

    import mindspore as ms

    from src.lif import reference
    from src.lif.custom import ascend_op_missing_message, find_ascend_op

    try:
        ms.set_device("Ascend")
    except Exception as err:  # pylint: disable=broad-except  (MindSpore raises several types here)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: this check needs an Ascend device, and MindSpore cannot use one here: {reason}",
              file=sys.stderr)
        return 1
    package = find_ascend_op()
    if package is None:
        print(f"error: {ascend_op_missing_message()}", file=sys.stderr)
        return 1
    print(f"operators: {package}")
    summary["package"] = str(package)

    cases = correctness_cases()
    for mode_name in args.modes:
        summary["failures"] += check_cases(cases, mode_name, _mindspore_runner(mode_name), reference)
        summary["cases"] += len(cases)
    if not args.skip_bench:
        for mode_name in args.modes:
            summary["timings"] += time_operators(mode_name, tuple(args.bench_shape), args.bench_window,
                                                 args.repeat, args.samples)
        print(f"\ntimings, float32 {'x'.join(map(str, args.bench_shape))}, window {args.bench_window}, "
              f"{args.samples} samples of {args.repeat} calls:")
        print(format_table(summary["timings"]))
    summary["ok"] = not summary["failures"]
    line = json.dumps(summary)
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
