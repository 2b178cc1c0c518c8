"""The fused CPU kernels (src/fast_ops): values and gradients against numpy references and MindSpore's own
operators, in PYNATIVE and GRAPH mode, on odd shapes; the switch, the fallbacks, thread-count independence."""
import logging
import math

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from src import fast_ops
from src.fast_ops import FastConv1x1, FastDepthwiseConv3x3, FastGELU, FastGroupNorm, FastPatchConv, SquaredSum

# Odd sizes, 1-wide planes, and one large enough to be split over threads (>= 2 * 2^15 elements).
SHAPES = [(3, 5, 7, 9), (1, 3, 1, 1), (2, 4, 1, 6), (2, 3, 5, 1), (1, 2, 2, 2), (2, 16, 45, 47)]
MODES = ["PYNATIVE", "GRAPH"]


@pytest.fixture(params=MODES)
def mode(request):
    ms.set_context(mode=getattr(ms, f"{request.param}_MODE"))
    yield request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture
def fast_ops_off(monkeypatch):
    monkeypatch.setenv(fast_ops.ENV_SWITCH, "0")


def assert_close(actual, expected, rtol=1e-5):
    """Max error within rtol of the largest reference magnitude (elementwise relative error is meaningless
    where a value crosses zero)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-30)
    error = np.abs(actual - expected).max()
    assert error <= rtol * scale, f"max error {error:.3g} > {rtol:g} * {scale:.3g}"


class WeightedSum(nn.Cell):
    """sum(cell(x) * cotangent): its gradient is the vector-Jacobian product with that cotangent."""

    def __init__(self, cell, cotangent):
        super().__init__()
        self.cell = cell
        self.cotangent = Tensor(cotangent)

    def construct(self, x):
        return (self.cell(x) * self.cotangent).sum()


def run_cell(cell, x, dy):
    """(y, dx, [d parameter...]) of ``cell`` at ``x`` for the cotangent ``dy``, as numpy."""
    params = cell.trainable_params()
    y = cell(Tensor(x)).asnumpy()
    dx, dparams = ms.grad(WeightedSum(cell, dy), grad_position=0, weights=params)(Tensor(x))
    return y, dx.asnumpy(), [g.asnumpy() for g in dparams]


def random_case(shape, seed):
    rng = np.random.default_rng(seed)
    # An offset mean and a spread scale, so the normalisation has work to do.
    x = (rng.standard_normal(shape) * 2.5 + 1.5).astype(np.float32)
    return rng, x, rng.standard_normal(shape).astype(np.float32)


def set_random_parameters(cell, rng):
    for p in cell.trainable_params():
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32)))


# ---------------------------------------------------------------- numpy references (float64)

def group_norm_np(x, gamma, beta, eps):
    x = x.astype(np.float64)
    axes = (1, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma[None, :, None, None] + beta[None, :, None, None]


def group_norm_grad_np(x, gamma, eps, dy):
    """Gradients by the chain rule through mean and variance, one sample at a time."""
    dx = np.empty(x.shape)
    dgamma = np.zeros(x.shape[1])
    dbeta = np.zeros(x.shape[1])
    for n in range(x.shape[0]):
        xs, gs = x[n].astype(np.float64), dy[n].astype(np.float64)
        count = xs.size
        mean = xs.mean()
        var = ((xs - mean) ** 2).mean()
        inv_std = 1.0 / math.sqrt(var + eps)
        xhat = (xs - mean) * inv_std
        dgamma += (gs * xhat).sum(axis=(1, 2))
        dbeta += gs.sum(axis=(1, 2))
        dxhat = gs * gamma[:, None, None]
        dvar = (dxhat * (xs - mean)).sum() * -0.5 * inv_std ** 3
        dmean = -dxhat.sum() * inv_std + dvar * -2.0 * (xs - mean).mean()
        dx[n] = dxhat * inv_std + dvar * 2.0 * (xs - mean) / count + dmean / count
    return dx, dgamma, dbeta


# Phi(x) = erfc(-x / sqrt 2) / 2: erfc keeps the relative precision of the negative tail that 1 + erf loses.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def gelu_np(x):
    x = x.astype(np.float64)
    return 0.5 * x * _erfc(-x / math.sqrt(2.0))


def gelu_grad_np(x, dy):
    x = x.astype(np.float64)
    cdf = 0.5 * _erfc(-x / math.sqrt(2.0))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dy * (cdf + x * pdf)


def depthwise_np(x, weight, bias):
    """Loop over channels and the 9 taps: y[h, w] += k[i, j] * x[h + i - 1, w + j - 1], zero padding."""
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2, w + 2))
    padded[:, :, 1:-1, 1:-1] = x
    y = np.zeros((n, c, h, w))
    for ch in range(c):
        y[:, ch] = bias[ch]
        for i in range(3):
            for j in range(3):
                y[:, ch] += weight[ch, 0, i, j] * padded[:, ch, i:i + h, j:j + w]
    return y


def depthwise_grad_np(x, weight, dy):
    """Scatter form: each output position sends dy * k back to the 9 inputs it read."""
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2, w + 2))
    padded[:, :, 1:-1, 1:-1] = x
    dpadded = np.zeros_like(padded)
    dweight = np.zeros((c, 1, 3, 3))
    for ch in range(c):
        for i in range(3):
            for j in range(3):
                dpadded[:, ch, i:i + h, j:j + w] += weight[ch, 0, i, j] * dy[:, ch]
                dweight[ch, 0, i, j] = (dy[:, ch] * padded[:, ch, i:i + h, j:j + w]).sum()
    return dpadded[:, :, 1:-1, 1:-1], dweight, dy.sum(axis=(0, 2, 3))


def conv1x1_np(x, weight, bias):
    """Loop over the output channels: y[:, o] = sum_i w[o, i] * x[:, i] + b[o]."""
    y = np.empty((x.shape[0], weight.shape[0]) + x.shape[2:])
    for o in range(weight.shape[0]):
        y[:, o] = np.tensordot(x.astype(np.float64), weight[o, :, 0, 0].astype(np.float64), axes=([1], [0])) + bias[o]
    return y


def conv1x1_grad_np(x, weight, dy):
    x, dy, w = x.astype(np.float64), dy.astype(np.float64), weight[:, :, 0, 0].astype(np.float64)
    dx = np.stack([np.tensordot(dy[n], w, axes=([0], [0])).transpose(2, 0, 1) for n in range(x.shape[0])])
    dweight = np.zeros(w.shape)
    for n in range(x.shape[0]):
        dweight += dy[n].reshape(w.shape[0], -1) @ x[n].reshape(w.shape[1], -1).T
    return dx, dweight[:, :, None, None], dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------- kernels vs numpy

@pytest.mark.parametrize("shape", SHAPES)
def test_group_norm_matches_numpy(mode, shape):
    rng, x, dy = random_case(shape, 1)
    cell = FastGroupNorm(shape[1], eps=1e-5)
    assert cell.use_kernel
    set_random_parameters(cell, rng)
    gamma, beta = cell.gamma.asnumpy(), cell.beta.asnumpy()
    y, dx, (dgamma, dbeta) = run_cell(cell, x, dy)
    assert_close(y, group_norm_np(x, gamma, beta, 1e-5))
    ref_dx, ref_dgamma, ref_dbeta = group_norm_grad_np(x, gamma, 1e-5, dy)
    if shape[1] * shape[2] * shape[3] > 1:  # one element per sample: x - mean is 0, dx is rounding noise
        assert_close(dx, ref_dx)
    assert_close(dgamma, ref_dgamma)
    assert_close(dbeta, ref_dbeta)


@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_matches_numpy(mode, shape):
    _, x, dy = random_case(shape, 2)
    y, dx, _ = run_cell(FastGELU(), x, dy)
    assert_close(y, gelu_np(x))
    assert_close(dx, gelu_grad_np(x, dy))


def test_gelu_elementwise_precision_and_special_values():
    # Relative precision along the whole curve, the far negative tail included (where GELU is tiny).
    x = np.concatenate([np.linspace(-12, 12, 20001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    y = FastGELU()(Tensor(x)).asnumpy()
    ref = gelu_np(x)
    assert np.all(np.abs(y - ref) <= 1e-5 * np.abs(ref) + 1e-38)
    dx = ms.grad(FastGELU())(Tensor(x)).asnumpy()
    assert_close(dx, gelu_grad_np(x, np.ones_like(x)))
    special = np.array([np.inf, -np.inf, np.nan, -200.0, 200.0], np.float32)
    out = FastGELU()(Tensor(special)).asnumpy()
    assert out[0] == np.inf and np.isnan(out[1]) and np.isnan(out[2])  # -inf * Phi(-inf) = -inf * 0, as torch
    assert out[3] == 0.0 and out[4] == 200.0


@pytest.mark.parametrize("shape", SHAPES)
def test_depthwise_conv_matches_numpy(mode, shape):
    rng, x, dy = random_case(shape, 3)
    cell = FastDepthwiseConv3x3(shape[1], has_bias=True)
    assert cell.use_kernel
    set_random_parameters(cell, rng)
    weight, bias = cell.weight.asnumpy(), cell.bias.asnumpy()
    y, dx, (dweight, dbias) = run_cell(cell, x, dy)
    assert_close(y, depthwise_np(x, weight, bias))
    ref_dx, ref_dweight, ref_dbias = depthwise_grad_np(x, weight, dy)
    assert_close(dx, ref_dx)
    assert_close(dweight, ref_dweight)
    assert_close(dbias, ref_dbias)


def test_depthwise_conv_without_bias(mode):
    rng, x, dy = random_case((2, 3, 6, 5), 4)
    cell = FastDepthwiseConv3x3(3, has_bias=False)
    set_random_parameters(cell, rng)
    assert [p.name for p in cell.trainable_params()] == ["weight"]
    weight = cell.weight.asnumpy()
    y, dx, (dweight,) = run_cell(cell, x, dy)
    assert_close(y, depthwise_np(x, weight, np.zeros(3)))
    ref_dx, ref_dweight, _ = depthwise_grad_np(x, weight, dy)
    assert_close(dx, ref_dx)
    assert_close(dweight, ref_dweight)


# (N, C_in, C_out, H, W): odd sizes, 1x1 planes, and shapes that span several blocks of rows (C_out > 256, C_in >
# 256 for the input gradient, > 128 for the weight gradient) and of columns (H*W > 1024).
CONV1X1_CASES = [(2, 5, 7, 3, 4), (1, 3, 2, 1, 1), (3, 300, 260, 2, 3), (2, 17, 33, 45, 47)]


@pytest.mark.parametrize("case", CONV1X1_CASES)
@pytest.mark.parametrize("has_bias", [True, False])
def test_conv1x1_matches_numpy(mode, case, has_bias):
    n, cin, cout, h, w = case
    rng, x, _ = random_case((n, cin, h, w), 12)
    dy = rng.standard_normal((n, cout, h, w)).astype(np.float32)
    cell = FastConv1x1(cin, cout, has_bias)
    assert cell.use_kernel
    set_random_parameters(cell, rng)
    weight = cell.weight.asnumpy()
    bias = cell.bias.asnumpy() if has_bias else np.zeros(cout)
    y, dx, dparams = run_cell(cell, x, dy)
    assert_close(y, conv1x1_np(x, weight, bias))
    ref_dx, ref_dweight, ref_dbias = conv1x1_grad_np(x, weight, dy)
    assert_close(dx, ref_dx)
    assert_close(dparams[0], ref_dweight)
    if has_bias:
        assert_close(dparams[1], ref_dbias)


@pytest.mark.parametrize("shape", [(2, 3, 8, 12), (1, 2, 4, 4), (2, 3, 10, 8)])
def test_patch_conv_matches_mindspore_conv(mode, shape):
    # Patches of 4 (sides that divide: the GEMM; 10 rows do not: MindSpore's Conv2D inside the same Cell).
    rng, x, _ = random_case(shape, 13)
    fast = FastPatchConv(shape[1], 5, 4)
    plain = nn.Conv2d(shape[1], 5, 4, stride=4, pad_mode="valid", has_bias=True)
    set_random_parameters(fast, rng)
    for p, q in zip(fast.trainable_params(), plain.trainable_params()):
        assert (p.name, p.shape) == (q.name, q.shape)
        q.set_data(Tensor(p.asnumpy()))
    dy = rng.standard_normal(plain(Tensor(x)).shape).astype(np.float32)
    calls = []
    if mode == "PYNATIVE":  # count the kernel's calls: a fast path never taken would also match
        kernel = fast.kernel
        fast.kernel = lambda *args: calls.append(args[0].shape) or kernel(*args)
    for ours, theirs in zip(run_cell(fast, x, dy), run_cell(plain, x, dy)):
        for a, b in zip(ours if isinstance(ours, list) else [ours], theirs if isinstance(theirs, list) else [theirs]):
            assert_close(a, b, rtol=1e-5)
    if mode == "PYNATIVE":
        divides = shape[2] % 4 == 0 and shape[3] % 4 == 0
        assert calls == ([(shape[0], shape[1] * 16, shape[2] // 4, shape[3] // 4)] * 2 if divides else [])


@pytest.mark.parametrize("shape", [(7,), (3, 5, 7), (1,), (2, 16, 45, 47), (300007,)])
def test_squared_sum_matches_numpy(mode, shape):
    _, x, _ = random_case(shape, 10)
    cell = SquaredSum()
    assert cell.use_kernel
    total = cell(Tensor(x))
    assert total.shape == () and total.dtype == ms.float32
    expected = (x.astype(np.float64) ** 2).sum()
    assert abs(float(total.asnumpy()) - expected) <= 1e-6 * expected  # summed in double: float rounding only
    assert_close(ms.grad(cell)(Tensor(x)).asnumpy(), 2.0 * x.astype(np.float64))


def test_squared_sum_falls_back_off_the_kernel(fast_ops_off):
    _, x, _ = random_case((4, 9), 11)
    cell = SquaredSum()
    assert not cell.use_kernel
    for value in (x, x.astype(np.float16)):
        total = cell(Tensor(value))
        assert total.dtype == ms.float32
        assert abs(float(total.asnumpy()) - (value.astype(np.float64) ** 2).sum()) <= 1e-5 * (x ** 2).sum()


# ---------------------------------------------------------------- kernels vs MindSpore's own operators

def test_cells_agree_with_mindspore_operators(mode, monkeypatch):
    shape = (2, 6, 11, 13)
    rng, x, dy = random_case(shape, 5)
    fast = [FastGroupNorm(6), FastGELU(), FastDepthwiseConv3x3(6)]
    monkeypatch.setenv(fast_ops.ENV_SWITCH, "0")
    plain = [FastGroupNorm(6), FastGELU(), FastDepthwiseConv3x3(6)]
    for fast_cell, plain_cell in zip(fast, plain):
        assert fast_cell.use_kernel and not plain_cell.use_kernel
        set_random_parameters(fast_cell, rng)
        for p, q in zip(fast_cell.trainable_params(), plain_cell.trainable_params()):
            assert p.name == q.name
            q.set_data(Tensor(p.asnumpy()))
        (y, dx, dparams), (ref_y, ref_dx, ref_dparams) = run_cell(fast_cell, x, dy), run_cell(plain_cell, x, dy)
        for ours, theirs in zip([y, dx, *dparams], [ref_y, ref_dx, *ref_dparams]):
            assert_close(ours, theirs, rtol=1e-4)  # MindSpore's float32 kernels round differently


# ---------------------------------------------------------------- layout, switch, fallbacks, threads

def test_parameters_are_those_of_the_mindspore_layers():
    norm = FastGroupNorm(7)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1
    assert [(p.name, p.shape) for p in norm.get_parameters()] == [("gamma", (7,)), ("beta", (7,))]
    conv = FastDepthwiseConv3x3(7)
    assert isinstance(conv, nn.Conv2d) and conv.group == 7
    assert [(p.name, p.shape) for p in conv.get_parameters()] == [("weight", (7, 1, 3, 3)), ("bias", (7,))]
    assert isinstance(FastGELU(), nn.GELU)
    for fast, plain in ((FastConv1x1(7, 5, has_bias=False), nn.Conv2d(7, 5, 1, pad_mode="valid", has_bias=False)),
                        (FastPatchConv(3, 5, 4), nn.Conv2d(3, 5, 4, stride=4, pad_mode="valid", has_bias=True))):
        assert isinstance(fast, nn.Conv2d)
        assert [(p.name, p.shape) for p in fast.get_parameters()] == [(p.name, p.shape) for p in plain.get_parameters()]


def test_switch_off_uses_mindspore_operators(fast_ops_off):
    assert fast_ops.fast_ops_status() == (False, "SNNMLP_FAST_OPS=0")
    for cell in (FastGroupNorm(3), FastGELU(), FastDepthwiseConv3x3(3)):
        assert not cell.use_kernel and cell.kernel is None
    _, x, _ = random_case((2, 3, 4, 5), 6)
    assert_close(FastGELU()(Tensor(x)).asnumpy(), gelu_np(x))


def test_disabled_block_builds_plain_cells():
    with fast_ops.disabled():
        with fast_ops.disabled():
            assert not FastGroupNorm(3).use_kernel
        assert not FastDepthwiseConv3x3(3).use_kernel and not FastGELU().use_kernel
    assert FastGELU().use_kernel


def test_export_switch_builds_mindspore_cells():
    from src.kernels.export_mode import exporting

    with exporting():
        assert fast_ops.fast_ops_status() == (False, "exporting() block (export)")
        assert type(fast_ops.gelu()) is nn.GELU and type(fast_ops.group_norm(3)) is nn.GroupNorm
        assert type(fast_ops.depthwise_conv3x3(3)) is nn.Conv2d
        assert type(fast_ops.conv1x1(3, 4)) is nn.Conv2d and type(fast_ops.patch_conv(3, 4, 4)) is nn.Conv2d
    assert fast_ops.fast_ops_status() == (True, "CPU aot kernels")


def test_bad_switch_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(fast_ops.ENV_SWITCH, "maybe")
    with pytest.raises(ValueError, match="SNNMLP_FAST_OPS must be 0"):
        FastGELU()


def test_other_device_targets_keep_mindspore_operators(monkeypatch):
    monkeypatch.setattr(fast_ops.ms, "get_context", lambda key: "GPU" if key == "device_target" else None)
    on, reason = fast_ops.fast_ops_status()
    assert not on and "GPU" in reason
    assert not FastGroupNorm(3).use_kernel


def test_float16_input_falls_back_to_mindspore_operators():
    _, x, _ = random_case((2, 3, 4, 5), 7)
    half = Tensor(x.astype(np.float16))
    norm = FastGroupNorm(3)
    assert norm.use_kernel
    for cell, reference in ((FastGELU(), ops.gelu(half, approximate="none")),
                            (norm, ops.group_norm(half, 1, norm.gamma.to(ms.float16), norm.beta.to(ms.float16)))):
        out = cell(half)
        assert out.dtype == ms.float16
        np.testing.assert_array_equal(out.asnumpy(), reference.asnumpy())


def test_kernels_refuse_inputs_they_cannot_take(capfd):
    # The Cells never pass these (they fall back), but a direct call must fail loudly, not compute garbage.
    kernels = fast_ops.cpu_kernels()
    with pytest.raises(RuntimeError, match="GeluForward"):
        kernels.gelu(Tensor(np.ones((3,), np.float16))).asnumpy()
    assert "x must be float32" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match="GroupNorm1Forward"):
        kernels.group_norm(Tensor(np.ones((2, 3, 4), np.float32)), Tensor(np.ones(3, np.float32)),
                           Tensor(np.zeros(3, np.float32)), Tensor([1e-5], ms.float32))[0].asnumpy()
    assert "x must be 4-D" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match="Conv1x1Forward"):
        kernels.conv1x1(Tensor(np.ones((2, 3, 4, 4), np.float32)), Tensor(np.ones((5, 4, 1, 1), np.float32)),
                        Tensor(np.zeros(5, np.float32))).asnumpy()
    assert "weight must be (C_out, C_in, 1, 1)" in capfd.readouterr().err


def test_without_onednn_the_convolutions_stay_mindspore_cells(monkeypatch):
    import dataclasses

    kernels = fast_ops.cpu_kernels()
    monkeypatch.setattr(fast_ops, "_build_kernels", lambda: dataclasses.replace(kernels, conv1x1=None))
    assert type(fast_ops.conv1x1(3, 4)) is nn.Conv2d and type(fast_ops.patch_conv(3, 4, 4)) is nn.Conv2d
    assert not FastConv1x1(3, 4).use_kernel


def test_a_failed_onednn_link_keeps_the_other_kernels(monkeypatch, caplog):
    from src.fast_ops import custom
    from src.kernels.build import FAST_OPS_CPU_RECIPE, KernelBuildError

    if not FAST_OPS_CPU_RECIPE.libraries:
        pytest.skip("this MindSpore wheel has no oneDNN: the library is always built without it")
    real = custom.build_library

    def build(recipe):
        if recipe.libraries:
            raise KernelBuildError("undefined reference to `dnnl_sgemm'")
        return real(recipe)

    monkeypatch.setattr(custom, "build_library", build)
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        kernels = custom.make_cpu_kernels()
    assert kernels.conv1x1 is None
    assert any("keep MindSpore's Conv2D" in message and "dnnl_sgemm" in message for message in caplog.messages)
    _, x, _ = random_case((2, 3, 4, 5), 14)
    assert_close(kernels.gelu(Tensor(x)).asnumpy(), gelu_np(x))


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    rng, x, dy = random_case((2, 16, 45, 47), 8)
    # The 1x1 convolution with enough channels for several blocks of rows and columns in all three products.
    wide = rng.standard_normal((2, 300, 45, 47)).astype(np.float32)
    cases = [(FastGroupNorm(16), x, dy), (FastGELU(), x, dy), (FastDepthwiseConv3x3(16), x, dy),
             (FastConv1x1(300, 260), wide, rng.standard_normal((2, 260, 45, 47)).astype(np.float32))]
    for cell, _, _ in cases:
        set_random_parameters(cell, rng)
    results, sums = {}, {}
    for threads in ("1", "3"):
        monkeypatch.setenv("SNNMLP_NUM_THREADS", threads)
        results[threads] = [run_cell(cell, inputs, grads) for cell, inputs, grads in cases]
        sums[threads] = SquaredSum()(Tensor(x)).asnumpy()
    assert sums["1"] == sums["3"]
    for one, three in zip(results["1"], results["3"]):
        np.testing.assert_array_equal(one[0], three[0])
        np.testing.assert_array_equal(one[1], three[1])
        for a, b in zip(one[2], three[2]):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- the network routes through them

def test_network_uses_fused_cells_and_matches_mindspore_operators(monkeypatch):
    from src.snn_mlp import SNNMLP

    kwargs = dict(num_classes=10, embed_dim=16, depths=(1, 1, 1, 1), lif=4, drop_path_rate=0.0)
    fused = SNNMLP(**kwargs)
    monkeypatch.setenv(fast_ops.ENV_SWITCH, "0")
    plain = SNNMLP(**kwargs)
    fused_types = (FastGroupNorm, FastGELU, FastDepthwiseConv3x3, FastConv1x1, FastPatchConv)
    cells = [c for _, c in fused.cells_and_names() if isinstance(c, fused_types)]
    # Per block: 5 GroupNorms, 4 GELUs (one shared Cell in the LIF module, one in the MLP), 1 depthwise conv,
    # 6 1x1 convolutions; one more 1x1 in each of the 3 patch mergings, and the patch embedding.
    assert len([c for c in cells if isinstance(c, FastDepthwiseConv3x3)]) == 4
    assert len([c for c in cells if isinstance(c, FastConv1x1)]) == 4 * 6 + 3
    assert len([c for c in cells if isinstance(c, FastPatchConv)]) == 1
    assert all(c.use_kernel for c in cells)
    assert not any(getattr(c, "use_kernel", False) for _, c in plain.cells_and_names())
    rng = np.random.default_rng(9)
    for p, q in zip(fused.get_parameters(), plain.get_parameters()):
        assert p.name == q.name
        value = Tensor((rng.standard_normal(p.shape) * 0.2 + (1.0 if p.name.endswith("gamma") else 0.0))
                       .astype(np.float32))
        p.set_data(value)
        q.set_data(value)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    dy = rng.standard_normal((2, 10)).astype(np.float32)
    for net in (fused, plain):
        net.set_train(False)
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        ours, theirs = run_cell(fused, x, dy), run_cell(plain, x, dy)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert_close(ours[0], theirs[0], rtol=1e-4)
    assert_close(ours[1], theirs[1], rtol=1e-4)
    for a, b in zip(ours[2], theirs[2]):
        assert_close(a, b, rtol=1e-4)
