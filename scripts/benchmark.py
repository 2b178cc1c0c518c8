"""Throughput benchmark of SNN-MLP on MindSpore, side by side with the PyTorch reference when torch is installed.

Sections (--sections, any of):
  eval    forward pass of the network in inference mode: images/s
  train   one training step as train.py runs it (src.engine.build_train_step with the model's ImageNet GPU recipe:
          soft-target cross entropy, loss scaling, backward, clipping, AdamW): images/s
  lif     the LIF kernels alone (along H and along W; forward and backward) in microseconds and effective GB/s,
          beside a plain copy of the same tensor (ops.deepcopy) and the primitive scan, in the same run; on CPU
          also the kernel library called through ctypes (no per-op framework cost) beside numpy's copy
  layers  GroupNorm(1), exact GELU, depthwise 3x3 and 1x1 conv alone on the first stage's activation, forward
          and forward+backward: the fused CPU kernels (src/fast_ops) vs MindSpore's operators vs PyTorch
  data    the input pipeline alone, train and eval recipes at 1 and 2 workers (and --data_workers), on a generated
          ImageNet-like JPEG folder (cached) unless --data_path: images/s, ms per image per worker, beside
          mindcv 0.3.0's loader with the same recipe when mindcv is installed; then a per-stage profile

Every measurement warms up first (GRAPH mode compiles then), then times --repeats calls and reports the median
and the spread (min..max as a percentage of the median). The variants of one measurement (MindSpore with the
fused kernels, MindSpore's own operators, PyTorch) are timed round-robin, one call each in turn, so that load
from other processes on a shared machine hits them alike and the ratios stay meaningful. Ratios are
throughput ratios against the baselines measured in the same run: "x torch" (> 1: faster than PyTorch) and
"x plain" (> 1: faster than MindSpore's own operators).

Progress goes to stderr, the table to stdout; --json writes every figure (rewritten after each measurement, so
an interrupted run keeps what it measured).

examples:
  python scripts/benchmark.py --quick
  python scripts/benchmark.py --model t --batch_size 8 --image_size 224 --mode GRAPH,PYNATIVE \\
      --fast_ops on,off --json bench.json
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from src.models import MODEL_ALIASES, MODEL_ARCHS  # noqa: E402  (needs the path above; no MindSpore import)

SECTIONS = ("eval", "train", "lif", "layers", "data")
MODELS = {name.rsplit("_", 1)[1]: name for name in MODEL_ARCHS}  # t, s, b
MODES = ("GRAPH", "PYNATIVE")
PRECISIONS = ("fp32", "mixed")
FAST_OPS = ("on", "off")
NUM_CLASSES = 1000
# The generated ImageFolder: ImageNet's typical sizes (400-640 x 300-480) and file size (~110 KB at quality 90);
# 16 training and 6 eval batches of 32, so that timed batches (default 6, after 2 warm-up) stay within an epoch.
DATA_CLASSES, DATA_TRAIN_PER_CLASS, DATA_VAL_PER_CLASS = 2, 256, 96

# What --quick sets (flags given explicitly still win): one small T configuration, every section, ~1 minute.
QUICK = dict(model=["snnmlp_t"], batch_size=2, image_size=64, mode=["GRAPH"], precision=["fp32"],
             fast_ops=["on", "off"], repeats=3, warmup=1, data_batches=2, min_sample_s=0.03)
DEFAULTS = dict(model=["snnmlp_t"], batch_size=8, image_size=224, mode=["GRAPH"], precision=["fp32"],
                fast_ops=["on"], repeats=5, warmup=2, data_batches=6, min_sample_s=0.2)


def describe(preset):
    return ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in preset.items())


class BenchmarkError(Exception):
    """A bad flag or an unusable setting; the message is one readable line."""


def comma_list(allowed, name, aliases=None):
    """argparse type: a comma-separated list of ``allowed`` values (or ``aliases`` of them), case-insensitive,
    duplicates dropped, order kept."""
    lookup = {value.lower(): value for value in allowed}
    lookup.update({alias.lower(): value for alias, value in (aliases or {}).items()})

    def parse(text):
        values = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            if item.lower() not in lookup:
                raise argparse.ArgumentTypeError(f"unknown {name} {item!r}; valid: {', '.join(sorted(lookup))}")
            if lookup[item.lower()] not in values:
                values.append(lookup[item.lower()])
        if not values:
            raise argparse.ArgumentTypeError(f"no {name} given")
        return values

    return parse


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=comma_list(MODELS.values(), "model", {**MODELS, **MODEL_ALIASES}),
                        default=None,
                        help="variants to measure, comma-separated: t, s, b (or snnmlp_t, ...; snn_mlp = t). "
                             "Default t")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="images per call for eval, train, lif, layers and data "
                             f"(default {DEFAULTS['batch_size']})")
    parser.add_argument("--image_size", type=positive_int, default=None,
                        help=f"square input side, a multiple of 32 (default {DEFAULTS['image_size']}); the lif and "
                             "layers sections use the first stage's activation (96 channels, side / 4)")
    parser.add_argument("--mode", type=comma_list(MODES, "mode"), default=None,
                        help="MindSpore execution modes, comma-separated: GRAPH (what train.py uses), PYNATIVE "
                             "(default GRAPH); lif and layers run each operator as a one-operator Cell in each mode")
    parser.add_argument("--precision", type=comma_list(PRECISIONS, "precision"), default=None,
                        help="fp32 and/or mixed (auto_mixed_precision O2, dynamic loss scale) for eval and train; "
                             "mixed is skipped with a note on CPU, where train.py trains in float32 too "
                             "(default fp32)")
    parser.add_argument("--fast_ops", type=comma_list(FAST_OPS, "fast_ops value"), default=None,
                        help="MindSpore variants: on = the fused CPU kernels of src/fast_ops (as shipped), off = "
                             "MindSpore's own operators (SNNMLP_FAST_OPS=0); on,off measures both in the same "
                             "run and adds the 'x plain' ratio (default on)")
    parser.add_argument("--sections", type=comma_list(SECTIONS, "section"), default=list(SECTIONS),
                        help=f"what to measure, comma-separated: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help=f"timed calls per variant; the median is reported (default {DEFAULTS['repeats']})")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed calls per variant first; GRAPH mode compiles in the first "
                             f"(default {DEFAULTS['warmup']})")
    parser.add_argument("--min_sample_s", type=float, default=None,
                        help="lif and layers: each timed sample repeats the operator back to back for at least "
                             "this many seconds and reports the time per call, so that millisecond operators are "
                             f"not timed one call at a time (default {DEFAULTS['min_sample_s']})")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count(),
                        help="CPU threads for MindSpore's kernels, the project's aot kernels "
                             "(SNNMLP_NUM_THREADS) and PyTorch alike (default: all cores, here "
                             f"{os.cpu_count()})")
    parser.add_argument("--torch", choices=("auto", "on", "off"), default="auto",
                        help="PyTorch reference side by side (reference/snn_mlp_torch.py, CPU): auto = when torch "
                             "is installed and the device target is CPU; on = required; off = never")
    parser.add_argument("--device_target", choices=("CPU", "GPU", "Ascend"), default=None,
                        help="MindSpore device (default: MindSpore's default, CPU for the CPU wheel)")
    parser.add_argument("--data_path", default=None,
                        help="ImageFolder root (train/ and val/) for the data section; default: generated "
                             f"ImageNet-like JPEGs ({DATA_CLASSES} classes x {DATA_TRAIN_PER_CLASS} train + "
                             f"{DATA_VAL_PER_CLASS} val, 400-640 x 300-480, ~110 KB), made once under "
                             "$SNNMLP_HOME/data (default ~/.cache/snn_mlp/data)")
    parser.add_argument("--data_batches", type=positive_int, default=None,
                        help=f"batches timed per repeat in the data section (default {DEFAULTS['data_batches']})")
    parser.add_argument("--data_workers", "--workers", type=positive_int, default=None,
                        help="data section: a worker count measured besides 1 and 2")
    parser.add_argument("--data_batch_size", type=positive_int, default=32,
                        help="data section: images per batch (default 32, the recipe's per-card batch)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the machine, the settings and every figure as JSON to PATH")
    parser.add_argument("--quick", action="store_true",
                        help=f"a ~1 minute smoke run: {describe(QUICK)} (flags given explicitly still win)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size % 32:
        parser.error(f"--image_size must be a multiple of 32 (patch 4 and three 2x2 merges), got {args.image_size}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.min_sample_s < 0:
        parser.error(f"--min_sample_s must be >= 0, got {args.min_sample_s}")
    return args


# ---------------------------------------------------------------- timing and results

def failure(err):
    """One line for a failure: the exception type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"failed: {type(err).__name__}" + (f": {lines[0]}" if lines else "")


def progress(message):
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    section: str
    variant: str  # "mindspore", "mindspore-plain", "torch", "copy", ...
    what: str  # model / operator
    mode: str = ""
    precision: str = ""
    samples_s: list = field(default_factory=list)
    work: float = 0.0  # images per call, or bytes per call
    work_unit: str = "images"
    ratio_vs_torch: float = None
    ratio_vs_plain: float = None
    ratio_vs_copy: float = None  # time / the copy's time (lif section)
    note: str = ""

    @property
    def median_s(self):
        return statistics.median(self.samples_s) if self.samples_s else None

    @property
    def spread(self):
        """(max - min) / median: how much the machine moved under this measurement."""
        if not self.samples_s:
            return None
        return (max(self.samples_s) - min(self.samples_s)) / self.median_s

    @property
    def throughput(self):
        if not self.samples_s:
            return None
        scale = 1e9 if self.work_unit == "bytes" else 1.0
        return self.work / self.median_s / scale

    @property
    def throughput_unit(self):
        return "GB/s" if self.work_unit == "bytes" else "images/s"

    def as_dict(self):
        data = asdict(self)
        data.update(median_s=self.median_s, spread=self.spread, throughput=self.throughput,
                    throughput_unit=self.throughput_unit)
        return data


def round_robin(calls, warmup, repeats, label, min_sample_s=0.0):
    """Time each of ``calls`` (name -> zero-argument function that returns after the device finished)
    ``repeats`` times, one sample of each in turn, after ``warmup`` untimed calls each; name -> seconds per call.

    A sample is one call, or for calls shorter than ``min_sample_s`` as many back-to-back calls as fill it
    (counted from the last warm-up call), divided by their number: millisecond operators are then timed over
    tens of calls, so a scheduling hiccup of the shared machine moves one sample less.
    """
    inner = {}
    for name, call in calls.items():
        last = 0.0
        for i in range(max(warmup, 1 if min_sample_s else 0)):
            started = time.perf_counter()
            call()
            last = time.perf_counter() - started
            progress(f"{label} {name}: " + (f"warm-up {i + 1}/{warmup}" if i < warmup else "calibration")
                     + f" {last:.3f} s")
        inner[name] = max(1, math.ceil(min_sample_s / last)) if min_sample_s and last > 0 else 1
    samples = {name: [] for name in calls}
    for r in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(inner[name]):
                call()
            samples[name].append((time.perf_counter() - started) / inner[name])
        progress(f"{label} repeat {r + 1}/{repeats}: "
                 + ", ".join(f"{name} {samples[name][-1] * 1e3:.2f} ms" for name in calls))
    return samples


def set_ratios(rows):
    """Throughput ratios of each row against the torch / plain-MindSpore row of the same measurement."""
    def key(row, variant):
        return row.section, row.what, row.mode, row.precision, variant

    baselines = {}
    for row in rows:
        if row.samples_s and row.variant in ("torch", "mindspore-plain"):
            baselines[key(row, row.variant)] = row
    for row in rows:
        if not row.samples_s:
            continue
        for variant, attr in (("torch", "ratio_vs_torch"), ("mindspore-plain", "ratio_vs_plain")):
            base = baselines.get(key(row, variant))
            if base is not None and base is not row:
                setattr(row, attr, base.median_s / row.median_s)


# ---------------------------------------------------------------- the machine

def machine_info(args, torch):
    import mindspore as ms
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "threads": args.threads, "platform": platform.platform(),
        "python": platform.python_version(), "mindspore": ms.__version__, "numpy": np.__version__,
        "torch": torch.__version__ if torch else None, "device_target": ms.get_context("device_target"),
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def set_threads(threads, torch):
    import mindspore as ms

    os.environ["SNNMLP_NUM_THREADS"] = str(threads)  # the LIF and fast-ops aot kernels read it per call
    if ms.get_context("device_target") == "CPU":
        ms.device_context.cpu.op_tuning.threads_num(threads)
    if torch:
        torch.set_num_threads(threads)


def load_torch(choice):
    if choice == "off":
        return None
    try:
        import torch
    except ImportError:
        if choice == "on":
            raise BenchmarkError("--torch on, but torch is not installed (pip install torch)") from None
        progress("torch not installed: no PyTorch side-by-side")
        return None
    import mindspore as ms

    if ms.get_context("device_target") != "CPU":
        if choice == "on":
            raise BenchmarkError("the PyTorch reference runs on CPU; compare it with --device_target CPU")
        progress("device target is not CPU: no PyTorch (CPU) side-by-side")
        return None
    return torch


# ---------------------------------------------------------------- eval and train

def build_mindspore(name, fast, precision, image_size):
    import mindspore as ms

    from src import fast_ops
    from src.snn_mlp import create_model

    with nullcontext() if fast else fast_ops.disabled():
        net = create_model(name, num_classes=NUM_CLASSES, image_size=image_size, drop_path_rate=0.0)
    if precision == "mixed":
        net = ms.amp.auto_mixed_precision(net, "O2")
    return net


def torch_model(torch, name):
    from reference.snn_mlp_torch import TorchSNNMLP

    torch.manual_seed(0)
    arch = MODEL_ARCHS[name]
    return TorchSNNMLP(num_classes=NUM_CLASSES, embed_dim=arch["embed_dim"], depths=arch["depths"])


def inputs(batch_size, image_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32)
    targets = np.zeros((batch_size, NUM_CLASSES), np.float32)
    targets[np.arange(batch_size), rng.integers(0, NUM_CLASSES, batch_size)] = 1.0
    return images, targets


def mindspore_eval_call(net, images):
    from mindspore import Tensor

    net.set_train(False)
    x = Tensor(images)
    return lambda: net(x).asnumpy()


def train_recipe(name):
    """The config whose train step the train section times: the model's ImageNet GPU recipe."""
    return str(REPO_ROOT / "config" / f"{name}_imagenet_gpu.yaml")


def train_step_for(net, name):
    """The train step train.py builds for ``name``'s recipe (AdamW, clipping, loss scaling, EMA as configured)."""
    from src.config import load_config
    from src.engine import build_train_step

    return build_train_step(load_config(["--config_path", train_recipe(name)]), net, net)


def mindspore_train_call(net, name, images, targets):
    import numpy as np
    from mindspore import Tensor

    net.set_train(True)
    step = train_step_for(net, name)
    step.set_train(True)
    x, y = Tensor(images), Tensor(targets)
    lrs = Tensor(np.array([1e-4, 1e-5], np.float32))  # tiny steps: the weights stay sane over the repeats
    return lambda: step(x, y, lrs)[0].asnumpy()


def torch_eval_call(torch, model, images):
    model.eval()
    x = torch.from_numpy(images)

    def call():
        with torch.no_grad():
            return model(x).numpy()

    return call


def torch_train_call(torch, model, images, targets):
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x, y = torch.from_numpy(images), torch.from_numpy(targets)

    def call():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.sum(-y * torch.log_softmax(model(x), dim=-1), dim=-1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return loss.item()

    return call


def network_rows(section, args, torch, record):
    import mindspore as ms

    for name in args.model:
        images, targets = inputs(args.batch_size, args.image_size)
        for mode in args.mode:
            for precision in args.precision:
                label = f"{section} {name} {mode} {precision}"
                if precision == "mixed" and ms.get_context("device_target") == "CPU":
                    record(Row(section, "mindspore", name, mode, precision,
                               note="skipped: no mixed precision on CPU (train.py trains in float32 there)"))
                    continue
                ms.set_context(mode=getattr(ms, f"{mode}_MODE"))
                calls = {}
                try:
                    for fast in args.fast_ops:
                        variant = "mindspore" if fast == "on" else "mindspore-plain"
                        progress(f"{label}: building {variant}")
                        net = build_mindspore(name, fast == "on", precision, args.image_size)
                        calls[variant] = (mindspore_eval_call(net, images) if section == "eval"
                                          else mindspore_train_call(net, name, images, targets))
                    # PyTorch knows no modes; it is timed again beside each mode (fp32) so that every ratio
                    # comes from calls interleaved under the same load.
                    if torch is not None and precision == "fp32":
                        model = torch_model(torch, name)
                        calls["torch"] = (torch_eval_call(torch, model, images) if section == "eval"
                                          else torch_train_call(torch, model, images, targets))
                    samples = round_robin(calls, args.warmup, args.repeats, label)
                except Exception as err:  # one failed configuration must not cost the others
                    traceback.print_exc()
                    record(Row(section, "mindspore", name, mode, precision, note=failure(err)))
                    continue
                finally:
                    ms.set_context(mode=ms.PYNATIVE_MODE)
                for variant, times in samples.items():
                    note = f"timed beside the {mode} runs" if variant == "torch" else ""
                    record(Row(section, variant, name, mode, precision, times, args.batch_size, note=note))


# ---------------------------------------------------------------- LIF and layers (operators alone)

def activation_shape(args):
    side = args.image_size // 4
    return args.batch_size, 96, side, side


def call_cell(op):
    """``op`` as a Cell: in GRAPH mode it is compiled like a layer of the network, in PYNATIVE run op by op."""
    from mindspore import nn

    class Call(nn.Cell):
        def __init__(self):
            super().__init__()
            self.op = op

        def construct(self, *inputs):
            return self.op(*inputs)

    return Call()


def synced(cell, *inputs):
    """A zero-argument call of ``cell`` that returns once the device has finished (every output fetched)."""
    def fetch(out):
        if isinstance(out, (tuple, list)):
            for item in out:
                fetch(item)
        else:
            out.asnumpy()

    return lambda: fetch(cell(*inputs))


def lif_rows(args, torch, record):
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, ops

    from src.lif import LIFScan
    from src.lif.custom import make_custom_ops

    def kernel_only(axis):
        """The CPU library through ctypes on numpy arrays: the kernel's own time (threads included), beside numpy's
        copy; ``(calls, bytes moved)``."""
        from src.kernels.build import LIF_CPU_RECIPE, build_library
        from src.kernels.standalone import StandaloneKernel

        kernel = StandaloneKernel(build_library(LIF_CPU_RECIPE))
        arrays = dict(x=x_np, dout=dout_np, out=np.empty_like(x_np), dx=np.empty_like(x_np),
                      tau=np.array([0.25], np.float32), vth=np.array([-0.2], np.float32),
                      dtau=np.zeros(1, np.float32), dvth=np.zeros(1, np.float32))

        def handles(*names):  # (pointer, shape, dtype) as StandaloneKernel takes them; `arrays` stays alive
            return [(arrays[n].ctypes.data, arrays[n].shape, str(arrays[n].dtype)) for n in names]

        calls = {"numpy-copy": x_np.copy,
                 "kernel-forward": lambda: kernel.forward(*handles("x", "tau", "vth", "out"), 4, axis),
                 "kernel-backward": lambda: kernel.backward(*handles("x", "tau", "vth", "dout", "dx", "dtau", "dvth"),
                                                            4, axis)}
        return calls, {"numpy-copy": 2 * nbytes, "kernel-forward": 2 * nbytes, "kernel-backward": 3 * nbytes}

    shape = activation_shape(args)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape).astype(np.float32)
    dout_np = rng.standard_normal(shape).astype(np.float32)
    x, dout = Tensor(x_np), Tensor(dout_np)
    tau, vth = Tensor([0.25], ms.float32), Tensor([-0.2], ms.float32)
    nbytes = x_np.nbytes
    what = "x".join(map(str, shape))
    target = ms.get_context("device_target")
    for mode in args.mode:
        ms.set_context(mode=getattr(ms, f"{mode}_MODE"))
        try:
            for axis, along in ((2, "H"), (3, "W")):
                calls = {"copy": synced(call_cell(ops.deepcopy), x)}
                work = {"copy": 2 * nbytes}
                if LIFScan(4, axis).backend == "custom":
                    forward, backward = make_custom_ops(target)
                    calls["forward"] = synced(call_cell(forward), x, tau, vth, 4, axis)
                    calls["backward"] = synced(call_cell(backward), x, tau, vth, dout, 4, axis)  # the kernel alone
                    work.update(forward=2 * nbytes, backward=3 * nbytes)  # read x (and dout), write out (dx)
                    if target == "CPU":
                        more_calls, more_work = kernel_only(axis)
                        calls.update(more_calls)
                        work.update(more_work)
                else:
                    progress(f"lif: no {target} kernel; the primitive scan only")
                calls["forward-primitive"] = synced(LIFScan(4, axis, backend="primitive"), x, tau, vth)
                work["forward-primitive"] = 2 * nbytes
                if torch is not None:
                    from reference.snn_mlp_torch import lif_torch

                    tx, ttau, tvth = torch.from_numpy(x_np), torch.tensor([0.25]), torch.tensor([-0.2])
                    calls["torch-forward"] = lambda tx=tx, axis=axis: lif_torch(tx, ttau, tvth, 4, axis).numpy()
                    calls["torch-copy"] = lambda tx=tx: tx.clone().numpy()
                    work.update({"torch-forward": 2 * nbytes, "torch-copy": 2 * nbytes})
                samples = round_robin(calls, args.warmup, args.repeats, f"lif {mode} along {along} {what}",
                                      args.min_sample_s)
                for variant, times in samples.items():
                    row = Row("lif", variant, f"LIF along {along} {what}", mode, "fp32", times, work[variant],
                              "bytes")
                    # Time against the copy of the same framework (the target: forward <= 2x a copy).
                    copy = {"torch": "torch-copy", "kernel": "numpy-copy"}.get(variant.split("-")[0], "copy")
                    if not variant.endswith("copy"):
                        row.ratio_vs_copy = statistics.median(times) / statistics.median(samples[copy])
                    if variant == "torch-forward":
                        row.note = "lif_torch of reference/snn_mlp_torch.py"
                    elif variant.startswith("kernel"):
                        row.note = "the library through ctypes (src/kernels/standalone.py)"
                    record(row)
        finally:
            ms.set_context(mode=ms.PYNATIVE_MODE)


def layer_rows(args, torch, record):
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn

    from src import fast_ops
    from src.fast_ops import FastConv1x1, FastDepthwiseConv3x3, FastGELU, FastGroupNorm

    shape = activation_shape(args)
    channels = shape[1]
    x_np = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = Tensor(x_np)
    builders = {
        "GroupNorm(1)": lambda: FastGroupNorm(channels),
        "GELU (erf)": FastGELU,
        "depthwise 3x3": lambda: FastDepthwiseConv3x3(channels),
        "1x1 conv": lambda: FastConv1x1(channels, channels),
        "1x1 conv 4x wide": lambda: FastConv1x1(channels, 4 * channels),
    }
    torch_layers = {}
    if torch is not None:
        torch_layers = {
            "GroupNorm(1)": torch.nn.GroupNorm(1, channels), "GELU (erf)": torch.nn.GELU(),
            "depthwise 3x3": torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
            "1x1 conv": torch.nn.Conv2d(channels, channels, 1),
            "1x1 conv 4x wide": torch.nn.Conv2d(channels, 4 * channels, 1),
        }
    for mode in args.mode:
        ms.set_context(mode=getattr(ms, f"{mode}_MODE"))
        try:
            for layer, build in builders.items():
                cells = {"mindspore": build()}
                if getattr(cells["mindspore"], "use_kernel", False):
                    with fast_ops.disabled():
                        cells["mindspore-plain"] = build()
                for direction in ("forward", "forward+backward"):
                    calls = {}
                    for variant, cell in cells.items():
                        if direction == "forward":
                            calls[variant] = synced(cell, x)
                        else:  # value_and_grad: the forward output is wanted, so GRAPH mode cannot prune it
                            step = ms.value_and_grad(cell, grad_position=0, weights=cell.trainable_params())
                            calls[variant] = synced(step, x)
                    if layer in torch_layers:
                        module = torch_layers[layer]
                        tx = torch.from_numpy(x_np).requires_grad_(direction != "forward")
                        if direction == "forward":
                            calls["torch"] = lambda module=module, tx=tx: module(tx).detach().numpy()
                        else:
                            def torch_grad(module=module, tx=tx):
                                y = module(tx)
                                inputs = [tx, *module.parameters()]
                                return torch.autograd.grad(y, inputs, torch.ones_like(y))[0].numpy()
                            calls["torch"] = torch_grad
                    samples = round_robin(calls, args.warmup, args.repeats, f"layers {mode} {layer} {direction}",
                                          args.min_sample_s)
                    for variant, times in samples.items():
                        record(Row("layers", variant, f"{layer} {direction} {'x'.join(map(str, shape))}", mode,
                                   "fp32", times, args.batch_size))
        finally:
            ms.set_context(mode=ms.PYNATIVE_MODE)


# ---------------------------------------------------------------- data

_DATA_MARKER = "imagenet_like.json"
_DATA_FORMAT = 2


def imagenet_like_root():
    from src.default_data import default_data_root

    return os.path.join(os.path.dirname(default_data_root()), "imagenet_like")


def _imagenet_like_image(index):
    """A JPEG-worthy photo stand-in: smooth colour fields, mid-frequency texture and sensor noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([7, index])
    width, height = int(rng.integers(400, 641)), int(rng.integers(300, 481))
    layers = []
    for cells, amplitude in ((6, 110.0), (40, 45.0)):
        grid = rng.uniform(-amplitude, amplitude, (cells * 3 // 4 + 1, cells + 1, 3)).astype(np.float32)
        layers.append(np.stack([np.asarray(Image.fromarray(grid[..., c], mode="F").resize(
            (width, height), Image.Resampling.BICUBIC)) for c in range(3)], axis=-1))
    noise = rng.normal(0.0, 17.0, (height, width, 3)).astype(np.float32)
    pixels = np.clip(128.0 + layers[0] + layers[1] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def prepare_imagenet_like(root=None):
    """Generate (once; kept while its marker matches) the benchmark's JPEG ImageFolder; returns its root."""
    root = root or imagenet_like_root()
    counts = {"train": DATA_TRAIN_PER_CLASS, "val": DATA_VAL_PER_CLASS}
    marker = {"format": _DATA_FORMAT, "classes": DATA_CLASSES, "per_class": counts}
    try:
        with open(os.path.join(root, _DATA_MARKER), encoding="utf-8") as f:
            if json.load(f) == marker:
                return root
    except (OSError, ValueError):
        pass
    import shutil
    import tempfile

    progress(f"data: generating {DATA_CLASSES} x ({DATA_TRAIN_PER_CLASS} + {DATA_VAL_PER_CLASS}) ImageNet-like "
             f"JPEGs in {root}")
    os.makedirs(os.path.dirname(root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".imagenet-like-", dir=os.path.dirname(root))
    try:
        index = 0
        for split, per_class in counts.items():
            for c in range(DATA_CLASSES):
                folder = os.path.join(tmp, split, f"n{c:08d}")
                os.makedirs(folder)
                for i in range(per_class):
                    _imagenet_like_image(index).save(os.path.join(folder, f"{i:04d}.JPEG"), quality=90)
                    index += 1
        with open(os.path.join(tmp, _DATA_MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f)
        shutil.rmtree(root, ignore_errors=True)  # an incomplete or outdated one
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _mindcv_loader(root, train, batch_size, image_size, workers, num_classes):
    """mindcv 0.3.0's loader with our recipe (what its train.py builds for swin/SNN-MLP-like configs)."""
    from mindcv.data import create_dataset as mindcv_dataset, create_loader, create_transforms

    dataset = mindcv_dataset(name="imagenet", root=root, split="train" if train else "val", shuffle=train,
                             num_parallel_workers=workers)
    if train:
        transform = create_transforms("imagenet", image_resize=image_size, is_training=True,
                                      auto_augment="randaug-m9-mstd0.5-inc1", interpolation="bicubic",
                                      re_prob=0.25, re_value="random", hflip=0.5)
    else:
        transform = create_transforms("imagenet", image_resize=image_size, is_training=False,
                                      interpolation="bicubic", crop_pct=0.875)
    return create_loader(dataset, batch_size, drop_remainder=train, is_training=train, mixup=0.8 if train else 0,
                         cutmix=1.0 if train else 0, cutmix_prob=1.0, num_classes=num_classes, transform=transform,
                         num_parallel_workers=workers)


def _ours_loader(root, train, batch_size, image_size, workers, num_classes):
    from src.dataset import create_dataset

    return create_dataset(root, train, batch_size, image_size=image_size, num_classes=num_classes,
                          num_workers=workers)


def cpu_seconds():
    """CPU time used so far by this process (all its threads) and its worker processes."""
    try:
        import psutil
    except ImportError:  # threads only then: worker processes are not counted
        return time.process_time()
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # a worker that just exited
            pass
    return total


def time_pipeline(build, batches, warmup_batches=2):
    """(wall seconds, CPU seconds) for ``batches`` batches of a freshly built pipeline, after
    ``warmup_batches`` untimed ones (worker start-up, first decode). The pipeline is stopped afterwards, so
    that no other measurement shares the cores with its prefetching."""
    dataset = build()
    iterator = dataset.create_tuple_iterator(num_epochs=-1, output_numpy=True)

    def fetch(count):
        while count:
            try:
                next(iterator)
                count -= 1
            except StopIteration:  # the end of an epoch; the next call starts the next one
                continue

    try:
        fetch(warmup_batches)
        started, cpu = time.perf_counter(), cpu_seconds()
        fetch(batches)
        return time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        iterator.stop()


def stage_profile(root, image_size, batch_size, repeats, record, images=32):
    """One thread, the first ``images`` training files: the pipeline's stages one at a time, ms per image."""
    import io
    import multiprocessing

    import numpy as np
    from PIL import Image

    from src.data import pil_kernels
    from src.data.aug import resolve_aug
    from src.data.layout import scan_split, split_folder
    from src.data.mixup import MixupCutmix
    from src.data.transforms import (BatchFinisher, EvalTransform, RandomErasing, TrainTransform,
                                     random_resized_crop_box)

    aug = resolve_aug(None)
    table = scan_split(split_folder(root, "train"))
    paths = [table.path(i) for i in range(min(images, len(table)))]
    train, evaluate = TrainTransform(image_size, aug), EvalTransform(image_size, aug)
    rngs = lambda: [np.random.default_rng([0, i]) for i in range(len(paths))]
    blobs = [open(p, "rb").read() for p in paths]
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
    cropped = [train.geometry(Image.open(io.BytesIO(b)), r) for b, r in zip(blobs, rngs())]
    arrays = [train.augment(img, r) for img, r in zip(cropped, rngs())]
    keys = list(range(batch_size))
    batch = [arrays[i % len(arrays)] for i in keys]
    normalise = BatchFinisher(aug)
    erasing = RandomErasing(1.0, 0)
    mixing = MixupCutmix(DATA_CLASSES, seed=0)
    normalised = normalise(batch, [0] * batch_size, keys)[0]
    parent, child = multiprocessing.Pipe()

    def per_image(fn, items):
        return lambda: [fn(*item) for item in items]

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def in_pillow(fn):  # fn with the Pillow-exact kernels off (src/data/pil_kernels.py): Pillow, as before
        def run(*args):
            library, pil_kernels._library[:] = pil_kernels._library[:], [None]
            try:
                return fn(*args)
            finally:
                pil_kernels._library[:] = library
        return run

    def through_pipe(array):
        parent.send(array)
        return child.recv()

    stages = {
        "read (file bytes)": per_image(read, [(p,) for p in paths]),
        "decode (full size, as before)": per_image(lambda b: Image.open(io.BytesIO(b)).convert("RGB"),
                                                   [(b,) for b in blobs]),
        "crop+resize from decoded (as before)": per_image(
            lambda img, r: img.resize((image_size,) * 2, train.resample,
                                      box=random_resized_crop_box(img.width, img.height, train.scale, r)),
            list(zip(decoded, rngs()))),
        "decode+crop+resize as run (draft, one resampling)": per_image(
            lambda b, r: train.geometry(Image.open(io.BytesIO(b)), r), list(zip(blobs, rngs()))),
        "decode+crop+resize, the resize in Pillow (as before)": per_image(
            in_pillow(lambda b, r: train.geometry(Image.open(io.BytesIO(b)), r)), list(zip(blobs, rngs()))),
        "flip + RandAugment": per_image(train.augment, list(zip(cropped, rngs()))),
        "flip + RandAugment, Shear/Translate/Rotate in Pillow (as before)": per_image(
            in_pillow(train.augment), list(zip(cropped, rngs()))),
        "eval: decode+resize+centre crop as run": per_image(lambda b: evaluate.geometry(Image.open(io.BytesIO(b))),
                                                            [(b,) for b in blobs]),
        "eval: resize then crop (as before)": per_image(
            lambda img: img.resize((int(image_size / aug["crop_pct"]),) * 2, evaluate.resample), [(d,) for d in decoded]),
        "normalise + HWC->CHW (per batch)": lambda: normalise(batch, [0] * batch_size, keys),
        "random erasing (p=1, per batch)": lambda: [erasing(x, k) for x, k in zip(normalised.copy(), keys)],
        "mixup/cutmix (per batch, in place)": lambda: mixing.mix(normalised.copy(), [0] * batch_size, 0),
        "process hand-over (pipe, not used)": per_image(through_pipe, [(a,) for a in arrays]),
    }
    batch_stages = {"normalise + HWC->CHW (per batch)", "random erasing (p=1, per batch)",
                    "mixup/cutmix (per batch, in place)"}
    samples = round_robin(stages, 1, repeats, "data profile")
    for stage, times in samples.items():
        count = batch_size if stage in batch_stages else len(paths)
        record(Row("data", "profile", stage, "", "", times, count,
                   note=f"{statistics.median(times) / count * 1e3:.2f} ms/image, one thread"))


def data_rows(args, record):
    import importlib.util

    if args.data_path:
        root = args.data_path
        if not os.path.isdir(root):
            raise BenchmarkError(f"--data_path {root} is not a directory (expected an ImageFolder root)")
    else:
        root = prepare_imagenet_like()
    from src.dataset import get_num_classes

    num_classes = get_num_classes(root)
    have_mindcv = importlib.util.find_spec("mindcv") is not None
    if not have_mindcv:
        progress("data: mindcv not installed (pip install --no-deps mindcv==0.3.0 tqdm): ours alone")
    workers = sorted({1, 2, *([args.data_workers] if args.data_workers else [])})
    batch = args.data_batch_size
    for train in (True, False):
        pipeline = "train pipeline" if train else "eval pipeline"
        builders = {}
        for n in workers:
            for variant, loader in (("mindspore", _ours_loader), ("mindcv", _mindcv_loader)):
                if variant == "mindspore" or have_mindcv:
                    builders[(variant, n)] = lambda n=n, loader=loader: loader(root, train, batch, args.image_size, n,
                                                                               num_classes)
        samples = {key: [] for key in builders}
        cpu = {key: [] for key in builders}
        images = args.data_batches * batch
        for r in range(args.repeats):  # round-robin: each repeat times every variant once, in turn
            for key, build in builders.items():
                try:
                    wall, used = time_pipeline(build, args.data_batches)
                    samples[key].append(wall)
                    cpu[key].append(used)
                except Exception as err:  # e.g. mindcv failing on this MindSpore; the others still count
                    traceback.print_exc()
                    samples[key] = err
                    builders[key] = None
            builders = {k: v for k, v in builders.items() if v is not None}
            progress(f"data {pipeline} repeat {r + 1}/{args.repeats}: " + ", ".join(
                f"{v} x{n} {images / s[-1]:.0f} img/s" for (v, n), s in samples.items()
                if isinstance(s, list) and s))
        for (variant, n), times in samples.items():
            if isinstance(times, Exception):
                record(Row("data", variant, f"{pipeline} workers={n}", note=failure(times)))
                continue
            cpu_ms = statistics.median(cpu[(variant, n)]) / images * 1e3
            note = f"{statistics.median(times) / images * n * 1e3:.2f} ms/image/worker, CPU {cpu_ms:.2f} ms/image"
            other = samples.get(("mindcv", n))
            if variant == "mindspore" and isinstance(other, list):
                note += f"; {statistics.median(other) / statistics.median(times):.2f}x mindcv"
                ours_cpu, other_cpu = statistics.median(cpu[(variant, n)]), statistics.median(cpu[("mindcv", n)])
                if ours_cpu > 0 and other_cpu > 0:  # CPU clocks tick in 10 ms: a tiny run may read 0
                    note += f", CPU {other_cpu / ours_cpu:.2f}x"
            record(Row("data", variant, f"{pipeline} workers={n}", "", "", times, images, note=note))
    stage_profile(root, args.image_size, batch, args.repeats, record)


# ---------------------------------------------------------------- output

def format_table(rows):
    header = ("section", "what", "mode", "prec", "variant", "median", "spread", "throughput", "x torch", "x plain",
              "x copy", "note")
    lines = []
    for r in rows:
        if r.samples_s:
            median = r.median_s
            median_text = f"{median * 1e6:.0f} us" if median < 0.01 else f"{median * 1e3:.1f} ms"
            cells = (f"{median_text}", f"{r.spread * 100:.0f}%", f"{r.throughput:.2f} {r.throughput_unit}")
        else:
            cells = ("-", "-", "-")
        ratios = tuple(f"{v:.2f}" if v is not None else "" for v in (r.ratio_vs_torch, r.ratio_vs_plain))
        copy = f"{r.ratio_vs_copy:.2f}x time" if r.ratio_vs_copy is not None else ""
        lines.append((r.section, r.what, r.mode, r.precision, r.variant, *cells, *ratios, copy, r.note))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(v).ljust(w) for v, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def write_json(path, machine, args, rows):
    payload = {"machine": machine, "settings": {k: v for k, v in vars(args).items() if k != "json"},
               "results": [r.as_dict() for r in rows]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    try:
        import mindspore as ms

        if args.device_target:
            ms.set_device(args.device_target)
        torch = load_torch(args.torch)
        set_threads(args.threads, torch)
        machine = machine_info(args, torch)
        progress(f"{machine['cpu']}, {machine['cores']} cores, {args.threads} threads, MindSpore "
                 f"{machine['mindspore']} ({machine['device_target']}), torch {machine['torch'] or 'absent'}, "
                 f"load average {machine['load_average_start']}")
        rows = []

        def record(row):
            rows.append(row)
            set_ratios(rows)
            if args.json:
                write_json(args.json, machine, args, rows)

        interrupted = False
        for section in args.sections:
            try:
                if section in ("eval", "train"):
                    network_rows(section, args, torch, record)
                elif section == "lif":
                    lif_rows(args, torch, record)
                elif section == "layers":
                    layer_rows(args, torch, record)
                else:
                    data_rows(args, record)
            except KeyboardInterrupt:
                interrupted = True
                progress("interrupted: the figures so far follow")
                break
            except BenchmarkError:
                raise
            except Exception as err:  # a broken section must not cost the others
                traceback.print_exc()
                record(Row(section, "", "", note=failure(err)))
        machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        if args.json:
            write_json(args.json, machine, args, rows)
        print(format_table(rows))
        print(f"\nload average: {machine['load_average_start']} at start, {machine['load_average_end']} at end; "
              f"{args.threads} threads; median of {args.repeats} after {args.warmup} warm-up")
        if args.json:
            print(f"JSON: {os.path.abspath(args.json)}")
        failed = [r for r in rows if r.note.startswith("failed")]
        return 130 if interrupted else (1 if failed else 0)
    except BenchmarkError as err:
        print(f"benchmark: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
