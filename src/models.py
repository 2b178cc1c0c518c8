"""SNN-MLP's identity: model names, architectures, released weights and checkpoint parameter names.

The network (``src/snn_mlp.py``) builds from these; the config, export, the hub entry and the tools list
models from ``list_models()``; the checkpoint room reads the release table as data (its Assets, the
published hashes it checks files against) and knows nothing else of SNN-MLP. No MindSpore import here, so
``src/config.py`` can read it before MindSpore loads.
"""
import re
import warnings

__all__ = ["MODEL_ARCHS", "MODEL_ALIASES", "CUSTOM_MODEL", "DEPRECATED_NAMES", "RELEASES", "DEFAULT_RELEASES",
           "list_models", "resolve_model_name", "to_official_name", "to_structural_name"]

# Each released variant: its architecture and the stochastic depth it was trained with (the original's
# configs/snnmlp_{tiny,small,base}_patch4_lif4_224.yaml); other training-recipe values live in config/.
MODEL_ARCHS = {
    "snnmlp_t": dict(embed_dim=96, depths=(2, 2, 6, 2), drop_path_rate=0.2),
    "snnmlp_s": dict(embed_dim=96, depths=(2, 2, 18, 2), drop_path_rate=0.3),
    "snnmlp_b": dict(embed_dim=128, depths=(2, 2, 18, 2), drop_path_rate=0.5),
}
MODEL_ALIASES = {"snn_mlp": "snnmlp_t"}  # the r1.9 model-zoo and MindSpore Hub name
# No preset: the architecture comes entirely from the arguments (embed_dim, depths, ...).
CUSTOM_MODEL = "snnmlp_custom"
# Old names still accepted, with a DeprecationWarning.
DEPRECATED_NAMES = {"snnmlp": CUSTOM_MODEL}


def list_models(custom=True, deprecated=False):
    """Every name ``create_model`` takes: the aliases (``snn_mlp``, the hub's name), the released variants,
    then (``custom``) the preset-less ``snnmlp_custom`` and (``deprecated``) the old names still accepted."""
    names = [*MODEL_ALIASES, *MODEL_ARCHS]
    if custom:
        names.append(CUSTOM_MODEL)
    if deprecated:
        names += list(DEPRECATED_NAMES)
    return names


def resolve_model_name(name):
    """The canonical name of ``name`` (a variant or ``snnmlp_custom``); ValueError naming the valid ones."""
    if name in DEPRECATED_NAMES:
        warnings.warn(f"model name '{name}' is deprecated: use '{DEPRECATED_NAMES[name]}'", DeprecationWarning,
                      stacklevel=3)
        return DEPRECATED_NAMES[name]
    name = MODEL_ALIASES.get(name, name)
    if name not in MODEL_ARCHS and name != CUSTOM_MODEL:
        raise ValueError(f"unknown model '{name}'; valid names: {', '.join(list_models())}")
    return name


# ---------------------------------------------------------------------------------------------------------
# Released weights (timm's default_cfgs): the MindSpore Hub asset (mindspore-ai/hub,
# mshub_res/assets/mindspore/1.9/snn_mlp_imagenet2012.md) and the PyTorch releases of the paper's authors.
# sha256 None: not published (recorded on first download, see src/checkpoint/download.py).
# ---------------------------------------------------------------------------------------------------------

_PT_RELEASE = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/snnmlp/"
_MS_ASSET = "snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt"

RELEASES = (
    dict(name=_MS_ASSET, url="https://download.mindspore.cn/models/r1.9/" + _MS_ASSET,
         sha256="760515ca0fd2a80d02d43fa4e4dceab368622f673d807dafc4b9545e87810f1d", variant="snnmlp_t", top1=81.8,
         framework="mindspore"),
    dict(name="snnmlp_tiny_81.88.pt", url=_PT_RELEASE + "snnmlp_tiny_81.88.pt", sha256=None, variant="snnmlp_t",
         top1=81.88, framework="pytorch"),
    dict(name="snnmlp_small_83.30.pt", url=_PT_RELEASE + "snnmlp_small_83.30.pt", sha256=None, variant="snnmlp_s",
         top1=83.30, framework="pytorch"),
    dict(name="snnmlp_base_83.59.pt", url=_PT_RELEASE + "snnmlp_base_83.59.pt", sha256=None, variant="snnmlp_b",
         top1=83.59, framework="pytorch"),
)
# What ``pretrained=True`` loads for each variant: the MindSpore asset where there is one.
DEFAULT_RELEASES = {
    "snnmlp_t": _MS_ASSET,
    "snnmlp_s": "snnmlp_small_83.30.pt",
    "snnmlp_b": "snnmlp_base_83.59.pt",
}

# ---------------------------------------------------------------------------------------------------------
# Checkpoint parameter names (timm's checkpoint_filter_fn): the released checkpoints name the stages as the
# r1.9 code's CellList.append guessed them; the network sets those names explicitly.
# ---------------------------------------------------------------------------------------------------------

_STRUCTURAL = re.compile(r"^layers\.(\d+)\.(.+)$")
_OFFICIAL_LATER_STAGE = re.compile(r"^0\.blocks\.(\d+)\.((?:blocks|downsample)\..+)$")


def to_official_name(name):
    """``layers.0.X`` -> ``0.X``; ``layers.k.X`` -> ``0.blocks.k.X`` (k > 0); other names unchanged.

    The r1.9 network's stages got these names from ``nn.CellList.append`` (see src/snn_mlp.py).
    """
    match = _STRUCTURAL.match(name)
    if not match:
        return name
    stage, rest = match.groups()
    return f"0.{rest}" if stage == "0" else f"0.blocks.{stage}.{rest}"


def to_structural_name(name):
    """Inverse of ``to_official_name``: ``0.blocks.k.blocks…``/``0.blocks.k.downsample…`` are stage k, any
    other ``0.…`` is stage 0 (whose own blocks are ``0.blocks.i.norm1…`` etc.)."""
    match = _OFFICIAL_LATER_STAGE.match(name)
    if match:
        return f"layers.{match.group(1)}.{match.group(2)}"
    if name.startswith("0."):
        return f"layers.0.{name[2:]}"
    return name
