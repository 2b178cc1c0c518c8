"""The published checkpoints: what each release is and where it is downloaded from.

The table itself is the model room's (``src/models.py`` RELEASES, MindSpore-free data); this module only
turns it into Assets, so a lookup works whatever else has been imported.
"""
from dataclasses import dataclass
from typing import Optional

from ..models import DEFAULT_RELEASES, RELEASES
from .errors import CheckpointError

__all__ = ["Asset", "ASSETS", "DEFAULT_ASSETS", "get_asset"]


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


# File name -> Asset, and model name -> the file name ``pretrained=True`` loads.
ASSETS = {asset.name: asset for asset in (Asset(**release) for release in RELEASES)}
DEFAULT_ASSETS = dict(DEFAULT_RELEASES)


def get_asset(name):
    """An Asset by file name, or the default asset of a variant name."""
    if name in ASSETS:
        return ASSETS[name]
    if name in DEFAULT_ASSETS:
        return ASSETS[DEFAULT_ASSETS[name]]
    raise CheckpointError(f"unknown asset '{name}'; known: {', '.join(sorted([*DEFAULT_ASSETS, *ASSETS]))}")
