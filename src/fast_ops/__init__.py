"""Fused CPU kernels for the layers MindSpore's CPU back-end runs slowly, as drop-in Cells (and a sum of squares
for gradient norms).

On float32 NCHW tensors MindSpore 2.10 CPU takes several times PyTorch's time for GroupNorm, exact GELU, the
depthwise 3x3 convolution and, on some CPUs and shapes, Conv2D (docs/PERFORMANCE.md has the figures). These
Cells subclass the MindSpore layers they replace, so their parameters (names, shapes, initialisers) are those
layers' own, and run the aot kernels of ``kernels/fast_ops_cpu.cc`` (forward and backward) when

* the device target is CPU (GPU and Ascend keep MindSpore's operators),
* the environment variable ``SNNMLP_FAST_OPS`` is not ``0`` (read when a Cell is built),
* the Cell is not built inside ``src.kernels.export_mode.exporting()`` (a MINDIR or ONNX file must hold only
  MindSpore's operators, never a call into a library of this machine) nor ``with disabled():`` (these Cells
  only: A/B timings), and
* the library can be built (else a warning, once, and MindSpore's operators); the convolutions also need the
  oneDNN library of MindSpore's wheel (else MindSpore's Conv2D, the other kernels unaffected).

Inputs other than float32 (e.g. float16 under mixed precision) take MindSpore's operators too. The choice is
logged once per process (logger ``snn_mlp``).
"""
import contextlib
import functools
import logging
import os

import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from .custom import make_cpu_kernels
from ..kernels.build import KernelBuildError
from ..kernels.custom_op import log_once
from ..kernels.export_mode import is_exporting

__all__ = ["ENV_SWITCH", "FastGroupNorm", "FastGELU", "FastDepthwiseConv3x3", "FastConv1x1", "FastPatchConv",
           "SquaredSum", "fast_ops_status", "cpu_kernels", "disabled", "group_norm", "gelu", "depthwise_conv3x3",
           "conv1x1", "patch_conv"]

ENV_SWITCH = "SNNMLP_FAST_OPS"
_OFF_VALUES = ("0", "false", "off", "no")
_ON_VALUES = ("", "1", "true", "on", "yes")

_disabled_depth = 0


@contextlib.contextmanager
def disabled():
    """Cells built inside the block use MindSpore's operators, whatever the device and the switch (the LIF scan
    keeps its back-end: for timing these Cells against MindSpore's; export uses ``exporting()``)."""
    global _disabled_depth
    _disabled_depth += 1
    try:
        yield
    finally:
        _disabled_depth -= 1


@functools.lru_cache(maxsize=None)
def _build_kernels():
    """The kernels, built once per process; None (with the reason logged) when they cannot be had."""
    try:
        return make_cpu_kernels()
    except KernelBuildError as err:
        log_once(logging.WARNING, f"fast CPU ops unavailable, using MindSpore's operators: {err}")
        return None


def fast_ops_status():
    """``(on, reason)``: whether Cells built now use the fused kernels, and why (for logs and the benchmark)."""
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in _OFF_VALUES:
        return False, f"{ENV_SWITCH}={switch}"
    if switch not in _ON_VALUES:
        raise ValueError(f"{ENV_SWITCH} must be 0 (off) or 1 (on where possible), got {switch!r}")
    if is_exporting():
        return False, "exporting() block (export)"
    if _disabled_depth:
        return False, "disabled() block"
    target = ms.get_context("device_target")
    if target != "CPU":
        return False, f"device target {target} (the fused kernels are CPU-only)"
    if _build_kernels() is None:
        return False, "the kernel library could not be built (see the warning above)"
    return True, "CPU aot kernels"


def cpu_kernels():
    """The ``CpuKernels`` Cells built now should use, or None (see ``fast_ops_status``)."""
    on, reason = fast_ops_status()
    log_once(logging.INFO, f"fast CPU ops: {'on' if on else 'off'} ({reason})")
    return _build_kernels() if on else None


class FastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm(1, num_channels, eps)`` (parameters ``gamma``, ``beta``), fused on CPU for float32 NCHW."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__(1, num_channels, eps=eps)
        kernels = cpu_kernels()
        self.use_kernel = kernels is not None
        self.kernel = kernels.group_norm if kernels else None
        self.eps_tensor = Tensor([eps], mstype.float32)

    def construct(self, x):
        if self.use_kernel and x.ndim == 4 and x.dtype == mstype.float32 and self.gamma.dtype == mstype.float32:
            y, _, _ = self.kernel(x, self.gamma, self.beta, self.eps_tensor)
            return y
        return ops.group_norm(x, 1, self.gamma.to(x.dtype), self.beta.to(x.dtype), self.eps)


class FastGELU(nn.GELU):
    """The exact (erf) GELU, ``nn.GELU(approximate=False)``, fused on CPU for float32."""

    def __init__(self):
        super().__init__(approximate=False)
        kernels = cpu_kernels()
        self.use_kernel = kernels is not None
        self.kernel = kernels.gelu if kernels else None

    def construct(self, x):
        if self.use_kernel and x.dtype == mstype.float32:
            return self.kernel(x)
        return ops.gelu(x, approximate="none")


class _KernelConv(nn.Conv2d):
    """An ``nn.Conv2d`` (its own parameters, names and initialisers) whose forward is the kernel ``kernel_name`` of
    ``CpuKernels``, ``kernel(x, weight, bias)``, where that kernel runs and takes the input (float32, NCHW)."""

    def __init__(self, kernel_name, in_channels, out_channels, kernel_size, has_bias, **conv):
        super().__init__(in_channels, out_channels, kernel_size, has_bias=has_bias, **conv)
        kernels = cpu_kernels()
        self.kernel = getattr(kernels, kernel_name) if kernels else None
        self.use_kernel = self.kernel is not None
        # Without a bias the kernel adds zeros (their gradient is dropped).
        self.zero_bias = None if has_bias else Tensor(ops.zeros((out_channels,), mstype.float32))

    def takes(self, x):
        return self.use_kernel and x.ndim == 4 and x.dtype == mstype.float32 and self.weight.dtype == mstype.float32

    def run_kernel(self, x, weight):
        return self.kernel(x, weight, self.bias if self.has_bias else self.zero_bias)


class FastDepthwiseConv3x3(_KernelConv):
    """Depthwise 3x3 convolution, stride 1, zero padding 1: ``nn.Conv2d(channels, channels, 3, pad_mode="pad",
    padding=1, group=channels, has_bias=has_bias)`` (parameters ``weight`` (C, 1, 3, 3), ``bias`` (C,)), fused on
    CPU for float32."""

    def __init__(self, channels, has_bias=True):
        super().__init__("depthwise_conv3x3", channels, channels, 3, has_bias, pad_mode="pad", padding=1,
                         group=channels)

    def construct(self, x):
        if self.takes(x):
            return self.run_kernel(x, self.weight)
        return super().construct(x)


class _GemmConv(_KernelConv):
    """``nn.Conv2d(in_channels, out_channels, kernel, stride=kernel, pad_mode="valid", has_bias=has_bias)`` whose
    forward is the GEMM kernel of 1x1 convolutions (``CpuKernels.conv1x1``) where that kernel runs."""

    def __init__(self, in_channels, out_channels, kernel, has_bias):
        super().__init__("conv1x1", in_channels, out_channels, kernel, has_bias, stride=kernel, pad_mode="valid")


class FastConv1x1(_GemmConv):
    """1x1 convolution, ``nn.Conv2d(in_channels, out_channels, 1, pad_mode="valid", has_bias=has_bias)``
    (parameters ``weight`` (C_out, C_in, 1, 1), ``bias`` (C_out,)), on CPU for float32 as one GEMM per sample
    through oneDNN's sgemm (the library of MindSpore's own wheel) on the tensors as they lie, with the bias added
    while each block is in cache: on SNN-MLP's first stage (96 -> 96 channels, 8 x 56 x 56) forward 2.0 against
    3.1 ms, forward + backward 7.4 against 28 ms for MindSpore's Conv2D + BiasAdd (docs/PERFORMANCE.md)."""

    def __init__(self, in_channels, out_channels, has_bias=True):
        super().__init__(in_channels, out_channels, 1, has_bias)

    def construct(self, x):
        if self.takes(x):
            return self.run_kernel(x, self.weight)
        return super().construct(x)


class FastPatchConv(_GemmConv):
    """Non-overlapping patch convolution (kernel = stride = ``patch``, no padding): ``nn.Conv2d(in_channels,
    out_channels, patch, stride=patch, pad_mode="valid", has_bias=has_bias)``. On CPU for float32 inputs whose
    sides divide by ``patch``, the patches are laid out as channels (one transpose) and go through the GEMM of
    ``FastConv1x1``: MindSpore 2.10's CPU Conv2D took 0.44-0.93 s on SNN-MLP's (8, 3, 224, 224) patch embedding
    on an AVX-512 CPU, more than the rest of the network; the GEMM 4.4 ms."""

    def __init__(self, in_channels, out_channels, patch, has_bias=True):
        super().__init__(in_channels, out_channels, patch, has_bias)
        self.patch = patch

    def construct(self, x):
        p = self.patch
        if self.takes(x) and x.shape[2] % p == 0 and x.shape[3] % p == 0:
            n, c, h, w = x.shape
            # (N, C, H/p, p, W/p, p) -> (N, C, p, p, H/p, W/p): channel c*p*p + i*p + j, the weight's flat order
            patches = x.reshape(n, c, h // p, p, w // p, p).transpose(0, 1, 3, 5, 2, 4).reshape(
                n, c * p * p, h // p, w // p)
            return self.run_kernel(patches, self.weight.reshape(self.out_channels, c * p * p, 1, 1))
        return super().construct(x)


class SquaredSum(nn.Cell):
    """``construct(x)``: the sum of squares of ``x`` as a float32 scalar, ``ops.reduce_sum(x * x)`` in float32
    (gradient norms); one fused pass on CPU for float32 (MindSpore's full ReduceSum is slow there)."""

    def __init__(self):
        super().__init__()
        kernels = cpu_kernels()
        self.use_kernel = kernels is not None
        self.kernel = kernels.squared_sum if kernels else None

    def construct(self, x):
        if self.use_kernel and x.dtype == mstype.float32:
            return self.kernel(x)
        x = ops.cast(x, mstype.float32)
        return ops.reduce_sum(x * x)


# What the network builds: the fused Cells where their kernels run, else MindSpore's own Cells, which every
# MindSpore tool knows (amp O1's network rewrite fails on the subclasses above: "NameError: Conv2dOpt").
def group_norm(num_channels, eps=1e-5):
    return FastGroupNorm(num_channels, eps) if cpu_kernels() else nn.GroupNorm(1, num_channels, eps=eps)


def gelu():
    return FastGELU() if cpu_kernels() else nn.GELU(approximate=False)


def _gemm_convolutions():
    kernels = cpu_kernels()
    return kernels is not None and kernels.conv1x1 is not None


def conv1x1(in_channels, out_channels, has_bias=True):
    if _gemm_convolutions():
        return FastConv1x1(in_channels, out_channels, has_bias)
    return nn.Conv2d(in_channels, out_channels, 1, pad_mode="valid", has_bias=has_bias)


def patch_conv(in_channels, out_channels, patch, has_bias=True):
    if _gemm_convolutions():
        return FastPatchConv(in_channels, out_channels, patch, has_bias)
    return nn.Conv2d(in_channels, out_channels, patch, stride=patch, pad_mode="valid", has_bias=has_bias)


def depthwise_conv3x3(channels, has_bias=True):
    if cpu_kernels():
        return FastDepthwiseConv3x3(channels, has_bias)
    return nn.Conv2d(channels, channels, 3, pad_mode="pad", padding=1, group=channels, has_bias=has_bias)
