"""Checkpoints you can trust: SHA-256 sidecars, atomic saves, strict loads, published assets, downloads.

Every failure a user can cause is a ``CheckpointError`` whose message is one readable line, so entry points
catch that one type, print it and exit non-zero.

Layout on disk: ``model.ckpt`` and its ``model.ckpt.sha256`` sidecar in the ``sha256sum`` format
(``<hex>  model.ckpt``), so ``sha256sum -c model.ckpt.sha256`` works too. Every load hashes the whole file
again (streamed). A downloaded asset whose hash is not published gets a ``<file>.verified.json`` record of
its hash only once it has loaded strictly as its variant (``remember_asset``); later uses are checked
against that.
"""
from .assets import ASSETS, DEFAULT_ASSETS, Asset, get_asset
from .download import (DOWNLOAD_DEADLINE, DOWNLOAD_MIN_RATE, DOWNLOAD_TIMEOUT, bad_cache_hint, cache_dir,
                       download_file, fetch_asset, remember_asset)
from .errors import CheckpointError
from .integrity import (check_file, read_sidecar, save_checkpoint_atomic, sha256_file, sidecar_path,
                        unverified_notice, verify_file, write_sidecar)
from .loading import (IGNORED_ENTRY_NAMES, IGNORED_ENTRY_PREFIXES, load_checkpoint_strict, mismatch_report,
                      read_checkpoint)

__all__ = [
    "CheckpointError", "sha256_file", "sidecar_path", "write_sidecar", "read_sidecar", "check_file", "verify_file",
    "unverified_notice", "save_checkpoint_atomic", "read_checkpoint", "load_checkpoint_strict", "mismatch_report",
    "IGNORED_ENTRY_PREFIXES", "IGNORED_ENTRY_NAMES", "Asset", "ASSETS", "DEFAULT_ASSETS",
    "get_asset", "cache_dir", "fetch_asset", "remember_asset", "bad_cache_hint", "download_file",
]
