"""Helpers for wrapping kernel libraries as ``ops.Custom(func_type="aot")`` operators, shared by lif and fast_ops.

MindSpore is imported inside the functions, so the ``src.kernels`` package stays importable without it.
"""
import logging

__all__ = ["ANY_TYPE", "reg_info", "log_once"]

logger = logging.getLogger("snn_mlp")
_logged = set()

# A dtype_format row for kernels that check their own input types: every tensor "None_None" (any type).
ANY_TYPE = "None_None"


def reg_info(op_name, target, inputs, outputs, int_attrs=(), dtype_formats=None):
    """The ``reg_info`` of an aot operator: named inputs and outputs, required int attributes, and the
    ``dtype_formats`` it is built for (rows of ``DataType`` names, one per tensor; default one row of any type)."""
    from mindspore.ops import CustomRegOp, DataType

    reg = CustomRegOp(op_name)
    for index, name in enumerate(inputs):
        reg = reg.input(index, name)
    for index, name in enumerate(outputs):
        reg = reg.output(index, name)
    for row in dtype_formats or [(ANY_TYPE,) * (len(inputs) + len(outputs))]:
        reg = reg.dtype_format(*[getattr(DataType, name) for name in row])
    for attr in int_attrs:
        reg = reg.attr(attr, "required", "int")
    return reg.target(target).get_op_info()


def log_once(level, message):
    """Log ``message`` on the ``snn_mlp`` logger the first time it comes up in this process (back-end choices)."""
    if message not in _logged:
        _logged.add(message)
        logger.log(level, message)
