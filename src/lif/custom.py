"""The LIF scan as ``ops.Custom(func_type="aot")`` operators, and where the AscendC operators are installed.

Kernels: ``kernels/lif_cpu.cc`` (g++, CPU) and ``kernels/lif_cuda.cu`` (nvcc, GPU), built and cached by
``src/kernels/build.py`` (recipes ``lif_cpu`` and ``lif_cuda``). The Ascend kernel is an AscendC operator
installed separately (``scripts/build_ascend_kernels.sh``) and called by its name.
"""
import os
import re
from pathlib import Path

from ..kernels.build import LIF_CPU_RECIPE, LIF_CUDA_RECIPE, KernelBuildError, build_library
from ..kernels.custom_op import reg_info

__all__ = ["ASCEND_OP_NAME", "KERNEL_DTYPES", "find_ascend_op", "ascend_opp_search_dirs", "ascend_op_missing_message",
           "make_custom_ops"]

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
    # No value: window and axis are call inputs after the tensors (the aclnn signature's order). MindSpore
    # hands them to the CPU/GPU kernels as attributes and to aclnn as int64_t arguments.
    formats = None
    if target == "Ascend":
        # The AscendC operators are built for these combinations only: x-like tensors in float16 or float32,
        # tau/vth and the partial sums always float32.
        formats = [["F32_Default" if n in SCALAR_NAMES else x_type for n in inputs + outputs]
                   for x_type in ("F16_Default", "F32_Default")]
    return reg_info(op_name, target, inputs, outputs, int_attrs=ATTR_NAMES, dtype_formats=formats)


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
        library = build_library(LIF_CPU_RECIPE if target == "CPU" else LIF_CUDA_RECIPE)
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
