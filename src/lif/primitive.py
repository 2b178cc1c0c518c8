"""The LIF scan from plain MindSpore primitives: the fallback where no kernel exists, and what export uses.

The scan axis is cut into whole windows with a reshape, the ``k`` positions of a window are taken apart with
``Split``, and ``k`` elementwise steps run the recurrence on all windows at once. No transposes, no strided
or zero-length slices (their gradients fail on MindSpore 2.10 CPU), and only operators the MINDIR and ONNX
exporters take. Autodiff of these steps yields exactly the gradients of the original kernels, because the
fire mask comes from ``Greater``, which has no gradient:

* ``out = u*fire + vth*(1 - fire)``: d out/d u = fire, d out/d vth = 1 - fire;
* ``o' = u*(1 - fire)``: the membrane carries ``tau*(1 - fire)`` back to the previous position.

The blend by multiplication adds no rounding of its own for finite values (``u*1 + vth*0 == u``): it is the
``fire ? u : vth`` of the kernels.

The steps are unrolled into the graph from the size of the scan axis. With dynamic shapes
(``set_inputs`` with ``None`` dims) MindSpore traces the graph again whenever that size changes.
"""
from mindspore import ops
from mindspore import dtype as mstype

__all__ = ["lif_scan_primitive"]


def _scan_windows(steps, tau, vth):
    """Run the recurrence over the list of per-position tensors ``steps``; returns the list of outputs."""
    outs = []
    membrane = None
    last = len(steps) - 1
    for j, x_j in enumerate(steps):
        u = x_j if membrane is None else tau * membrane + x_j
        fire = ops.cast(u > vth, u.dtype)
        rest = 1.0 - fire
        outs.append(u * fire + vth * rest)
        if j < last:
            membrane = u * rest
    return outs


def _scan_whole_windows(x, tau, vth, k, axis):
    """Scan ``x`` whose size along ``axis`` is a multiple of ``k``."""
    shape = ops.shape(x)
    # Rows of windows: (N*C*nw, k, W) along H, (N*C*H*nw, k) along W; both are free reshapes.
    windows = ops.reshape(x, (-1, k, shape[3]) if axis == 2 else (-1, k))
    steps = ops.split(windows, 1, axis=1)
    return ops.reshape(ops.concat(_scan_windows(steps, tau, vth), axis=1), shape)


def lif_scan_primitive(x, tau, vth, window, axis):
    """LIF scan of the 4-D ``x`` along ``axis`` (2 = H, 3 = W); ``tau``/``vth`` are 1-element tensors.

    float16/bfloat16 inputs are computed in float32 and cast back, like the kernels do.
    """
    length = x.shape[axis]
    k = length if window == 0 else window
    if window == -1 or k > length:
        return x
    in_dtype = x.dtype
    compute = x if in_dtype == mstype.float32 else ops.cast(x, mstype.float32)
    tau = ops.cast(tau, mstype.float32)
    vth = ops.cast(vth, mstype.float32)

    whole = (length // k) * k
    if whole == length:
        out = _scan_whole_windows(compute, tau, vth, k, axis)
    else:
        head, tail = ops.split(compute, (whole, length - whole), axis)
        out = ops.concat((_scan_whole_windows(head, tau, vth, k, axis), tail), axis)
    return out if in_dtype == mstype.float32 else ops.cast(out, in_dtype)
