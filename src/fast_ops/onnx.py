"""Cells MindSpore 2.10's ONNX exporter lacks, swapped for equivalent compositions of operators it has."""
from mindspore import nn, ops

__all__ = ["OnnxGroupNorm", "OnnxErfGELU", "make_onnx_exportable"]


class OnnxGroupNorm(nn.Cell):
    """nn.GroupNorm from reductions and elementwise ops (MindSpore 2.10 cannot export GroupNorm to ONNX);
    shares the replaced cell's gamma/beta."""

    def __init__(self, norm):
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.gamma, self.beta = norm.gamma, norm.beta

    def construct(self, x):
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.groups, -1)
        centered = grouped - grouped.mean(axis=2, keep_dims=True)
        variance = (centered * centered).mean(axis=2, keep_dims=True)
        normalized = (centered / ops.sqrt(variance + self.eps)).reshape(n, c, h, w)
        return normalized * self.gamma.reshape(1, -1, 1, 1) + self.beta.reshape(1, -1, 1, 1)


class OnnxErfGELU(nn.Cell):
    """Exact (erf) GELU without the Erf operator, which MindSpore 2.10 cannot export to ONNX.

    erf from Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, float32 rounding level); the
    reciprocal is a Div because Reciprocal has no ONNX exporter either.
    """

    def construct(self, x):
        z = x * 0.7071067811865476
        a = ops.abs(z)
        t = ops.div(ops.ones_like(a), 1.0 + 0.3275911 * a)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        erf_abs = 1.0 - poly * ops.exp(-a * a)
        return 0.5 * x * (1.0 + ops.select(z < 0, -erf_abs, erf_abs))


def make_onnx_exportable(net):
    """Swap the cells MindSpore's ONNX exporter lacks for equivalent compositions, in place."""
    names = {id(p): p.name for p in net.get_parameters()}
    for _, cell in list(net.cells_and_names()):
        for attr, child in list(cell.name_cells().items()):
            if isinstance(child, nn.GroupNorm):
                setattr(cell, attr, OnnxGroupNorm(child))
            elif isinstance(child, nn.GELU) and getattr(child, "approximate", None) in (False, "none"):
                setattr(cell, attr, OnnxErfGELU())
    # Re-attaching a Parameter to a new cell renames it to its attribute name; keep the official names.
    for param in net.get_parameters():
        param.name = names[id(param)]
    return net
