"""The fused CPU kernels of ``kernels/fast_ops_cpu.cc`` as ``ops.Custom(func_type="aot")`` operators.

The library is built and cached by ``src/kernels/build.py`` (recipe ``fast_ops_cpu``): g++ on first use, a
per-user cache keyed on the source, the flags and the CPU, a file lock against concurrent builds.
Every forward operator carries a ``bprop`` that calls its backward operator, so MindSpore's autodiff (GRAPH and
PYNATIVE) uses the fused backward kernels. Output shapes come from the ``...InferShape`` functions of the
library (dynamic dimensions pass through).
"""
import logging
from dataclasses import dataclass

from mindspore import ops

from ..kernels.build import FAST_OPS_CPU_PLAIN_RECIPE, FAST_OPS_CPU_RECIPE, KernelBuildError, build_library
from ..kernels.custom_op import log_once, reg_info

__all__ = ["CpuKernels", "make_cpu_kernels"]

def _custom(library, symbol, inputs, outputs, bprop=None):
    """One aot operator of the library; every output is float32 like the first input."""
    def out_dtype(*input_dtypes):
        return input_dtypes[0] if len(outputs) == 1 else tuple([input_dtypes[0]] * len(outputs))

    return ops.Custom(f"{library}:{symbol}", out_shape=None, out_dtype=out_dtype, func_type="aot", bprop=bprop,
                      reg_info=reg_info(f"snnmlp_{symbol}", "CPU", inputs, outputs))


@dataclass(frozen=True)
class CpuKernels:
    """The forward operators (each differentiable through its fused backward).

    * ``group_norm(x, gamma, beta, eps) -> (y, mean, rstd)``: GroupNorm with one group over (C, H, W) of an
      NCHW float32 tensor; ``eps`` a (1,) tensor; ``mean``/``rstd`` (N,) are kept for the backward.
    * ``gelu(x) -> y``: exact (erf) GELU of a float32 tensor of any shape.
    * ``depthwise_conv3x3(x, weight, bias) -> y``: depthwise 3x3 convolution, stride 1, zero padding 1,
      ``weight`` (C, 1, 3, 3), ``bias`` (C,).
    * ``squared_sum(x) -> s``: the sum of squares of a float32 tensor of any shape, a float32 scalar (summed in
      double); for gradient norms.
    * ``conv1x1(x, weight, bias) -> y``: 1x1 convolution, ``weight`` (C_out, C_in, 1, 1), ``bias`` (C_out,), as a
      GEMM per sample through the oneDNN of MindSpore's wheel; None where the wheel has no oneDNN.
    """
    group_norm: ops.Custom
    gelu: ops.Custom
    depthwise_conv3x3: ops.Custom
    squared_sum: ops.Custom
    conv1x1: ops.Custom = None


def _build():
    """``(library path, whether it has the GEMM convolutions)``: with MindSpore's oneDNN where that builds, else
    without it (the other kernels do not need it)."""
    if not FAST_OPS_CPU_RECIPE.libraries:
        return build_library(FAST_OPS_CPU_RECIPE), False
    try:
        return build_library(FAST_OPS_CPU_RECIPE), True
    except KernelBuildError as err:
        log_once(logging.WARNING, f"1x1 and patch convolutions keep MindSpore's Conv2D: linking MindSpore's oneDNN "
                                  f"failed: {err}")
        return build_library(FAST_OPS_CPU_PLAIN_RECIPE), False


def make_cpu_kernels():
    """Build (or find in the cache) the library and wrap its kernels; ``KernelBuildError`` when impossible."""
    library, has_gemm = _build()

    norm_backward = _custom(library, "GroupNorm1Backward", ("x", "gamma", "mean", "rstd", "dy"),
                            ("dx", "dgamma", "dbeta"))

    def norm_bprop(x, gamma, beta, eps, out, dout):
        _, mean, rstd = out
        dx, dgamma, dbeta = norm_backward(x, gamma, mean, rstd, dout[0])
        return dx, dgamma, dbeta, ops.zeros_like(eps)

    gelu_backward = _custom(library, "GeluBackward", ("x", "dy"), ("dx",))

    def gelu_bprop(x, out, dout):
        return (gelu_backward(x, dout),)

    conv_backward = _custom(library, "DepthwiseConv3x3Backward", ("x", "weight", "dy"), ("dx", "dweight", "dbias"))

    def conv_bprop(x, weight, bias, out, dout):
        dx, dweight, dbias = conv_backward(x, weight, dout)
        return dx, dweight, dbias

    def squared_sum_bprop(x, out, dout):
        return (2.0 * x * dout,)

    conv1x1 = None
    if has_gemm:
        conv1x1_backward = _custom(library, "Conv1x1Backward", ("x", "weight", "dy"), ("dx", "dweight", "dbias"))

        def conv1x1_bprop(x, weight, bias, out, dout):
            return conv1x1_backward(x, weight, dout)

        conv1x1 = _custom(library, "Conv1x1Forward", ("x", "weight", "bias"), ("y",), conv1x1_bprop)

    return CpuKernels(
        group_norm=_custom(library, "GroupNorm1Forward", ("x", "gamma", "beta", "eps"), ("y", "mean", "rstd"),
                           norm_bprop),
        gelu=_custom(library, "GeluForward", ("x",), ("y",), gelu_bprop),
        depthwise_conv3x3=_custom(library, "DepthwiseConv3x3Forward", ("x", "weight", "bias"), ("y",), conv_bprop),
        squared_sum=_custom(library, "SquaredSum", ("x",), ("sum",), squared_sum_bprop),
        conv1x1=conv1x1,
    )
