"""The export switch: Cells built inside ``with exporting():`` hold only MindSpore's own operators.

A MINDIR/ONNX/AIR file must not reference a kernel library of the exporting machine, so both clients of the aot
kernels consult this one switch when a Cell is built: ``LIFScan`` takes the primitive back-end and the fast_ops
factories return MindSpore's Cells. No MindSpore needed.
"""
import contextlib

__all__ = ["exporting", "is_exporting"]

_depth = 0


@contextlib.contextmanager
def exporting():
    """Cells built inside the block (nested blocks allowed) use no aot kernel, whatever the device and settings."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def is_exporting():
    """Whether a Cell built now is built for export (inside ``exporting()``)."""
    return _depth > 0
