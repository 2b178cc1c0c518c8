"""SNN-MLP (CVPR 2022, arXiv 2203.14679) as MindSpore Cells.

The architecture follows the PyTorch original (huawei-noah/Efficient-AI-Backbones, snnmlp_pytorch) layer
by layer; parameter names follow the official MindSpore Hub checkpoint of the r1.9 model zoo, whose
stages are called ``0.…`` and ``0.blocks.k.…`` (see ``src.models.to_official_name``). Names,
architectures and releases of the variants live in ``src/models.py``.
"""
import numpy as np

from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Constant, TruncatedNormal

from . import fast_ops
from .lif import LIFScan
from .models import CUSTOM_MODEL, MODEL_ALIASES, MODEL_ARCHS, list_models, resolve_model_name, to_official_name

__all__ = ["SNNMLP", "LIFSpike", "snnmlp_t", "snnmlp_s", "snnmlp_b", "create_model", "list_models", "MODEL_ARCHS",
           "MODEL_ALIASES", "count_params"]


def gelu():
    # The exact (erf) GELU of the PyTorch original; the tanh form drifts from the released weights.
    return fast_ops.gelu()  # nn.GELU(approximate=False), or its fused CPU kernel


def group_norm(channels):
    return fast_ops.group_norm(channels, eps=1e-5)  # nn.GroupNorm(1, channels), or its fused CPU kernel


def conv1x1(in_channels, out_channels, has_bias=True):
    # nn.Conv2d(in, out, 1, pad_mode="valid"), or its GEMM kernel on CPU
    return fast_ops.conv1x1(in_channels, out_channels, has_bias)


class DropPath(nn.Cell):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.keep_prob = 1.0 - drop_prob
        self.dropout = nn.Dropout(p=drop_prob)

    def construct(self, x):
        if not self.training or self.keep_prob == 1.0:
            return x
        mask = ops.ones((x.shape[0], 1, 1, 1), x.dtype)
        return x * self.dropout(mask)


class Identity(nn.Cell):
    def construct(self, x):
        return x


class LIFSpike(nn.Cell):
    """Leaky integrate-and-fire neurons scanned along H (``dim=2``) or W (``dim=3``).

    Per window of ``lif`` positions: ``u = tau*o + x; out = u if u > Vth else Vth; o = 0 if fired else u``.
    ``lif=-1`` is the identity, ``lif=0`` one window over the whole axis. ``tau`` and ``Vth`` are
    trainable 1-element parameters unless fixed.
    """

    def __init__(self, lif=4, fix_tau=False, fix_vth=False, init_tau=0.25, init_vth=0.1, dim=2,
                 backend="auto"):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"LIFSpike dim must be 2 (along H) or 3 (along W), got {dim}")
        self.lif = lif
        self.dim = dim
        tau = Tensor(np.array([init_tau], np.float32))
        vth = Tensor(np.array([init_vth], np.float32))
        # Parameter names 'tau' and 'Vth' are those of the released checkpoints.
        self.tau = tau if fix_tau else Parameter(tau, name="tau")
        self.Vth = vth if fix_vth else Parameter(vth, name="Vth")
        self.scan = LIFScan(lif, dim, backend=backend)

    def construct(self, x):
        return self.scan(x, self.tau, self.Vth)

    def extend_repr(self):
        return f"lif={self.lif}, dim={self.dim}"


class LIFModule(nn.Cell):
    """Token mixing: 1x1 conv, depthwise 3x3, then LIF along H and along W, summed."""

    def __init__(self, dim, lif_bias=True, lif=-1, lif_fix_tau=False, lif_fix_vth=False,
                 lif_init_tau=0.25, lif_init_vth=0.1, lif_backend="auto"):
        super().__init__()
        self.conv1 = conv1x1(dim, dim, lif_bias)
        self.conv2_1 = conv1x1(dim, dim, lif_bias)
        self.conv2_2 = conv1x1(dim, dim, lif_bias)
        self.conv3 = conv1x1(dim, dim, lif_bias)
        self.actn = gelu()
        self.norm1 = group_norm(dim)
        self.norm2 = group_norm(dim)
        self.norm3 = group_norm(dim)
        lif_kwargs = dict(lif=lif, fix_tau=lif_fix_tau, fix_vth=lif_fix_vth, init_tau=lif_init_tau,
                          init_vth=lif_init_vth, backend=lif_backend)
        self.lif1 = LIFSpike(dim=2, **lif_kwargs)
        self.lif2 = LIFSpike(dim=3, **lif_kwargs)
        self.dw1 = fast_ops.depthwise_conv3x3(dim, has_bias=lif_bias)

    def construct(self, x):
        x = self.actn(self.norm1(self.conv1(x)))
        x = self.actn(self.norm2(self.dw1(x)))
        x_along_h = self.actn(self.conv2_1(self.lif1(x)))
        x_along_w = self.actn(self.conv2_2(self.lif2(x)))
        return self.conv3(self.norm3(x_along_h + x_along_w))


class Mlp(nn.Cell):
    def __init__(self, dim, hidden_dim, drop=0.0):
        super().__init__()
        self.fc1 = conv1x1(dim, hidden_dim)
        self.act = gelu()
        self.fc2 = conv1x1(hidden_dim, dim)
        self.drop = nn.Dropout(p=drop) if drop > 0 else Identity()

    def construct(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class LIFBlock(nn.Cell):
    def __init__(self, dim, mlp_ratio=4.0, drop=0.0, drop_path=0.0, **lif_kwargs):
        super().__init__()
        self.norm1 = group_norm(dim)
        self.lif_module = LIFModule(dim, **lif_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else Identity()
        self.norm2 = group_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def construct(self, x):
        x = x + self.drop_path(self.lif_module(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Cell):
    """2x2 neighbourhood gather (channel order as the original's cat of x0, x1, x2, x3), GroupNorm, 1x1 conv.

    Written as reshape+transpose: strided slices have no working gradient in MindSpore 2.10 PYNATIVE.
    """

    def __init__(self, dim):
        super().__init__()
        self.reduction = conv1x1(4 * dim, 2 * dim, has_bias=False)
        self.norm = group_norm(4 * dim)

    def construct(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2)
        # Channel block index = row parity + 2 * column parity, i.e. (x0, x1, x2, x3) of the original.
        x = x.transpose(0, 5, 3, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Cell):
    """One stage: ``depth`` LIF blocks, then patch merging except in the last stage."""

    def __init__(self, dim, depth, drop_path, downsample, **block_kwargs):
        super().__init__()
        self.blocks = nn.CellList([LIFBlock(dim, drop_path=drop_path[i], **block_kwargs)
                                   for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def construct(self, x):
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class PatchEmbed(nn.Cell):
    def __init__(self, patch_size=4, in_chans=3, embed_dim=96):
        super().__init__()
        # nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, pad_mode="valid"), or a GEMM on CPU
        self.proj = fast_ops.patch_conv(in_chans, embed_dim, patch_size)
        self.norm = group_norm(embed_dim)

    def construct(self, x):
        return self.norm(self.proj(x))


class SNNMLP(nn.Cell):
    """SNN-MLP for images of any size whose sides divide by 32 (NCHW input, logits out).

    Defaults are what the original trained SNN-MLP-T with (drop path 0.2, LIF tau 0.25 and Vth 0.1, its
    main.py; the -1.0 in its model file was always overridden), and what config/ declares.
    """

    # load_checkpoint_strict maps checkpoint entry names through this: structural names load too.
    checkpoint_filter_fn = staticmethod(to_official_name)

    def __init__(self, num_classes=1000, image_size=224, patch_size=4, in_chans=3, embed_dim=96,
                 depths=(2, 2, 6, 2), mlp_ratio=4.0, lif_bias=True, drop_rate=0.0, drop_path_rate=0.2,
                 lif=4, lif_fix_tau=False, lif_fix_vth=False, lif_init_tau=0.25, lif_init_vth=0.1,
                 lif_backend="auto"):
        super().__init__()
        if lif < -1:
            raise ValueError(f"lif (the LIF window) must be -1 (off), 0 (whole axis) or positive, got {lif}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.depths = tuple(depths)
        self.mlp_ratio = mlp_ratio
        self.input_multiple = patch_size * 2 ** (len(depths) - 1)
        dims = [embed_dim * 2 ** i for i in range(len(depths))]
        self.num_features = dims[-1]

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(p=drop_rate) if drop_rate > 0 else Identity()
        drop_path = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        lif_kwargs = dict(lif_bias=lif_bias, lif=lif, lif_fix_tau=lif_fix_tau, lif_fix_vth=lif_fix_vth,
                          lif_init_tau=lif_init_tau, lif_init_vth=lif_init_vth, lif_backend=lif_backend)
        stages = []
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            stages.append(BasicLayer(dims[i], depth, drop_path[start:start + depth],
                                     downsample=i < len(depths) - 1, mlp_ratio=mlp_ratio, drop=drop_rate,
                                     **lif_kwargs))
        self.layers = nn.CellList(stages)
        self.norm = group_norm(self.num_features)
        self.head = nn.Dense(self.num_features, num_classes,
                             weight_init=TruncatedNormal(0.02), bias_init=Constant(0))
        # The released checkpoints name the stages as the r1.9 code's CellList.append guessed them
        # (``0.…``, ``0.blocks.k.…``); set those names explicitly so they never depend on that guess.
        for name, param in self.parameters_and_names():
            param.name = to_official_name(name)

    def check_input(self, x):
        """Raise a ValueError naming the rule for inputs the network cannot take."""
        if len(x.shape) != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"SNN-MLP expects NCHW input with {self.in_chans} channels, got shape {x.shape}")
        h, w = x.shape[2], x.shape[3]
        if h % self.input_multiple or w % self.input_multiple:
            raise ValueError(f"SNN-MLP needs image sides divisible by {self.input_multiple} "
                             f"(patch {self.patch_size} and {len(self.depths) - 1} 2x2 merges), got {h}x{w}")

    def forward_features(self, x):
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(axis=(2, 3))

    def __call__(self, *args, **kwargs):
        # Checked here too so that a bad input fails before GRAPH-mode compilation, with a plain message.
        if args and isinstance(args[0], Tensor):
            self.check_input(args[0])
        return super().__call__(*args, **kwargs)

    def construct(self, x):
        self.check_input(x)
        return self.head(self.forward_features(x))

    def flops(self, image_size=None):
        """Multiply-adds of one forward pass, counted as the paper does (T: 4.4 G at 224)."""
        size = image_size or self.image_size
        res = size // self.patch_size
        dim = self.embed_dim
        total = res * res * dim * self.in_chans * self.patch_size ** 2 + res * res * dim
        for i, depth in enumerate(self.depths):
            tokens = res * res
            lif_module = tokens * dim * (dim + 1 + 9 + 1 + 2 * dim + 1 + 1 + dim)
            block = 2 * tokens * dim + lif_module + 2 * tokens * dim * dim * self.mlp_ratio
            total += depth * block
            if i < len(self.depths) - 1:
                total += tokens * dim + (res // 2) ** 2 * 8 * dim * dim
                res //= 2
                dim *= 2
        total += self.num_features * res * res + self.num_features * self.num_classes
        return int(total)


def _variant(name, **kwargs):
    arch = dict(MODEL_ARCHS[name])
    arch.update(kwargs)
    return SNNMLP(**arch)


def snnmlp_t(**kwargs):
    """SNN-MLP-T: embed 96, depths 2-2-6-2, 28.3 M parameters."""
    return _variant("snnmlp_t", **kwargs)


def snnmlp_s(**kwargs):
    """SNN-MLP-S: embed 96, depths 2-2-18-2, 49.7 M parameters."""
    return _variant("snnmlp_s", **kwargs)


def snnmlp_b(**kwargs):
    """SNN-MLP-B: embed 128, depths 2-2-18-2, 87.9 M parameters."""
    return _variant("snnmlp_b", **kwargs)


def create_model(name, **kwargs):
    """Build a model by name (``list_models()``): ``snnmlp_t``, ``snnmlp_s``, ``snnmlp_b``, the alias
    ``snn_mlp`` (= T), or ``snnmlp_custom`` (no preset: architecture entirely from kwargs, as the small default
    config does). ValueError for other names."""
    name = resolve_model_name(name)
    if name == CUSTOM_MODEL:
        return SNNMLP(**kwargs)
    return _variant(name, **kwargs)


def count_params(net):
    return int(sum(np.prod(p.shape) for p in net.trainable_params()))
