"""The published checkpoints: what each release is and where it is downloaded from (filled by the model room)."""
from dataclasses import dataclass
from typing import Optional

from .errors import CheckpointError

__all__ = ["Asset", "ASSETS", "DEFAULT_ASSETS", "register_assets", "get_asset"]


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


# The published files, registered by the model room (src/snn_mlp.py registers SNN-MLP's releases when it is
# imported): file name -> Asset, and model name -> the file name ``pretrained=True`` loads.
ASSETS = {}
DEFAULT_ASSETS = {}


def register_assets(assets, defaults=None):
    """Add ``assets`` (Assets) to the published files, and ``defaults`` ({model name: file name})."""
    ASSETS.update((asset.name, asset) for asset in assets)
    DEFAULT_ASSETS.update(defaults or {})


def get_asset(name):
    """An Asset by file name, or the default asset of a variant name."""
    if name in ASSETS:
        return ASSETS[name]
    if name in DEFAULT_ASSETS:
        return ASSETS[DEFAULT_ASSETS[name]]
    raise CheckpointError(f"unknown asset '{name}'; known: {', '.join(sorted([*DEFAULT_ASSETS, *ASSETS]))}")
