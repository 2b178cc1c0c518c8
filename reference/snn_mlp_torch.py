"""An independent PyTorch rendering of SNN-MLP (needs torch): the reference the tests check the port against,
and the PyTorch side of scripts/benchmark.py.

Written from the paper and the original PyTorch code's structure: original parameter names (``layers.k.``,
GroupNorm ``weight``/``bias``), strided-slice patch merging, and the LIF scan as a plain Python loop over
window positions, so that it shares no code path with the MindSpore port it checks.
"""
import torch
from torch import nn
import torch.nn.functional as F


def lif_torch(x, tau, vth, window, axis):
    """The LIF scan with torch ops; autograd sees `fire` as a constant like the original kernels."""
    if window == -1:
        return x
    length = x.shape[axis]
    window = length if window == 0 else window
    whole = (length // window) * window
    if whole == 0:
        return x
    outs = []
    for start in range(0, whole, window):
        o = torch.zeros_like(x.narrow(axis, 0, 1))
        for j in range(window):
            u = tau * o + x.narrow(axis, start + j, 1)
            fire = (u > vth).to(x.dtype)
            outs.append(fire * u + (1 - fire) * vth)
            o = (1 - fire) * u
    if whole < length:
        outs.append(x.narrow(axis, whole, length - whole))
    return torch.cat(outs, dim=axis)


class LIFSpike(nn.Module):
    def __init__(self, lif, init_tau, init_vth, dim):
        super().__init__()
        self.lif, self.dim = lif, dim
        self.tau = nn.Parameter(torch.tensor([init_tau]))
        self.Vth = nn.Parameter(torch.tensor([init_vth]))

    def forward(self, x):
        return lif_torch(x, self.tau, self.Vth, self.lif, self.dim)


class LIFModule(nn.Module):
    def __init__(self, dim, lif, init_tau, init_vth):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2_1 = nn.Conv2d(dim, dim, 1)
        self.conv2_2 = nn.Conv2d(dim, dim, 1)
        self.conv3 = nn.Conv2d(dim, dim, 1)
        self.norm1 = nn.GroupNorm(1, dim)
        self.norm2 = nn.GroupNorm(1, dim)
        self.norm3 = nn.GroupNorm(1, dim)
        self.lif1 = LIFSpike(lif, init_tau, init_vth, 2)
        self.lif2 = LIFSpike(lif, init_tau, init_vth, 3)
        self.dw1 = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x):
        x = F.gelu(self.norm1(self.conv1(x)))
        x = F.gelu(self.norm2(self.dw1(x)))
        a = F.gelu(self.conv2_1(self.lif1(x)))
        b = F.gelu(self.conv2_2(self.lif2(x)))
        return self.conv3(self.norm3(a + b))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, mlp_ratio, lif, init_tau, init_vth):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.lif_module = LIFModule(dim, lif, init_tau, init_vth)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.lif_module(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Conv2d(4 * dim, 2 * dim, 1, bias=False)
        self.norm = nn.GroupNorm(1, 4 * dim)

    def forward(self, x):
        parts = [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, 1)))


class Stage(nn.Module):
    def __init__(self, dim, depth, downsample, **kw):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, **kw) for _ in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.GroupNorm(1, dim)

    def forward(self, x):
        return self.norm(self.proj(x))


class TorchSNNMLP(nn.Module):
    def __init__(self, num_classes=1000, patch_size=4, in_chans=3, embed_dim=96, depths=(2, 2, 6, 2),
                 mlp_ratio=4.0, lif=4, lif_init_tau=0.25, lif_init_vth=-1.0):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        kw = dict(mlp_ratio=mlp_ratio, lif=lif, init_tau=lif_init_tau, init_vth=lif_init_vth)
        self.layers = nn.ModuleList([Stage(embed_dim * 2 ** i, d, i < len(depths) - 1, **kw)
                                     for i, d in enumerate(depths)])
        features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.GroupNorm(1, features)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=(2, 3)))


def randomize_(model, seed=0):
    """Give every tensor (norm affine and tau/Vth too) distinct random values, so a swapped or
    mis-mapped parameter changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".tau"):
                p.copy_(0.1 + 0.4 * torch.rand(p.shape, generator=gen))
            elif name.endswith(".Vth"):
                p.copy_(-0.5 + torch.rand(p.shape, generator=gen))
            elif p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5 * (0.5 if p.dim() > 1 else 0.1))
    return model
