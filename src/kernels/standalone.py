"""A LIF kernel library called through ctypes at its ``...Standalone`` entry points; no MindSpore needed."""
import ctypes

__all__ = ["StandaloneKernel"]


class StandaloneKernel:
    """A kernel library called through ctypes at its ``...Standalone`` entry points, outside MindSpore.

    Tensors are given as ``(data_pointer, shape, dtype_name)``; the CUDA library also takes the stream (an
    int handle) and, after the backward's outputs, a workspace of ``workspace_bytes`` (see lif_host.h).
    Used for kernel-only timings (no framework cost per call) and by ``scripts/check_cuda_kernels.py``.
    """

    _SIGNATURE = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int),
                  ctypes.POINTER(ctypes.POINTER(ctypes.c_int64)), ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p,
                  ctypes.c_int64, ctypes.c_int64]

    def __init__(self, path):
        self.lib = ctypes.CDLL(str(path))
        for name in ("LifScanForwardStandalone", "LifScanBackwardStandalone"):
            getattr(self.lib, name).argtypes = self._SIGNATURE
            getattr(self.lib, name).restype = ctypes.c_int
        self.lib.LifScanWorkspaceBytes.restype = ctypes.c_int64
        self.workspace_bytes = self.lib.LifScanWorkspaceBytes()

    def _call(self, function, tensors, window, axis, stream):
        count = len(tensors)
        shapes = [(ctypes.c_int64 * max(1, len(shape)))(*shape) for _, shape, _ in tensors]
        status = function(count, (ctypes.c_void_p * count)(*[ptr for ptr, _, _ in tensors]),
                          (ctypes.c_int * count)(*[len(shape) for _, shape, _ in tensors]),
                          (ctypes.POINTER(ctypes.c_int64) * count)(
                              *[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes]),
                          (ctypes.c_char_p * count)(*[dtype.encode() for _, _, dtype in tensors]),
                          ctypes.c_void_p(stream), window, axis)
        if status != 0:
            raise RuntimeError(f"{function.__name__} returned {status} (the reason is on stderr)")

    def forward(self, x, tau, vth, out, window, axis, stream=0):
        self._call(self.lib.LifScanForwardStandalone, [x, tau, vth, out], window, axis, stream)

    def backward(self, x, tau, vth, dout, dx, dtau, dvth, window, axis, stream=0, workspace=None):
        tensors = [x, tau, vth, dout, dx, dtau, dvth] + ([workspace] if workspace is not None else [])
        self._call(self.lib.LifScanBackwardStandalone, tensors, window, axis, stream)
