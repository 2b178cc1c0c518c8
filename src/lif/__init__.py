"""The LIF scan of SNN-MLP: one semantics, several back-ends.

``LIFScan(window, axis, backend)`` is the Cell the network uses. Back-ends:

* ``"custom"``: the aot kernel of the device target (CPU: ``kernels/lif_cpu.cc`` built with g++ on first use;
  GPU: ``kernels/lif_cuda.cu`` built with nvcc or prebuilt by ``scripts/build_cuda_kernels.sh``; Ascend: the
  AscendC operators installed where MindSpore finds them: ``ASCEND_CUSTOM_OPP_PATH`` or a vendor of
  ``$ASCEND_OPP_PATH/vendors/config.ini``), or a clear error when it cannot be had. An
  input type the kernel lacks (bfloat16 on Ascend) takes the primitive scan;
* ``"primitive"``: plain MindSpore operators (``primitive.py``), what MINDIR/ONNX export uses;
* ``"auto"``: the kernel when it can be had, else the primitive.

A Cell built inside ``src.kernels.export_mode.exporting()`` takes the primitive scan whatever ``backend`` says
(an exported file must not call a library of this machine).

The choice is logged once per process (logger ``snn_mlp``). ``reference.py`` holds the loop-by-loop numpy
reference the back-ends are tested against.
"""
import logging

import mindspore as ms
from mindspore import nn, ops
from mindspore import dtype as mstype

from .custom import KERNEL_DTYPES, ascend_op_missing_message, find_ascend_op, make_custom_ops
from ..kernels.build import KernelBuildError
from ..kernels.custom_op import log_once
from ..kernels.export_mode import is_exporting
from .primitive import lif_scan_primitive

__all__ = ["LIFScan", "BACKENDS", "KernelBuildError"]

BACKENDS = ("auto", "custom", "primitive")
_FLOAT_TYPES = (mstype.float32, mstype.float16, mstype.bfloat16)

def _device_target():
    return ms.get_context("device_target")


def _custom_op(target):
    """The forward kernel op for ``target`` (its bprop attached); KernelBuildError explains why there is none."""
    if target == "Ascend" and find_ascend_op() is None:
        raise KernelBuildError(ascend_op_missing_message())
    return make_custom_ops(target)[0]


class LIFScan(nn.Cell):
    """Leaky integrate-and-fire scan along H (``axis=2``) or W (``axis=3``) of an NCHW tensor.

    Per window of ``window`` positions the membrane ``o`` starts at 0 and
    ``u = tau*o + x; fire = u > vth; out = fire ? u : vth; o = fire ? 0 : u``; positions after the last whole
    window pass through. ``window=-1`` is the identity, ``window=0`` one window over the whole axis, a window
    longer than the axis the identity. Gradients treat ``fire`` as a constant.

    ``construct(x, tau, vth)``: ``x`` float32/float16/bfloat16 of shape (N, C, H, W); ``tau`` and ``vth``
    1-element tensors (usually Parameters). Returns a tensor like ``x``.
    """

    def __init__(self, window, axis, backend="auto"):
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < -1:
            raise ValueError(f"LIFScan window must be an int >= -1 (-1 off, 0 whole axis), got {window!r}")
        if axis not in (2, 3) or isinstance(axis, bool):
            raise ValueError(f"LIFScan axis must be 2 (along H) or 3 (along W), got {axis!r}")
        if backend not in BACKENDS:
            raise ValueError(f"LIFScan backend must be one of {BACKENDS}, got {backend!r}")
        self.window = window
        self.axis = axis
        self.kernel = None
        self.kernel_dtypes = ()  # storage types of x the kernel takes; others use the primitive scan
        self.backend = "identity" if window == -1 else self._choose(backend)

    def _choose(self, backend):
        if backend == "primitive":
            log_once(logging.INFO, "LIF scan back-end: MindSpore primitives (requested)")
            return "primitive"
        if is_exporting():
            log_once(logging.INFO, "LIF scan back-end: MindSpore primitives (export)")
            return "primitive"
        target = _device_target()
        try:
            self.kernel = _custom_op(target)
        except KernelBuildError as err:
            if backend == "custom":
                raise
            log_once(logging.WARNING, f"LIF scan back-end: MindSpore primitives, no {target} kernel ({err})")
            return "primitive"
        self.kernel_dtypes = tuple(getattr(mstype, name) for name in KERNEL_DTYPES[target])
        log_once(logging.INFO, f"LIF scan back-end: {target} aot kernel")
        return "custom"

    def extend_repr(self):
        return f"window={self.window}, axis={self.axis}, backend={self.backend}"

    def construct(self, x, tau, vth):
        if x.ndim != 4:
            raise ValueError(f"LIFScan expects a 4-D NCHW tensor, got {x.ndim}-D")
        if x.dtype not in _FLOAT_TYPES:
            raise TypeError(f"LIFScan expects float32, float16 or bfloat16 input, got {x.dtype}")
        if tau.size != 1 or vth.size != 1:
            raise ValueError(f"LIFScan tau and vth must hold one element each, got sizes {tau.size} and {vth.size}")
        if self.window == -1:
            return x
        if self.kernel is None or x.dtype not in self.kernel_dtypes:
            return lif_scan_primitive(x, tau, vth, self.window, self.axis)
        # The kernels take float32 scalars whatever the precision of x (mixed precision casts parameters).
        if tau.dtype != mstype.float32:
            tau = ops.cast(tau, mstype.float32)
        if vth.dtype != mstype.float32:
            vth = ops.cast(vth, mstype.float32)
        # window and axis are call inputs: MindSpore passes them to aclnn as the int64_t arguments that follow
        # the tensors (aclnnLifScanCustomGetWorkspaceSize(x, tau, vth, window, axis, out, ...)), and to the
        # CPU/GPU kernels as attributes.
        return self.kernel(x, tau, vth, self.window, self.axis)
