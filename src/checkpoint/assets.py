"""The published checkpoints: what each release is and where it is downloaded from."""
from dataclasses import dataclass
from typing import Optional

from .errors import CheckpointError

__all__ = ["Asset", "ASSETS", "DEFAULT_ASSETS", "get_asset"]


# ---------------------------------------------------------------------------------------------------------
# Official assets
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Asset:
    """A released checkpoint. ``sha256`` None: not yet recorded (printed by the first download/convert)."""
    name: str
    url: str
    sha256: Optional[str]
    variant: str
    top1: float
    framework: str  # "mindspore" (.ckpt, loads as is) or "pytorch" (.pt, converted by src/convert.py)
    num_classes: int = 1000


_PT_RELEASE = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/snnmlp/"

# The MindSpore Hub asset (mindspore-ai/hub, mshub_res/assets/mindspore/1.9/snn_mlp_imagenet2012.md), and the
# PyTorch releases of the paper's authors.
ASSETS = {asset.name: asset for asset in (
    Asset("snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt",
          "https://download.mindspore.cn/models/r1.9/"
          "snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt",
          "760515ca0fd2a80d02d43fa4e4dceab368622f673d807dafc4b9545e87810f1d", "snnmlp_t", 81.8, "mindspore"),
    Asset("snnmlp_tiny_81.88.pt", _PT_RELEASE + "snnmlp_tiny_81.88.pt", None, "snnmlp_t", 81.88, "pytorch"),
    Asset("snnmlp_small_83.30.pt", _PT_RELEASE + "snnmlp_small_83.30.pt", None, "snnmlp_s", 83.30, "pytorch"),
    Asset("snnmlp_base_83.59.pt", _PT_RELEASE + "snnmlp_base_83.59.pt", None, "snnmlp_b", 83.59, "pytorch"),
)}
# What ``pretrained=True`` loads for each variant: the MindSpore asset where there is one.
DEFAULT_ASSETS = {
    "snnmlp_t": "snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt",
    "snnmlp_s": "snnmlp_small_83.30.pt",
    "snnmlp_b": "snnmlp_base_83.59.pt",
}


def get_asset(name):
    """An Asset by file name, or the default asset of a variant name."""
    if name in ASSETS:
        return ASSETS[name]
    if name in DEFAULT_ASSETS:
        return ASSETS[DEFAULT_ASSETS[name]]
    raise CheckpointError(f"unknown asset '{name}'; known: {', '.join(sorted([*DEFAULT_ASSETS, *ASSETS]))}")
